"""Layer swap's nodes: the students of a cell, and the summary with its figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import layer_swap
from mind_the_gap.experiments.layer_swap import Arrangement, LayerSwapConfig, Source
from mind_the_gap.experiments.study import Study, train_cell
from mind_the_gap.models.architectures import StudentConfig, student_unit_names
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure
from mind_the_gap.results.layer_swap import layer_swap_chart


def train_layer_swap(
    arrangement: Arrangement,
    source: Source,
    parent_runs: pd.DataFrame,
    other_train: ImageSet,
    study: Study,
    config: LayerSwapConfig,
) -> pd.DataFrame:
    """Every cut and seed of one cell: units kept from the ``source`` baseline student of the same seed, the other
    units trained on the other source's images."""
    jobs = layer_swap.plan(arrangement, source, parent_runs, "other_train", study.student, config)
    return train_cell(study, "layer_swap", f"{arrangement}_from_{source}", jobs, {"other_train": other_train})


def summarize_layer_swap(
    real_runs: pd.DataFrame, synthetic_runs: pd.DataFrame, student: StudentConfig, *cell_runs: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """Mean ± 95% CI per cell and cut, the share of the gap each recovers, and accuracy against cut (as a PNG's
    figure and an interactive one)."""
    baselines = pd.concat([real_runs, synthetic_runs], ignore_index=True)
    runs = pd.concat(cell_runs, ignore_index=True)
    table, summary, reference, metrics = layer_swap.summarize(baselines, runs, student)
    chart = layer_swap_chart(summary, reference, student_unit_names(student))
    return table, metrics, matplotlib_figure(chart), plotly_figure(chart)
