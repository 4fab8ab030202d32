"""`kedro run --runner mind_the_gap.runners.DaskRunner` as a user runs it, on a Dask cluster of 2 worker processes
and an MLflow server: the smoke layer-swap grid, against the sequential runner's, then with a failing cell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from mind_the_gap.runners.dask import CELL_TAG, WORKER_TAG

from ..pipelines.conftest import make_project
from ..pipelines.servers import free_port, serving

pytestmark = pytest.mark.slow

CELLS = {f"layer_swap.{c}" for c in ("prefix_from_real", "prefix_from_synthetic", "suffix_from_real",
                                     "suffix_from_synthetic")} | {"layer_swap"}  # fmt: skip
UPSTREAM = "data_processing,generator_training,generation,baselines"
RUNS = Path("data/smoke/07_model_output/layer_swap")
LEARNED = ["student_key", "test_accuracy", "test_loss", "train_loss", "val_accuracy", "val_loss"]


def kedro(project: Path, *args: str, scheduler: str | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {"KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "400"}  # Rich's log lines, unwrapped
    if scheduler:
        env["DASK_SCHEDULER_ADDRESS"] = scheduler
    command = [str(Path(sys.executable).with_name("kedro")), "run", "--env", "smoke", *args]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=900)


def track_to(project: Path, uri: str) -> None:
    mlflow_yml = project / "conf" / "base" / "mlflow.yml"
    text = mlflow_yml.read_text()
    start = text.index("mlflow_tracking_uri:")
    end = text.index("\n", start)
    mlflow_yml.write_text(f"{text[:start]}mlflow_tracking_uri: {uri}{text[end:]}")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    command = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri",
               f"sqlite:///{folder / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "2"]  # fmt: skip
    with serving(command, folder, f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A Dask cluster of 2 single-threaded worker processes on 127.0.0.1: its scheduler's address."""
    from distributed import LocalCluster

    environ = dict(os.environ)  # the nannies set their workers' variables in this process
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster:  # fmt: skip
            yield cluster.scheduler_address
    finally:
        os.environ.clear()
        os.environ.update(environ)


@dataclass(frozen=True)
class Grid:
    distributed: Path  # the project the Dask runner ran the grid in
    sequential: Path  # the same project, same inputs, where the sequential runner ran it
    run: subprocess.CompletedProcess
    mlflow: MlflowClient


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str, scheduler: str) -> Grid:
    root = make_project(tmp_path_factory.mktemp("dask") / "project")
    track_to(root, mlflow_server)
    upstream = kedro(root, "--pipelines", UPSTREAM)
    assert upstream.returncode == 0, upstream.stderr[-3000:]
    sequential = tmp_path_factory.mktemp("sequential") / "project"
    shutil.copytree(root, sequential)
    track_to(sequential, f"sqlite:///{sequential / 'mlflow.db'}")
    run = kedro(root, "--pipeline", "layer_swap", "--runner", "mind_the_gap.runners.DaskRunner", scheduler=scheduler)
    assert run.returncode == 0, run.stderr[-3000:]
    alone = kedro(sequential, "--pipeline", "layer_swap")
    assert alone.returncode == 0, alone.stderr[-3000:]
    return Grid(root, sequential, run, MlflowClient(mlflow_server))


def _runs(client: MlflowClient) -> pd.DataFrame:
    experiment = client.get_experiment_by_name("mind-the-gap-smoke")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return pd.DataFrame([{"run_id": r.info.run_id, "status": r.info.status, "start": r.info.start_time,
                          "name": r.data.tags.get(MLFLOW_RUN_NAME), "parent": r.data.tags.get(MLFLOW_PARENT_RUN_ID),
                          "cell": r.data.tags.get(CELL_TAG), "worker": r.data.tags.get(WORKER_TAG),
                          "pipeline": r.data.tags.get("pipeline"),
                          "test_accuracy": r.data.metrics.get("test_accuracy")} for r in runs])  # fmt: skip


