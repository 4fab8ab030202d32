"""Layer swap: which units carry the gap between synthetic and real.

A cell keeps a range of units of a baseline student trained on one source (``from``: real or synthetic), copied
and frozen by default, and trains every other unit on the other source; the student is tested on the real test
set. Cuts along the network give prefixes (units 0..k-1 kept) and suffixes (units k..last kept), so the table
answers both "how much does having the last units trained on real data recover" and "how much do the first".
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from pydantic import Field

from mind_the_gap.charts import SOURCE_COLOURS, Curve, LineChart, Panel, baseline_levels, ci_or_zero
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.interactive import plotly_figure
from mind_the_gap.models.architectures import StudentConfig, student_unit_names
from mind_the_gap.pipelines.student_runs import SeedsConfig, StudentJob, parent_keys, summarize_runs, train_cell
from mind_the_gap.reporting import matplotlib_figure
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.transfer import Transfer, TransferConfig

Arrangement = Literal["prefix", "suffix"]
Source = Literal["real", "synthetic"]
OTHER: dict[str, Source] = {"real": "synthetic", "synthetic": "real"}


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


def train_layer_swap(
    arrangement: Arrangement,
    source: Source,
    parent_runs: pd.DataFrame,
    other_train: ImageSet,
    val: ImageSet,
    test: ImageSet,
    store: Path,
    real_statistics: dict[str, list[float]],
    student: StudentConfig,
    training: TrainConfig,
    layer_swap: LayerSwapConfig,
) -> pd.DataFrame:
    """Every cut and seed of one cell: units kept from the ``source`` baseline student of the same seed, the other
    units trained on the other source's images."""
    other = OTHER[source]
    parents = parent_keys(parent_runs, layer_swap.seeds, source, "layer_swap")
    transfer = TransferConfig.model_validate(layer_swap.model_dump(include=set(TransferConfig.model_fields)))
    num_units = len(student_unit_names(student))
    jobs = []
    for cut in resolve_cuts(layer_swap, student):
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
        for seed in layer_swap.seeds:
            name = f"layer_swap/kept={kept} {source}/rest {other}/seed{seed}"
            jobs.append(StudentJob(name, seed, other_train, Transfer(parents[seed], kept, transfer), columns))
    return train_cell(
        "layer_swap", f"{arrangement}_from_{source}", jobs, val, test, store, student, training, real_statistics
    )


def summarize_layer_swap(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, student: StudentConfig, *cell_runs: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """Mean ± 95% CI per cell and cut, the share of the gap each recovers, and accuracy against cut (as a PNG's
    figure and an interactive one).

    ``gap_recovered`` is 0 at the synthetic-only students' accuracy and 1 at the real-only students', both over the
    layer-swap seeds.
    """
    runs = pd.concat(cell_runs, ignore_index=True)
    seeds = set(runs["seed"]) if len(runs) else set()
    baselines = pd.concat([real_runs, synthetic_runs], ignore_index=True)
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
    for row in summary.itertuples():
        if pd.notna(row.gap_recovered):
            metrics[f"{row.cell}.{row.kept}.gap_recovered"] = {"value": float(row.gap_recovered), "step": 0}
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
    chart = layer_swap_chart(summary, reference.set_index("cell"), names)
    return table, metrics, matplotlib_figure(chart), plotly_figure(chart)


def layer_swap_chart(summary: pd.DataFrame, baselines: pd.DataFrame, names: list[str]) -> LineChart:
    """Test accuracy against cut, one line per arrangement and source; the baselines as horizontal bands.

    A line's ends are baselines too: cutting before unit 0 or after the last unit keeps everything or nothing.
    """
    n = len(names)
    curves = []
    for (arrangement, source), group in summary.groupby(["arrangement", "from"], sort=False):
        other = OTHER[source]
        ends = {0: other, n: source} if arrangement == "prefix" else {0: source, n: other}
        points = group.sort_values("cut")
        cuts = [0, *points["cut"].tolist(), n]
        means = [_mean(baselines, ends[0]), *points["test_accuracy_mean"].tolist(), _mean(baselines, ends[n])]
        cis = [0.0, *map(ci_or_zero, points["test_accuracy_ci95"]), 0.0]
        kept = "units 0..k-1" if arrangement == "prefix" else "units k..last"
        label = f"{kept} kept from the {source} student, the rest trained on {other}"
        style = "-" if arrangement == "prefix" else "--"
        curves.append(Curve(label, cuts, means, cis, SOURCE_COLOURS[source], style))
    levels = baseline_levels(baselines, {"real": "real-only", "synthetic": "synthetic-only"})
    ticks = [(k, str(k) if k in (0, n) else f"{k}\n{names[k]}") for k in range(n + 1)]
    panel = Panel("test accuracy on real images", curves, levels)
    return LineChart(
        "Layer swap: which units carry the gap",
        "cut k (the first unit after it)",
        [panel],
        ticks,
        legend_at="lower center",
    )


def _mean(baselines: pd.DataFrame, cell: str) -> float:
    return float(baselines.loc[cell, "test_accuracy_mean"]) if cell in baselines.index else np.nan
