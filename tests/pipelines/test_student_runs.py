"""A cell's students trained at once: when one fails, the others stop after their epoch, resumable."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from mind_the_gap.pipelines.student_runs import StudentJob, train_cell
from mind_the_gap.training.transfer import Transfer, TransferConfig

from .conftest import STUDENT, TRAINING, TinyExperiment


def test_when_a_student_fails_the_others_stop_after_their_epoch_and_resume_later(
    tiny: TinyExperiment, tracking: str, tmp_path: Path
):
    store = tmp_path / "students"
    recipe = TRAINING.model_copy(update={"epochs": 8, "concurrent_students": 2})
    long = StudentJob("baselines/long/seed0", 0, tiny.real_train)
    broken = StudentJob("baselines/broken/seed1", 1, tiny.real_train, Transfer("0" * 20, "0-2", TransferConfig()))
    run = lambda jobs: train_cell(
        "baselines",
        "real",
        jobs,
        tiny.val,
        tiny.test,
        store,
        STUDENT,
        recipe,  # noqa: E731
        tiny.real_statistics,
    )
    with pytest.raises(ValueError, match="is not in"):  # the broken student's parent was never trained
        run([long, broken])
    assert len(list(store.glob("*.progress.pt"))) == 1 and not list(store.glob("*.json"))  # long stopped early
    stopped = mlflow.search_runs(experiment_names=["Default"], filter_string="tags.cell = 'real'")
    assert "FAILED" in set(stopped[stopped["tags.mlflow.runName"] == "baselines/long/seed0"]["status"])
    rows = run([long])  # resumes where it stopped, and finishes
    assert not rows["cache_hit"][0] and not list(store.glob("*.progress.pt")) and len(list(store.glob("*.json"))) == 1
