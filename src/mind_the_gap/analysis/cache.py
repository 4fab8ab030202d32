"""Analyses of trained students, cached like the students: by a key of everything they read, so a re-run with
nothing changed reads the table instead of recomputing it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mind_the_gap.files import write_atomically
from mind_the_gap.keys import content_key

log = logging.getLogger(__name__)


def cached_table(directory: Path, parts: Mapping[str, Any], compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """``compute()``'s table, stored in ``directory`` under a key of ``parts`` (what the analysis reads: student
    keys, data fingerprints, settings, the code's version), or the stored one when the key is there."""
    key = content_key(parts, 20, sort_keys=True, default=str)
    path = Path(directory) / f"{key}.csv"
    if path.is_file():
        try:
            table = pd.read_csv(path, keep_default_na=False, na_values=[""])
            log.info("reusing the analysis in %s", path)
            return table
        except (ValueError, pd.errors.ParserError) as exc:  # a damaged file is only a lost head start
            log.warning("ignoring unreadable analysis %s (%s); computing it again", path, exc)
    table = compute()
    write_atomically(path, lambda temp: table.to_csv(temp, index=False))
    return table
