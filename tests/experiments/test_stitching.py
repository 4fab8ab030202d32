"""Stitching: the students of each arrangement planned without Kedro (which seed's bottom meets which seed's top),
the stitch's recipe and cuts validated, and the summary's paired comparisons against a hand-computed case."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pydantic import ValidationError

from mind_the_gap.experiments import stitching
from mind_the_gap.experiments.stitching import ARRANGEMENTS, StitchingConfig, plan, resolve_cuts
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.results.figures import matplotlib_figure
from mind_the_gap.results.interactive import plotly_figure
from mind_the_gap.results.stitching import stitching_chart
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.stitching import Stitch

STUDENT = StudentConfig(width=8)  # 10 units by blocks
TRAINING = TrainConfig(epochs=15, lr=0.1, weight_decay=5e-4, warmup_epochs=1)
CONFIG = StitchingConfig(seeds=[0, 1, 2], cuts=[3, 8])


def keyed(seeds: list[int], prefix: str) -> pd.DataFrame:
    return pd.DataFrame({"seed": seeds, "student_key": [f"{prefix}{s}" for s in seeds]})


REAL, SYNTHETIC = keyed([0, 1, 2], "real"), keyed([0, 1, 2], "synthetic")


def test_each_seeds_bottom_meets_the_next_seeds_top_in_every_arrangement():
    for arrangement, (bottom, top) in ARRANGEMENTS.items():
        jobs = plan(arrangement, REAL, SYNTHETIC, STUDENT, TRAINING, CONFIG)
        assert [(job.seed, job.stitch) for job in jobs] == [
            (seed, Stitch(f"{bottom}{seed}", f"{top}{(seed + 1) % 3}", cut)) for cut in (3, 8) for seed in (0, 1, 2)
        ], arrangement
        assert {job.train[0].name for job in jobs} == {"real_train"}  # every stitch trains on real images
    (job, *_) = plan("synthetic_to_real", REAL, SYNTHETIC, STUDENT, TRAINING, CONFIG)
    assert job.name == "stitching/synthetic 0-2 + real 3-9/seed0+1"
    assert job.columns == {
        "arrangement": "synthetic_to_real",
        "cut": 3,
        "bottom": "synthetic",
        "top": "real",
        "bottom_units": "0-2",
        "top_units": "3-9",
        "top_seed": 1,
        "bottom_key": "synthetic0",
        "top_key": "real1",
    }
    # The study's recipe with the stitch's own epochs, rate, weight decay and warmup.
    assert job.training == TRAINING.model_copy(
        update={"epochs": 3, "lr": 0.01, "weight_decay": 0.0, "warmup_epochs": 0}
    )
    seeds = StitchingConfig(seeds=[5, 7])
    assert stitching.partner_seeds(seeds.seeds) == {5: 7, 7: 5}
    with pytest.raises(ValueError, match=r"needs the synthetic baseline students of seed\(s\) \[2\]"):
        plan("real_to_synthetic", REAL, keyed([0, 1], "synthetic"), STUDENT, TRAINING, CONFIG)


def test_the_parameters_are_validated():
    with pytest.raises(ValidationError, match="at least 2"):
        StitchingConfig(seeds=[0])
    with pytest.raises(ValidationError, match="epochs"):
        StitchingConfig.model_validate({"training": {"epochs": 0}})
    with pytest.raises(ValidationError, match="extra"):
        StitchingConfig.model_validate({"training": {"epoch": 2}})
    with pytest.raises(ValidationError, match="warmup_epochs"):  # checked against the study's recipe it joins
        StitchingConfig.model_validate({"training": {"warmup_epochs": 3}}).recipe(TRAINING)
    assert resolve_cuts(StitchingConfig(), STUDENT) == list(range(1, 10))
    with pytest.raises(ValueError, match=r"stitching.cuts \[10\]"):
        resolve_cuts(StitchingConfig(cuts=[3, 10]), STUDENT)
    layers = StudentConfig(width=8, units="layers")  # 18 units: stem, 2 convs a block, fc
    assert resolve_cuts(StitchingConfig(), layers) == [1, 3, 5, 7, 9, 11, 13, 15, 17]
    with pytest.raises(ValueError, match="joins whole blocks"):
        resolve_cuts(StitchingConfig(cuts=[2]), layers)


def _runs(arrangement: str, cut: int, accuracies: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "arrangement": arrangement,
            "bottom": ARRANGEMENTS[arrangement][0],
            "top": ARRANGEMENTS[arrangement][1],
            "cut": cut,
            "bottom_units": f"0-{cut - 1}",
            "top_units": f"{cut}-9",
            "seed": [0, 1, 2],
            "test_accuracy": accuracies,
        }
    )


def test_the_summary_pairs_each_arrangement_with_real_real_at_its_cut():
    runs = pd.concat(
        [
            _runs("synthetic_to_real", 8, [0.70, 0.60, 0.65]),
            _runs("real_to_real", 3, [0.80, 0.82, 0.84]),
            _runs("real_to_real", 8, [0.80, 0.70, 0.78]),
            _runs("real_to_synthetic", 3, [0.60, 0.64, 0.62]),
        ],
        ignore_index=True,
    )
    summary, metrics = stitching.summarize(runs)
    assert list(zip(summary["cut"], summary["arrangement"], strict=True)) == [
        (3, "real_to_real"),
        (3, "real_to_synthetic"),
        (8, "real_to_real"),
        (8, "synthetic_to_real"),
    ]
    rows = summary.set_index(["cut", "arrangement"])
    assert rows.loc[(8, "real_to_real"), "test_accuracy_mean"] == pytest.approx(0.76)
    # Per seed, cut 3: 0.60 - 0.80, 0.64 - 0.82, 0.62 - 0.84 = -0.20, -0.18, -0.22: mean -20 points, sd 2 points.
    assert rows.loc[(3, "real_to_synthetic"), "vs_real_real_pp"] == pytest.approx(-20.0)
    t95_2 = 4.302652729911275  # Student's t, 2 degrees of freedom, two-sided 95 %
    assert rows.loc[(3, "real_to_synthetic"), "vs_real_real_pp_ci95"] == pytest.approx(t95_2 * 2 / math.sqrt(3))
    # Cut 8: -0.10, -0.10, -0.13: mean -11 points.
    assert rows.loc[(8, "synthetic_to_real"), "vs_real_real_pp"] == pytest.approx(-11.0)
    assert rows.loc[(8, "synthetic_to_real"), "vs_real_real_pp_n"] == 3
    # Holm over the table's two comparisons: the smaller p doubled, the larger kept (and never below the smaller).
    p = rows["vs_real_real_pp_p"].dropna().sort_values()
    holm = rows["vs_real_real_pp_p_holm"].dropna()
    assert holm[p.index[0]] == pytest.approx(min(1, 2 * p.iloc[0]))
    assert holm[p.index[1]] == pytest.approx(max(p.iloc[1], min(1, 2 * p.iloc[0])))
    assert math.isnan(rows.loc[(3, "real_to_real"), "vs_real_real_pp"])
    assert metrics["real_to_synthetic.3.vs_real_real_pp"]["value"] == pytest.approx(-20.0)
    assert metrics["real_to_real.8.test_accuracy_mean"]["value"] == pytest.approx(0.76)
    empty, nothing = stitching.summarize(runs.iloc[:0])
    assert len(empty) == 0
    assert nothing == {}


def test_the_chart_draws_each_arrangement_against_cut_with_the_baselines():
    runs = pd.concat(
        [_runs(arrangement, cut, [0.7, 0.6, 0.65]) for arrangement in ARRANGEMENTS for cut in (3, 8)],
        ignore_index=True,
    )
    summary, _ = stitching.summarize(runs)
    baselines = {
        source: keyed([0, 1, 2], source).assign(test_accuracy=accuracy)
        for source, accuracy in (("real", 0.8), ("synthetic", 0.5))
    }
    chart = stitching_chart(summary, baselines["real"], baselines["synthetic"])
    (panel,) = chart.panels
    assert [curve.x for curve in panel.curves] == [[3, 8]] * 4
    assert panel.curves[0].label == "units 0..k-1 of a real student, k..last of a real student"
    assert [level.mean for level in panel.levels] == [pytest.approx(0.8), pytest.approx(0.5)]
    figure = plotly_figure(chart)
    assert len([trace for trace in figure.data if trace.name and trace.name.startswith("units")]) == 4
    matplotlib_figure(chart)