def _study(runs: pd.DataFrame, parent_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cells' runs under a `kedro run`'s, and the students' runs under those cells."""
    cells = runs[runs["parent"] == parent_id]
    return cells, runs[runs["parent"].isin(cells["run_id"])]


def test_the_grid_is_one_study_in_mlflow_each_cell_a_child_run_on_either_worker(grid: Grid):
    runs = _runs(grid.mlflow)
    parents = runs[(runs["name"] == "layer_swap") & runs["parent"].isna()].sort_values("start")
    parent = parents.iloc[0]
    assert parent["status"] == "FINISHED"
    cells, students = _study(runs, parent["run_id"])
    assert set(cells["cell"]) == CELLS and set(cells["name"]) == CELLS and (cells["status"] == "FINISHED").all()
    assert cells["worker"].nunique() == 2  # the cells ran on both workers
    # Each student nested under its cell, named and tagged as in a sequential run, with its test accuracy.
    assert len(students) == 8 and (students["pipeline"] == "layer_swap").all()
    student_cells = students["parent"].map(dict(zip(cells["run_id"], cells["cell"], strict=True)))
    assert set(student_cells) == CELLS - {"layer_swap"} and students["test_accuracy"].between(0, 1).all()
    assert {"layer_swap/kept=0-4 real/rest synthetic/seed0", "layer_swap/kept=5-9 synthetic/rest real/seed1"} <= set(
        students["name"]
    )


def test_the_grid_writes_its_outputs_and_the_cells_logs(grid: Grid):
    for cell in CELLS - {"layer_swap"}:
        assert (grid.distributed / RUNS / f"{cell.removeprefix('layer_swap.')}_runs.csv").is_file()
    summary = pd.read_csv(grid.distributed / "data/smoke/08_reporting/layer_swap_summary.csv")
    assert CELLS - {"layer_swap"} <= {f"layer_swap.{cell}" for cell in summary["cell"]}
    assert (grid.distributed / "data/smoke/08_reporting/layer_swap.png").is_file()
    (folder,) = (grid.distributed / "logs" / "dask").iterdir()
    assert {p.stem for p in folder.glob("*.log")} == CELLS == {p.stem for p in folder.glob("*.yml")}
    assert "Cell layer_swap finished on tcp://127.0.0.1:" in grid.run.stdout


def test_the_distributed_grid_equals_the_sequential_one_bit_for_bit(grid: Grid):
    for cell in CELLS - {"layer_swap"}:
        name = f"{cell.removeprefix('layer_swap.')}_runs.csv"
        distributed, sequential = (pd.read_csv(p / RUNS / name) for p in (grid.distributed, grid.sequential))
        assert not distributed["cache_hit"].any() and not sequential["cache_hit"].any()
        pd.testing.assert_frame_equal(distributed[LEARNED], sequential[LEARNED], check_exact=True)


def test_a_failing_cell_fails_its_run_and_the_study_and_is_named_while_the_others_finish(grid: Grid, scheduler: str):
    # The synthetic baselines' table names seeds the grid does not ask for: the cells that start from them fail.
    baselines = grid.distributed / "data/smoke/07_model_output/baselines/synthetic_runs.csv"
    table = pd.read_csv(baselines)
    table.assign(seed=table["seed"] + 7).to_csv(baselines, index=False)

    run = kedro(grid.distributed, "--pipeline", "layer_swap", "--runner", "mind_the_gap.runners.DaskRunner",
                scheduler=scheduler)  # fmt: skip

    assert run.returncode != 0
    output = " ".join((run.stdout + run.stderr).split())
    assert "2 of 5 cells failed" in output and "not run, as they need a failed cell: layer_swap" in output
    assert "cell layer_swap.prefix_from_synthetic failed" in output and "seed(s) [0, 1]" in output
    runs = _runs(grid.mlflow)
    parent = runs[(runs["name"] == "layer_swap") & runs["parent"].isna()].sort_values("start").iloc[-1]
    assert parent["status"] == "FAILED"
    cells, _ = _study(runs, parent["run_id"])
    status = dict(zip(cells["cell"], cells["status"], strict=True))
    assert status == {"layer_swap.prefix_from_synthetic": "FAILED", "layer_swap.suffix_from_synthetic": "FAILED",
                      "layer_swap.prefix_from_real": "FINISHED", "layer_swap.suffix_from_real": "FINISHED"}  # fmt: skip
    # The cells that finished reused every student the first run trained.
    assert pd.read_csv(grid.distributed / RUNS / "prefix_from_real_runs.csv")["cache_hit"].all()
