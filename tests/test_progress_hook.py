"""A `kedro run` counts its students together: those of the cells it runs, as the experiments' plans give them with
its parameters on stand-ins of its real sets' sizes, planned once its first student starts; a run whose students
cannot be planned counts each cell's own."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.io import DataCatalog, MemoryDataset

from mind_the_gap import hooks
from mind_the_gap.experiments import progress
from mind_the_gap.experiments.progress import cell_progress, end_run
from mind_the_gap.hooks import StudentProgressHook, planned_run
from mind_the_gap.runners.estimate import environment_parameters
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import planned_steps

from .pipelines.conftest import REPO, make_project, project_catalog, run_pipeline

configure_project("mind_the_gap")  # the hook reads the run's cells from its pipeline, as in a `kedro run`
PIPELINES = dict(pipelines)
SMOKE = environment_parameters(REPO / "conf", "smoke")
# data_processing's summary: 10 classes of 24 training, 3 validation and 10 test images.
SUMMARY = pd.DataFrame({"class": [f"c{i}" for i in range(10)], "generator_pool": 27, "train": 24, "val": 3, "test": 10})


@pytest.fixture(autouse=True)
def no_run_left() -> Iterator[None]:
    end_run()
    yield
    end_run()


def run_catalog(**datasets: object) -> DataCatalog:
    """What the hook reads of a run's catalog: its parameters and, unless left out, the real data's summary."""
    contents = {"parameters": SMOKE, "real_data_summary": SUMMARY} | datasets
    return DataCatalog({name: MemoryDataset(data) for name, data in contents.items() if data is not None})


def test_the_run_counts_the_students_of_its_cells_each_with_its_planned_steps():
    planned = planned_run(PIPELINES["baselines"], run_catalog())
    steps = planned_steps(10 * 24, TrainConfig.model_validate(SMOKE["training"]))  # 24 images a class, either source
    assert planned == {f"baselines/{cell}/seed{seed}": steps for cell in ("real", "synthetic") for seed in (0, 1)}
    layer_swap = planned_run(PIPELINES["layer_swap"], run_catalog())
    assert len(layer_swap) == 8 * 2  # its eight cells, the smoke's one cut, two seeds
    assert {name.split("/")[0] for name in layer_swap} == {"layer_swap"}


def test_the_hook_plans_only_once_a_student_starts_and_the_count_ends_with_the_run(monkeypatch):
    asked, study_work = [], hooks.study_work
    monkeypatch.setattr(hooks, "study_work", lambda *args: asked.append(args) or study_work(*args))
    hook = StudentProgressHook()
    hook.before_pipeline_run(PIPELINES["baselines"], run_catalog())
    assert asked == []  # a run, or a Dask cell's process, that trains no student here never plans
    assert cell_progress({"a": 1}).total == 4
    assert len(asked) == 1
    hook.after_pipeline_run()
    assert cell_progress({"a": 1}).total == 1


def test_a_run_whose_students_cannot_be_planned_counts_each_cells_own(caplog: pytest.LogCaptureFixture):
    StudentProgressHook().before_pipeline_run(PIPELINES["baselines"], run_catalog(real_data_summary=None))
    with caplog.at_level(logging.WARNING, hooks.__name__):
        assert cell_progress({"a": 1, "b": 1}).total == 2
    assert "the run's students could not be planned" in caplog.text
    assert "real_data_summary" in caplog.text


def test_a_failed_run_ends_the_count():
    hook = StudentProgressHook()
    hook.before_pipeline_run(PIPELINES["baselines"], run_catalog())
    hook.on_pipeline_error()
    assert cell_progress({"a": 1}).total == 1


def test_a_kedro_run_logs_each_student_with_the_runs_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    project = make_project(tmp_path / "project")
    monkeypatch.chdir(project)
    run_pipeline(project, "data_processing")
    catalog = project_catalog(project, "smoke")
    catalog.save("synthetic_train", catalog.load("real_train"))  # in generation's place: the baselines need no more
    with caplog.at_level(logging.INFO, progress.__name__):
        run_pipeline(project, "baselines")
    lines = [record.getMessage() for record in caplog.records if record.name == progress.__name__]
    assert lines[0] == "this run trains or reuses 4 students"
    assert [line.split(",")[0].split(":")[0] for line in lines[1:]] == [
        f"student {i}/4 {event} (baselines.{cell})"
        for i, cell in enumerate(["real", "real", "synthetic", "synthetic"], 1)
        for event in ("started", "done")
    ]
    # The first student trained gives the throughput; the synthetic ones, on the same images, are the real ones.
    assert re.fullmatch(
        r"student 1/4 done \(baselines.real\), about [\d.]+ (s|min|h) left: baselines/real/seed0 trained in .+",
        lines[2],
    )
    assert lines[-1] == "student 4/4 done (baselines.synthetic), none left: baselines/synthetic/seed1 reused"
