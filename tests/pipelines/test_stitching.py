"""The stitching pipeline: per arrangement, baseline students of two seeds joined by a trained stitching layer, each
tracked in MLflow with what it joins; the summary and its figures; one namespace per arrangement."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import torch

from mind_the_gap.experiments.stitching import ARRANGEMENTS, StitchingConfig
from mind_the_gap.pipelines.stitching.nodes import summarize_stitching, train_stitching
from mind_the_gap.pipelines.stitching.pipeline import create_pipeline
from mind_the_gap.training.stitching import Stitch
from mind_the_gap.training.student_cache import StudentStore, load_stitched

from .conftest import STUDENT, TinyExperiment

CONFIG = StitchingConfig.model_validate({"seeds": [0, 1], "cuts": [5], "training": {"epochs": 1}})


def test_each_arrangement_is_a_namespace_and_the_summary_reads_them_all():
    pipeline = create_pipeline()
    outputs = pipeline.all_outputs()
    assert {f"stitching.{arrangement}.runs" for arrangement in ARRANGEMENTS} <= outputs
    assert {"stitching_summary", "stitching_metrics", "stitching_figure", "stitching_interactive"} <= outputs
    assert {"baselines_real_runs", "baselines_synthetic_runs", "real_train", "params:stitching"} <= pipeline.inputs()


def test_an_arrangement_stitches_each_seeds_bottom_to_the_next_seeds_top(tiny: TinyExperiment, tracking: str):
    runs = {
        arrangement: train_stitching(
            arrangement, tiny.real_runs, tiny.synthetic_runs, tiny.real_train, tiny.study, CONFIG
        )
        for arrangement in ("real_to_real", "synthetic_to_real")
    }
    crossed = runs["synthetic_to_real"]
    real = tiny.real_runs.set_index("seed")["student_key"]
    synthetic = tiny.synthetic_runs.set_index("seed")["student_key"]
    assert crossed[["seed", "top_seed", "cut"]].values.tolist() == [[0, 1, 5], [1, 0, 5]]
    assert crossed["bottom_key"].tolist() == [synthetic[0], synthetic[1]]
    assert crossed["top_key"].tolist() == [real[1], real[0]]
    assert crossed["test_accuracy"].between(0, 1).all()
    assert crossed["cache_hit"].eq(False).all()
    # The stitched student is its two students and its trained layer: loaded again, it is the one tested.
    store = StudentStore(tiny.store)
    row = crossed.iloc[0]
    model = load_stitched(store, row["student_key"], Stitch(row["bottom_key"], row["top_key"], 5), STUDENT, tiny.test)
    assert sum(p.numel() for p in model[5].parameters()) == 16 * 16 + 2 * 16  # after the second stage: 2 x width 8
    assert torch.equal(model[0][0].weight, store.load_model(synthetic[0], STUDENT, tiny.test)[0][0].weight)

    tracked = mlflow.search_runs(experiment_names=["Default"], filter_string="tags.pipeline = 'stitching'")
    first = tracked.drop_duplicates("tags.student_key").set_index("tags.student_key").loc[row["student_key"]]
    assert first["tags.mlflow.runName"] == "stitching/synthetic 0-4 + real 5-9/seed0+1"
    assert (first["tags.cell"], first["tags.bottom"], first["tags.top"], first["tags.cut"]) == (
        "synthetic_to_real",
        "synthetic",
        "real",
        "5",
    )
    assert (first["params.stitch.bottom"], first["params.stitch.top"]) == (synthetic[0], real[1])
    assert first["params.training.epochs"] == "1"

    again = train_stitching(
        "synthetic_to_real", tiny.real_runs, tiny.synthetic_runs, tiny.real_train, tiny.study, CONFIG
    )
    assert again["cache_hit"].all()
    assert again["student_key"].tolist() == crossed["student_key"].tolist()

    summary, metrics, png, interactive = summarize_stitching(tiny.real_runs, tiny.synthetic_runs, *runs.values())
    assert summary["arrangement"].tolist() == ["real_to_real", "synthetic_to_real"]
    assert summary["n"].eq(2).all()
    expected = 100 * (crossed["test_accuracy"].to_numpy() - runs["real_to_real"]["test_accuracy"].to_numpy()).mean()
    assert summary.loc[1, "vs_real_real_pp"] == pytest.approx(expected)
    assert pd.isna(summary.loc[0, "vs_real_real_pp"])
    assert "synthetic_to_real.5.vs_real_real_pp" in metrics
    assert png.axes
    assert interactive.data
