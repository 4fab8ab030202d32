"""Levers: each lever's students and the layer swap's headline students from them, planned without Kedro, and the
summary's paired comparisons against hand-computed cases."""

from __future__ import annotations

import pandas as pd
import pytest

from mind_the_gap.experiments import layer_swap, levers
from mind_the_gap.experiments.levers import LeversConfig, plan_distillation, plan_swaps
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.training.distillation import Teacher

STUDENT = StudentConfig(width=8)  # 10 units by blocks
CONFIG = LeversConfig.model_validate({"seeds": [0, 1], "distillation": {"temperatures": [1, 4]}})


def keyed(seeds: list[int], prefix: str, **columns: object) -> pd.DataFrame:
    return pd.DataFrame({**columns, "seed": seeds, "student_key": [f"{prefix}{s}" for s in seeds]})


def test_distilled_students_learn_from_the_real_student_of_their_seed():
    jobs = plan_distillation(keyed([0, 1, 2], "real"), CONFIG)
    assert [(job.columns["variant"], job.seed, job.teacher) for job in jobs] == [
        ("temperature 1", 0, Teacher("real0", 1.0)),
        ("temperature 1", 1, Teacher("real1", 1.0)),
        ("temperature 4", 0, Teacher("real0", 4.0)),
        ("temperature 4", 1, Teacher("real1", 4.0)),
    ]
    assert {job.train[0].name for job in jobs} == {"synthetic_train"}
    assert jobs[3].name == "levers/distillation/temperature 4/synthetic/seed1"
    with pytest.raises(ValueError, match=r"needs the real baseline students of seed\(s\) \[1\]"):
        plan_distillation(keyed([0], "real"), CONFIG)


def test_each_levers_student_gets_the_layer_swaps_headline_student():
    runs = pd.concat([keyed([0, 1], "t1-", variant="temperature 1"), keyed([0, 1], "t4-", variant="temperature 4")])
    jobs = plan_swaps("distillation", runs, STUDENT, CONFIG, headline_cut=8)
    assert [(job.transfer.parent, job.transfer.kept, job.train[0].name) for job in jobs] == [
        ("t1-0", "0-7", "real_train"),
        ("t1-1", "0-7", "real_train"),
        ("t4-0", "0-7", "real_train"),
        ("t4-1", "0-7", "real_train"),
    ]
    assert jobs[0].name == "levers/distillation/temperature 1/last units real/seed0"
    assert jobs[0].columns == {
        "lever": "distillation",
        "variant": "temperature 1",
        "trained_on": "last units real",
        "kept": "0-7",
    }


def test_the_baselines_headline_students_are_the_layer_swaps_own():
    synthetic = keyed([0, 1], "synthetic").assign(variant="synthetic baseline")
    ours = plan_swaps(levers.BASELINE, synthetic, STUDENT, CONFIG, headline_cut=8)
    swap = layer_swap.LayerSwapConfig(seeds=[0, 1], cuts=[8], headline_cut=8)
    theirs = layer_swap.plan("prefix", "synthetic", synthetic, "real_train", STUDENT, swap)
    # Everything that enters a student's key is the same: one student, trained once, whichever pipeline runs first.
    assert [(j.seed, j.train, j.transfer, j.training, j.teacher) for j in ours] == [
        (j.seed, j.train, j.transfer, j.training, j.teacher) for j in theirs
    ]


def rows(accuracies: list[float], **columns: object) -> pd.DataFrame:
    return pd.DataFrame({**columns, "seed": range(len(accuracies)), "test_accuracy": accuracies})


def test_the_summary_pairs_by_seed_and_gives_the_share_of_the_remaining_gap():
    real, synthetic = rows([0.90, 0.92, 0.94]), rows([0.80, 0.80, 0.84])
    distilled = rows([0.85, 0.84, 0.87], lever="distillation", variant="temperature 4", trained_on="synthetic")
    swapped = rows(
        [0.88, 0.89, 0.91], lever="distillation", variant="temperature 4", trained_on=levers.SWAPPED, kept="0-7"
    )
    baseline_swaps = rows(
        [0.86, 0.87, 0.90], lever="none", variant="synthetic baseline", trained_on=levers.SWAPPED, kept="0-7"
    )
    summary, metrics = levers.summarize(real, synthetic, [baseline_swaps, pd.concat([distilled, swapped])])
    summary = summary.set_index("lever")
    assert summary.index.tolist() == ["none", "distillation"]
    lever = summary.loc["distillation"]
    assert lever["test_accuracy_mean"] == pytest.approx(0.8533333)
    assert lever["gap_pp"] == pytest.approx((5 + 8 + 7) / 3)  # below the real students, per seed
    assert lever["vs_baseline_pp"] == pytest.approx((5 + 4 + 3) / 3)  # above the synthetic ones
    assert lever["vs_baseline_pp_p_holm"] == pytest.approx(lever["vs_baseline_pp_p"])  # a family of one
    assert lever["swap_accuracy_mean"] == pytest.approx(0.8933333)
    # (swap - lever) / (real - lever): mean 4 points over mean 6.67 points.
    assert lever["remaining_recovered"] == pytest.approx(0.6)
    assert lever["remaining_recovered_low"] < 0.6 < lever["remaining_recovered_high"]
    baseline = summary.loc["none"]
    assert baseline["gap_pp"] == pytest.approx(32 / 3)
    assert baseline["remaining_recovered"] == pytest.approx((19 / 3) / (32 / 3))
    assert pd.isna(baseline["vs_baseline_pp"])
    assert metrics["distillation.temperature 4.remaining_recovered"]["value"] == pytest.approx(0.6)
