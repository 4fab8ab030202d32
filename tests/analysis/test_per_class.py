"""Per-class gaps: the paired gap per class against a hand-computed case, the judges' measures beside it, the
rank correlations, and the chart that orders the classes by gap across the recognisability bands."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mind_the_gap.analysis.per_class import JUDGED, per_class_gaps, rank_correlations
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure
from mind_the_gap.results.per_class import per_class_chart

CLASSES = ["shirt", "bag", "boot"]


def judged_table() -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for name, recognised in zip(CLASSES, (0.3, 0.9, 0.6), strict=True):
            for set_name, shift in (("synthetic (generation)", 0.0), ("guidance 1", 0.05)):
                measures = dict.fromkeys(JUDGED, 0.5 + shift)
                measures["recognisability"] = recognised + shift + 0.1 * seed
                rows.append({"judge_seed": seed, "set": set_name, "class": name, **measures})
    return pd.DataFrame(rows)


def test_per_class_gaps_pairs_by_seed_and_orders_the_largest_gap_first():
    # Columns are seeds; rows are classes. Shirt: real 0.8, 0.9 vs synthetic 0.4, 0.6: differences 40 and 30
    # points, mean 35, CI t(0.975, 1) * 5 (the differences' sd 7.07 over sqrt 2). Bag: no gap. Boot: 12.5 twice.
    real = pd.DataFrame({0: [0.8, 0.9, 0.75], 1: [0.9, 0.9, 0.875], 2: [0.5, 0.5, 0.5]})  # seed 2 has no pair
    synthetic = pd.DataFrame({1: [0.6, 0.9, 0.75], 0: [0.4, 0.9, 0.625]})
    table = per_class_gaps(real, synthetic, CLASSES, judged_table(), "synthetic (generation)")
    assert table["class"].tolist() == ["shirt", "boot", "bag"]
    shirt = table.iloc[0]
    assert shirt["gap_pp"] == pytest.approx(35)
    assert shirt["gap_pp_ci95"] == pytest.approx(12.7062047 * 5, rel=1e-6)
    assert shirt["gap_pp_n"] == 2
    assert shirt["real_accuracy"] == pytest.approx(0.85)
    assert shirt["recognisability"] == pytest.approx(0.35)  # judges 0 and 1: 0.3 and 0.4; guidance 1 not read
    assert table.iloc[1]["gap_pp"] == 12.5
    assert math.isnan(table.iloc[1]["gap_pp_p"])  # differences without spread
    assert table["gap_pp_p_holm"].notna().sum() == 1


def test_per_class_gaps_names_what_is_missing():
    real, synthetic = pd.DataFrame({0: [0.8] * 3}), pd.DataFrame({1: [0.8] * 3})
    with pytest.raises(ValueError, match="shared seed"):
        per_class_gaps(real, synthetic, CLASSES, judged_table(), "synthetic (generation)")
    with pytest.raises(ValueError, match="no set named 'unclip'"):
        per_class_gaps(real, real, CLASSES, judged_table(), "unclip")


def test_rank_correlations_follow_the_gap():
    table = pd.DataFrame({"gap_pp": [30.0, 20.0, 10.0], **{m: [0.1, 0.2, 0.3] for m in JUDGED}})
    table["frechet_distance"] = [3.0, 2.0, 1.0]
    correlations = rank_correlations(table).set_index("measure")["spearman_with_gap"]
    assert correlations["recognisability"] == pytest.approx(-1)
    assert correlations["frechet_distance"] == pytest.approx(1)


def test_the_chart_orders_classes_by_gap_across_recognisability_bands():
    real = pd.DataFrame({0: [0.8, 0.9, 0.7], 1: [0.9, 0.9, 0.8]})
    synthetic = pd.DataFrame({0: [0.4, 0.9, 0.6], 1: [0.6, 0.9, 0.7]})
    table = per_class_gaps(real, synthetic, CLASSES, judged_table(), "synthetic (generation)")
    chart = per_class_chart(table)
    assert chart.categories == ["shirt (35%)", "boot (65%)", "bag (95%)"]
    assert [group.label for group in chart.groups] == ["synthetic images recognised < 50 %", "50-80 %", "≥ 80 %"]
    assert chart.groups[0].mean == [pytest.approx(35)]
    labels = [t.get_text() for t in matplotlib_figure(chart).axes[0].get_yticklabels()]
    assert labels == chart.categories[::-1]  # the largest gap on top
    assert list(plotly_figure(chart).layout.yaxis.categoryarray) == chart.categories[::-1]
