"""The normalization experiment's plan: what its synthetic-statistics students learn from and how."""

from __future__ import annotations

from mind_the_gap.experiments.normalization import NormalizationConfig, plan
from mind_the_gap.experiments.study import SetView
from mind_the_gap.training.config import TrainConfig


def test_plan_trains_one_student_per_seed_on_the_synthetic_set_with_its_own_statistics():
    training = TrainConfig(epochs=3, normalization="real")
    jobs = plan(NormalizationConfig(seeds=[4, 7]), training)
    assert [job.seed for job in jobs] == [4, 7]
    assert [job.name for job in jobs] == [
        "normalization/synthetic statistics/seed4",
        "normalization/synthetic statistics/seed7",
    ]
    assert all(job.train == (SetView("synthetic_train"),) for job in jobs)
    assert all(job.columns == {"statistics": "synthetic"} for job in jobs)
    assert jobs[0].training == training.model_copy(update={"normalization": "train"})
    assert training.normalization == "real"  # the study's recipe itself is left alone


def test_plan_trains_no_student_where_the_synthetic_statistics_variants_are_off():
    assert plan(NormalizationConfig(seeds=[0, 1], synthetic_statistics=False), TrainConfig(epochs=3)) == []
