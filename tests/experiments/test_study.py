"""A cell's students trained at once: when one fails, the others stop after their epoch, resumable."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from mind_the_gap.experiments.study import SetsOnDemand, StudentJob, build_study, train_cell, views
from mind_the_gap.training.transfer import Transfer, TransferConfig

from ..conftest import striped_images
from ..pipelines.conftest import STUDENT, TRAINING, TinyExperiment


def test_when_a_student_fails_the_others_stop_after_their_epoch_and_resume_later(
    tiny: TinyExperiment, tracking: str, tmp_path: Path
):
    store = tmp_path / "students"
    recipe = TRAINING.model_copy(update={"epochs": 8, "concurrent_students": 2})
    study = build_study(tiny.val, tiny.test, store, tiny.real_statistics, STUDENT, recipe)
    long = StudentJob("baselines/long/seed0", 0, views("real"))
    broken = StudentJob("baselines/broken/seed1", 1, views("real"), Transfer("0" * 20, "0-2", TransferConfig()))
    run = lambda jobs: train_cell(study, "baselines", "real", jobs, {"real": tiny.real_train})  # noqa: E731
    with pytest.raises(ValueError, match="is not in"):  # the broken student's parent was never trained
        run([long, broken])
    assert len(list(store.glob("*.progress.pt"))) == 1
    assert not list(store.glob("*.json"))
    stopped = mlflow.search_runs(experiment_names=["Default"], filter_string="tags.cell = 'real'")
    assert "FAILED" in set(stopped[stopped["tags.mlflow.runName"] == "baselines/long/seed0"]["status"])
    rows = run([long])  # resumes where it stopped, and finishes
    assert not rows["cache_hit"][0]
    assert not list(store.glob("*.progress.pt"))
    assert len(list(store.glob("*.json"))) == 1


def test_sets_on_demand_are_read_when_a_student_needs_them_and_let_go_after():
    reads: list[str] = []
    held_while_reading: list[int] = []

    def loader(name: str, seed: int):
        return lambda: reads.append(name) or held_while_reading.append(len(sets._recent)) or striped_images(2, seed)

    sets = SetsOnDemand({f"v{i}": loader(f"v{i}", i) for i in range(3)}, {f"v{i}": 8 for i in range(3)}, keep=2)
    jobs = [StudentJob(f"v{i}/seed{seed}", seed, views(f"v{i}")) for i in range(3) for seed in (0, 1)]
    assert [job.size(sets) for job in jobs] == [8] * 6
    assert reads == []  # sizes are known without reading a set
    first = jobs[0].training_set(sets)
    assert jobs[1].training_set(sets) is first  # the second seed reuses the set read for the first
    for job in jobs[2:]:
        job.training_set(sets)
    assert reads == ["v0", "v1", "v2"]
    assert list(sets._recent) == ["v1", "v2"]  # at most two held
    sets["v0"]
    assert reads == ["v0", "v1", "v2", "v0"]
    assert max(held_while_reading) == 1  # a set to let go is let go before the next is read
    with_pool = sets.after({"pool": first})
    assert list(with_pool)[0] == "pool"
    assert with_pool.size("pool") == len(first)
