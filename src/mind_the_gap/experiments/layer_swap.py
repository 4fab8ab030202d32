"""Layer swap: which units carry the gap between synthetic and real.

A cell keeps a range of units of a baseline student trained on one source (``from``: real or synthetic), copied
and frozen by default, and trains every other unit on the other source; the student is tested on the real test
set. Cuts along the network give prefixes (units 0..k-1 kept) and suffixes (units k..last kept), so the table
answers both "how much does having the last units trained on real data recover" and "how much do the first".
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from mind_the_gap.experiments.study import SeedsConfig, StudentJob, as_metrics, parent_keys, summarize_runs, views
from mind_the_gap.models.architectures import StudentConfig, student_unit_names
from mind_the_gap.training.transfer import Transfer, TransferConfig

Arrangement = Literal["prefix", "suffix"]
Source = Literal["real", "synthetic"]
OTHER: dict[str, Source] = {"real": "synthetic", "synthetic": "real"}
ARRANGEMENTS: tuple[Arrangement, ...] = ("prefix", "suffix")
SOURCES: tuple[Source, ...] = ("real", "synthetic")
CELLS = [f"{arrangement}_from_{source}" for arrangement in ARRANGEMENTS for source in SOURCES]


class LayerSwapConfig(SeedsConfig, TransferConfig):
    """The seeds, the cuts and how kept units are treated (``lower``, ``lr_scale``, ``reinit``)."""

    cuts: list[int] | None = Field(
        None, min_length=1, description="k: prefixes keep units 0..k-1, suffixes k..last; null: every cut"
    )


def resolve_cuts(config: LayerSwapConfig, student: StudentConfig) -> list[int]:
    """The cuts to run, checked against the student's units: each must leave units on both sides."""
    n = len(student_unit_names(student))
    cuts = config.cuts if config.cuts is not None else list(range(1, n))
    bad = [k for k in cuts if not 0 < k < n]
    if bad:
        raise ValueError(
            f"layer_swap.cuts {bad}: a {student.arch} numbered by {student.units} has units 0-{n - 1}, "
            f"so a cut must lie in 1-{n - 1}"
        )
    return sorted(set(cuts))


def swap_ranges(arrangement: Arrangement, cut: int, num_units: int) -> tuple[str, str]:
    """The kept and the trained unit ranges of a cell at ``cut``."""
    head, tail = f"0-{cut - 1}", f"{cut}-{num_units - 1}"
    return (head, tail) if arrangement == "prefix" else (tail, head)


def plan(
    arrangement: Arrangement,
    source: Source,
    parent_runs: pd.DataFrame,
    training_set: str,
    student: StudentConfig,
    config: LayerSwapConfig,
) -> list[StudentJob]:
    """Every cut and seed of one cell: units kept from the ``source`` baseline student of the same seed (in
    ``parent_runs``), the other units trained on the stored set ``training_set`` of the other source."""
    other = OTHER[source]
    parents = parent_keys(parent_runs, config.seeds, source, "layer_swap")
    transfer = TransferConfig.model_validate(config.model_dump(include=set(TransferConfig.model_fields)))
    num_units = len(student_unit_names(student))
    jobs = []
    for cut in resolve_cuts(config, student):
        kept, trained = swap_ranges(arrangement, cut, num_units)
        columns = {
            "arrangement": arrangement,
            "cut": cut,
            "kept": kept,
            "from": source,
            "trained": trained,
            "trained_on": other,
            "real_units": kept if source == "real" else trained,
        }
        for seed in config.seeds:
            name = f"layer_swap/kept={kept} {source}/rest {other}/seed{seed}"
            jobs.append(StudentJob(name, seed, views(training_set), Transfer(parents[seed], kept, transfer), columns))
    return jobs


def summarize(
    baselines: pd.DataFrame, runs: pd.DataFrame, student: StudentConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean ± 95% CI per cell and cut and the share of the gap each recovers, with the baselines' rows first; and
    the cells' and the baselines' summaries apart (what the chart draws).

    ``gap_recovered`` is 0 at the synthetic-only students' accuracy and 1 at the real-only students', both over the
    layer-swap seeds.
    """
    seeds = set(runs["seed"]) if len(runs) else set()
    baselines = baselines[baselines["seed"].isin(seeds)] if seeds else baselines
    reference, _ = summarize_runs(baselines, by=["cell"])
    accuracy = reference.set_index("cell")["test_accuracy_mean"]
    names = student_unit_names(student)
    by = ["cell", "arrangement", "from", "cut", "kept", "trained", "real_units"]
    if len(runs):
        summary, metrics = summarize_runs(runs, by=by, label=["cell", "kept"])
    else:
        summary, metrics = pd.DataFrame(columns=[*by, "test_accuracy_mean", "test_accuracy_ci95"]), {}
    gap = accuracy.get("real", np.nan) - accuracy.get("synthetic", np.nan)
    summary["gap_recovered"] = (summary["test_accuracy_mean"] - accuracy.get("synthetic", np.nan)) / gap
    metrics |= as_metrics({f"{row.cell}.{row.kept}.gap_recovered": row.gap_recovered for row in summary.itertuples()})
    everything = f"0-{len(names) - 1}"
    baseline_rows = reference.assign(
        arrangement="baseline",
        **{"from": reference["cell"]},
        real_units=reference["cell"].map({"real": everything, "synthetic": ""}),
        gap_recovered=reference["cell"].map({"real": 1.0, "synthetic": 0.0}),
    )
    table = pd.concat([baseline_rows, summary], ignore_index=True)
    leading = [*by, "n", "test_accuracy_mean", "test_accuracy_ci95", "gap_recovered"]
    table = table[[*leading, *(c for c in table.columns if c not in leading)]]
    return table, summary, reference.set_index("cell"), metrics
