"""Layer swap's nodes: the students of a cell, and the summary with its figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import plotly.graph_objects as go

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import layer_swap
from mind_the_gap.experiments.layer_swap import Arrangement, LayerSwapConfig, Source, cell_name
from mind_the_gap.experiments.study import Study, train_cell
from mind_the_gap.models.architectures import StudentConfig, student_unit_names
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure
from mind_the_gap.results.layer_swap import layer_swap_chart


def train_layer_swap(
    arrangement: Arrangement,
    source: Source,
    trained_on: Source,
    parent_runs: pd.DataFrame,
    train_set: ImageSet,
    study: Study,
    config: LayerSwapConfig,
) -> pd.DataFrame:
    """Every cut and seed of one cell: units kept from the ``source`` baseline student of the same seed, the other
    units trained on ``train_set``, the images of ``trained_on`` (the other source, or the same for a control)."""
    jobs = layer_swap.plan(arrangement, source, parent_runs, "train_set", study.student, config, trained_on)
    cell = cell_name(arrangement, source, trained_on)
    return train_cell(study, "layer_swap", cell, jobs, {"train_set": train_set})


def summarize_layer_swap(
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    student: StudentConfig,
    config: LayerSwapConfig,
    *cell_runs: pd.DataFrame,
) -> tuple[pd.DataFrame, dict[str, dict[str, float]], plt.Figure, go.Figure]:
    """Mean ± 95% CI per cell and cut, the paired comparisons and the share of the gap each recovers, and accuracy
    against cut (as a PNG's figure and an interactive one)."""
    baselines = pd.concat([real_runs, synthetic_runs], ignore_index=True)
    runs = pd.concat(cell_runs, ignore_index=True)
    table, summary, reference, metrics = layer_swap.summarize(baselines, runs, student, config)
    chart = layer_swap_chart(summary, reference, student_unit_names(student))
    return table, metrics, matplotlib_figure(chart), plotly_figure(chart)
