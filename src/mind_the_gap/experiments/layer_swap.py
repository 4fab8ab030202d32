"""Layer swap: which units carry the gap between synthetic and real.

A cell keeps a range of units of a baseline student trained on one source (``from``: real or synthetic), copied
and frozen by default, and trains every other unit on the other source; the student is tested on the real test
set. Cuts along the network give prefixes (units 0..k-1 kept) and suffixes (units k..last kept), so the table
answers both "how much does having the last units trained on real data recover" and "how much do the first".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import pandas as pd
from pydantic import Field

from mind_the_gap.analysis.statistics import (
    by_seed,
    gap_recovered,
    paired_columns,
    paired_difference,
    ratio_columns,
    with_holm,
)
from mind_the_gap.experiments.study import SeedsConfig, StudentJob, as_metrics, parent_keys, summarize_runs, views
from mind_the_gap.models.architectures import StudentConfig, student_unit_names
from mind_the_gap.training.transfer import Transfer, TransferConfig

Arrangement = Literal["prefix", "suffix"]
Source = Literal["real", "synthetic"]
OTHER: dict[str, Source] = {"real": "synthetic", "synthetic": "real"}
ARRANGEMENTS: tuple[Arrangement, ...] = ("prefix", "suffix")
SOURCES: tuple[Source, ...] = ("real", "synthetic")


def cell_name(arrangement: Arrangement, source: Source, trained_on: Source) -> str:
    """``prefix_from_real`` (kept from the real student, the rest trained on synthetic), or for a same-source
    control ``prefix_real_control`` (kept from the real student, the rest retrained on real)."""
    return f"{arrangement}_{source}_control" if trained_on == source else f"{arrangement}_from_{source}"


# Every cell as (arrangement, kept from, trained on): each cross-source cell, then its same-source control.
CELLS: dict[str, tuple[Arrangement, Source, Source]] = {
    cell_name(a, s, t): (a, s, t) for a in ARRANGEMENTS for s in SOURCES for t in (OTHER[s], s)
}


class LayerSwapConfig(SeedsConfig, TransferConfig):
    """The seeds, the cuts, the headline cut and how kept units are treated (``lower``, ``lr_scale``, ``reinit``)."""

    cuts: list[int] | None = Field(
        None, min_length=1, description="k: prefixes keep units 0..k-1, suffixes k..last; null: every cut"
    )
    headline_cut: int = Field(
        8,
        description="the cut set beside the paper's units 15-17: its prefix kept from the synthetic student, the rest "
        "trained on real data, is the report's headline (one of the cuts run)",
    )
    headline_seeds: list[int] | None = Field(
        None, min_length=1, description="the headline cut's seeds, where it gets more than the others; null: seeds"
    )
    arrangements: list[Arrangement] = Field(
        list(ARRANGEMENTS), min_length=1, description="prefix: the first units kept; suffix: the last units kept"
    )

    def seeds_at(self, cut: int) -> list[int]:
        """The seeds trained at ``cut``: ``headline_seeds`` at the headline cut where set, else ``seeds``."""
        return self.headline_seeds if cut == self.headline_cut and self.headline_seeds else self.seeds


def resolve_cuts(config: LayerSwapConfig, student: StudentConfig) -> list[int]:
    """The cuts to run, checked against the student's units: each must leave units on both sides, and the headline
    cut must be one of them."""
    n = len(student_unit_names(student))
    cuts = config.cuts if config.cuts is not None else list(range(1, n))
    bad = [k for k in cuts if not 0 < k < n]
    if bad:
        raise ValueError(
            f"layer_swap.cuts {bad}: a {student.arch} numbered by {student.units} has units 0-{n - 1}, "
            f"so a cut must lie in 1-{n - 1}"
        )
    if config.headline_cut not in cuts:
        raise ValueError(
            f"layer_swap.headline_cut {config.headline_cut} is not among the cuts run ({sorted(set(cuts))}): "
            "add it to layer_swap.cuts or name one of them"
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
    trained_on: Source | None = None,
) -> list[StudentJob]:
    """Every cut and seed of one cell: units kept from the ``source`` baseline student of the same seed (in
    ``parent_runs``), the other units trained on the stored set ``training_set``, of the source ``trained_on``: the
    other source by default, ``source`` itself for a same-source control."""
    trained_on = trained_on or OTHER[source]
    if arrangement not in config.arrangements:
        return []
    cuts = resolve_cuts(config, student)
    seeds = sorted({seed for cut in cuts for seed in config.seeds_at(cut)})
    parents = parent_keys(parent_runs, seeds, source, "layer_swap")
    transfer = TransferConfig.model_validate(config.model_dump(include=set(TransferConfig.model_fields)))
    num_units = len(student_unit_names(student))
    jobs = []
    for cut in cuts:
        kept, trained = swap_ranges(arrangement, cut, num_units)
        real_units = {
            (True, True): f"0-{num_units - 1}",
            (True, False): kept,
            (False, True): trained,
            (False, False): "",
        }
        columns = {
            "arrangement": arrangement,
            "cut": cut,
            "kept": kept,
            "from": source,
            "trained": trained,
            "trained_on": trained_on,
            "real_units": real_units[source == "real", trained_on == "real"],
        }
        for seed in config.seeds_at(cut):
            name = f"layer_swap/kept={kept} {source}/rest {trained_on}/seed{seed}"
            jobs.append(StudentJob(name, seed, views(training_set), Transfer(parents[seed], kept, transfer), columns))
    return jobs


def summarize(
    baselines: pd.DataFrame, runs: pd.DataFrame, student: StudentConfig, config: LayerSwapConfig
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean ± 95% CI per cell and cut, its paired comparisons, and the share of the gap each recovers, with the
    baselines' rows first; and the cells' and the baselines' summaries apart (what the chart draws).

    Every comparison is paired by seed (a cell's student of seed s keeps units of the baseline student of seed s):
    - ``vs_parent_pp``: points gained over the baseline student whose units the cell keeps, ± 95% CI, with its
      p-value and, over every cell and cut of the table (one family), its Holm-corrected ``vs_parent_pp_p_holm``;
    - ``gap_recovered``: 0 at the synthetic-only students, 1 at the real-only ones, with Fieller's 95% interval
      (``_low``, ``_high``; ``_method`` says where the delta method stands in);
    - ``gap_recovered_control``: the same between the same-source controls of the cell's arrangement and cut,
      0 at synthetic→synthetic, 1 at real→real: the gap net of what retraining under frozen units costs by itself.
    ``headline``: the row of ``config.headline_cut`` kept from the synthetic student, the rest trained on real.
    """
    seeds = set(runs["seed"]) if len(runs) else set()
    baselines = baselines[baselines["seed"].isin(seeds)] if seeds else baselines
    reference, _ = summarize_runs(baselines, by=["cell"])
    names = student_unit_names(student)
    by = ["cell", "arrangement", "from", "trained_on", "cut", "kept", "trained", "real_units"]
    if len(runs):
        summary, metrics = summarize_runs(runs, by=by, label=["cell", "kept"])
        rows = summary.to_dict("records")
        comparisons = pd.DataFrame([_compare(baselines, runs, row) for row in rows], summary.index)
        summary = with_holm(pd.concat([summary, comparisons], axis=1), "vs_parent_pp")
    else:
        summary, metrics = pd.DataFrame(columns=[*by, "test_accuracy_mean", "test_accuracy_ci95"]), {}
    summary["headline"] = (
        (summary["cut"] == config.headline_cut)
        & (summary["arrangement"] == "prefix")
        & (summary["from"] == "synthetic")
        & (summary["trained_on"] == "real")
    )
    for row in summary.itertuples():
        values = {name: getattr(row, name, None) for name in ("gap_recovered", "gap_recovered_control", "vs_parent_pp")}
        metrics |= as_metrics({f"{row.cell}.{row.kept}.{name}": value for name, value in values.items()})
    everything = f"0-{len(names) - 1}"
    baseline_rows = reference.assign(
        arrangement="baseline",
        **{"from": reference["cell"], "trained_on": reference["cell"]},
        real_units=reference["cell"].map({"real": everything, "synthetic": ""}),
        gap_recovered=reference["cell"].map({"real": 1.0, "synthetic": 0.0}),
        headline=False,
    )
    table = pd.concat([baseline_rows, summary], ignore_index=True)
    leading = [*by, "n", "test_accuracy_mean", "test_accuracy_ci95", "gap_recovered"]
    table = table[[*leading, *(c for c in table.columns if c not in leading)]]
    return table, summary, reference.set_index("cell"), metrics


def _compare(baselines: pd.DataFrame, runs: pd.DataFrame, row: Mapping[str, Any]) -> dict[str, float | str]:
    """A cell's paired comparisons at one cut (see ``summarize``)."""
    students = runs[(runs["cell"] == row["cell"]) & (runs["cut"] == row["cut"])]
    source = {cell: baselines[baselines["cell"] == cell] for cell in SOURCES}
    columns = paired_columns("vs_parent_pp", paired_difference(*by_seed(students, source[row["from"]])))
    columns |= ratio_columns("gap_recovered", gap_recovered(*by_seed(students, source["synthetic"], source["real"])))
    if row["trained_on"] == row["from"]:  # a control: itself the reference
        columns["gap_recovered_control"] = 1.0 if row["from"] == "real" else 0.0
        return columns
    controls = {
        s: runs[(runs["cell"] == cell_name(row["arrangement"], s, s)) & (runs["cut"] == row["cut"])] for s in SOURCES
    }
    if all(len(rows) for rows in controls.values()):
        ratio = gap_recovered(*by_seed(students, controls["synthetic"], controls["real"]))
        columns |= ratio_columns("gap_recovered_control", ratio)
    return columns
