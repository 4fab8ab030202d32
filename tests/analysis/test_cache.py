"""Analyses cached by a key of what they read: computed once, read back, recomputed when damaged or changed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mind_the_gap.analysis.cache import cached_table


def test_a_table_is_computed_once_per_key_and_a_damaged_one_again(tmp_path: Path):
    calls = []

    def compute() -> pd.DataFrame:
        calls.append(1)
        return pd.DataFrame({"unit": [0, 1], "name": ["stem", "NA"], "value": [0.5, float("nan")]})

    first = cached_table(tmp_path, {"students": ["a"]}, compute)
    (stored,) = tmp_path.glob("*.csv")
    again = cached_table(tmp_path, {"students": ["a"]}, compute)
    assert len(calls) == 1
    assert again["name"].tolist() == ["stem", "NA"]
    pd.testing.assert_frame_equal(first, again)
    stored.write_bytes(b"\x00\xff garbage")  # a damaged table is computed again
    pd.testing.assert_frame_equal(cached_table(tmp_path, {"students": ["a"]}, compute), first)
    assert len(calls) == 2
    cached_table(tmp_path, {"students": ["b"]}, compute)  # other inputs, another analysis
    assert len(calls) == 3
    assert len(list(tmp_path.glob("*.csv"))) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing half-written left
