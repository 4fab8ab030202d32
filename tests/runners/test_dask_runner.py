"""`kedro run --runner mind_the_gap.runners.DaskRunner` as a user runs it, on a Dask cluster of 2 worker processes
and an MLflow server: the smoke layer-swap and data-efficiency grids, each student a Dask task, against the
sequential runner's; then with a killed worker and with a failing cell."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client, LocalCluster
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from mind_the_gap.experiments import layer_swap
from mind_the_gap.runners.dask import ATTEMPT, CELL_TAG, WORKER_TAG

from ..pipelines.conftest import make_project
from ..pipelines.servers import mlflow_serving

pytestmark = pytest.mark.slow

GRID = {f"layer_swap.{cell}": spec for cell, spec in layer_swap.CELLS.items()}  # (arrangement, from, trained on)
CELLS = set(GRID) | {"layer_swap"}
STUDENTS = 2 * len(GRID)  # a cut and 2 seeds a cell
UPSTREAM = "data_processing,generator_training,generation,baselines"
RUNS = Path("data/smoke/07_model_output/layer_swap")
DATA_EFFICIENCY_RUNS = Path("data/smoke/07_model_output/data_efficiency")
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
    with mlflow_serving(tmp_path_factory.mktemp("mlflow_server"), workers=2) as address:
        yield address


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A Dask cluster of 2 single-threaded worker processes on 127.0.0.1: its scheduler's address."""

    environ = dict(os.environ)  # the nannies set their workers' variables in this process
    try:
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
        ) as cluster:
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
def projects(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> tuple[Path, Path]:
    """A project where the pipelines before the grids ran, tracking to the server, and a copy tracking to its own
    database, for the sequential runner."""
    root = make_project(tmp_path_factory.mktemp("dask") / "project")
    track_to(root, mlflow_server)
    upstream = kedro(root, "--pipelines", UPSTREAM)
    assert upstream.returncode == 0, upstream.stderr[-3000:]
    sequential = tmp_path_factory.mktemp("sequential") / "project"
    shutil.copytree(root, sequential)
    track_to(sequential, f"sqlite:///{sequential / 'mlflow.db'}")
    return root, sequential


@pytest.fixture(scope="module")
def grid(projects: tuple[Path, Path], mlflow_server: str, scheduler: str) -> Grid:
    root, sequential = projects
    run = kedro(root, "--pipeline", "layer_swap", "--runner", "mind_the_gap.runners.DaskRunner", scheduler=scheduler)
    assert run.returncode == 0, run.stderr[-3000:]
    alone = kedro(sequential, "--pipeline", "layer_swap")
    assert alone.returncode == 0, alone.stderr[-3000:]
    return Grid(root, sequential, run, MlflowClient(mlflow_server))


def _runs(client: MlflowClient) -> pd.DataFrame:
    experiment = client.get_experiment_by_name("mind-the-gap-smoke")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return pd.DataFrame(
        [
            {
                "run_id": r.info.run_id,
                "status": r.info.status,
                "start": r.info.start_time,
                "name": r.data.tags.get(MLFLOW_RUN_NAME),
                "parent": r.data.tags.get(MLFLOW_PARENT_RUN_ID),
                "cell": r.data.tags.get(CELL_TAG),
                "worker": r.data.tags.get(WORKER_TAG),
                "pipeline": r.data.tags.get("pipeline"),
                "test_accuracy": r.data.metrics.get("test_accuracy"),
            }
            for r in runs
        ]
    )


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
    assert set(cells["cell"]) == CELLS
    assert set(cells["name"]) == CELLS
    assert (cells["status"] == "FINISHED").all()
    assert cells["worker"].nunique() == 2  # the cells ran on both workers
    # Each student nested under its cell, named and tagged as in a sequential run, with its test accuracy.
    assert len(students) == STUDENTS
    assert (students["pipeline"] == "layer_swap").all()
    assert students["worker"].nunique() == 2  # each student a task of its own, on either worker
    student_cells = students["parent"].map(dict(zip(cells["run_id"], cells["cell"], strict=True)))
    assert set(student_cells) == CELLS - {"layer_swap"}
    assert students["test_accuracy"].between(0, 1).all()
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
    # The students, trained on the workers, counted by the driver as in a sequential run.
    assert f"this run trains or reuses {STUDENTS} students" in grid.run.stdout
    assert f"student {STUDENTS}/{STUDENTS} done (layer_swap." in grid.run.stdout


def test_the_distributed_grid_equals_the_sequential_one_bit_for_bit(grid: Grid):
    for cell in CELLS - {"layer_swap"}:
        name = f"{cell.removeprefix('layer_swap.')}_runs.csv"
        distributed, sequential = (pd.read_csv(p / RUNS / name) for p in (grid.distributed, grid.sequential))
        assert not distributed["cache_hit"].any()
        assert not sequential["cache_hit"].any()
        pd.testing.assert_frame_equal(distributed[LEARNED], sequential[LEARNED], check_exact=True)


def test_the_distributed_data_efficiency_grid_equals_the_sequential_one_bit_for_bit(
    projects: tuple[Path, Path], mlflow_server: str, scheduler: str
):
    # The data-efficiency grid: its fine-tuned students start from the synthetic baselines.
    root, sequential_root = projects
    run = kedro(
        root, "--pipeline", "data_efficiency", "--runner", "mind_the_gap.runners.DaskRunner", scheduler=scheduler
    )
    assert run.returncode == 0, run.stderr[-3000:]
    alone = kedro(sequential_root, "--pipeline", "data_efficiency")
    assert alone.returncode == 0, alone.stderr[-3000:]
    trained = 0
    # Reused by both: the real baselines (scratch on the whole pool, a smoke seed each) and each arm's chosen
    # learning-rate candidate (its student at 1/2 of seed 0; conf/smoke's arms: scratch, last 2, all, re-initialised).
    for cell, reused in (("learning_rate", 0), ("scratch", 2 + 1), ("finetune", 2), ("reinit", 1)):
        distributed, sequential = (
            pd.read_csv(p / DATA_EFFICIENCY_RUNS / f"{cell}_runs.csv") for p in (root, sequential_root)
        )
        assert distributed["cache_hit"].sum() == reused
        assert distributed["cache_hit"].equals(sequential["cache_hit"])
        pd.testing.assert_frame_equal(distributed[LEARNED], sequential[LEARNED], check_exact=True)
        trained += len(distributed)
    runs = _runs(MlflowClient(mlflow_server))
    students = runs[runs["pipeline"] == "data_efficiency"]
    assert len(students) == trained
    assert students["worker"].nunique() == 2  # each student a task of its own, on either worker


def test_with_no_scheduler_named_the_runner_starts_and_stops_a_cluster_of_its_own(grid: Grid):
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    command = [
        str(Path(sys.executable).with_name("kedro")),
        "run",
        "--env",
        "smoke",
        "--pipeline",
        "layer_swap",
        "--runner",
        "mind_the_gap.runners.DaskRunner",
        "--runner-params",
        "workers=2",
    ]
    run = subprocess.run(
        command,
        cwd=grid.distributed,
        capture_output=True,
        text=True,
        timeout=900,
        env=env | {"KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "400"},
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert f"Dask: {len(CELLS)} cells on the scheduler at tcp://127.0.0.1:" in run.stdout
    runs = _runs(grid.mlflow)
    parent = runs[(runs["name"] == "layer_swap") & runs["parent"].isna()].sort_values("start").iloc[-1]
    cells, students = _study(runs, parent["run_id"])
    assert cells["worker"].nunique() == 2
    assert set(cells["worker"]).isdisjoint(_runs_workers(runs, parent["run_id"]))
    assert len(students) == STUDENTS  # every student reused from the first run, and logged under its cell again


def _runs_workers(runs: pd.DataFrame, but: str) -> set[str]:
    """The workers of every other study's cells: those of the test's own cluster."""
    others = runs[runs["cell"].notna() & (runs["parent"] != but)]
    return set(others["worker"])


def _cell_processes(workers: set[int]) -> dict[int, int]:
    """The cells' own `kedro run` processes alive under these worker processes: their pid, and their worker's."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            running = b"mind_the_gap.runners.cell_process" in cmdline.read_bytes()
            state, parent = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue  # gone meanwhile
        if running and state != "Z" and int(parent) in workers:
            found[int(cmdline.parent.name)] = int(parent)
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the cells' processes through Linux's /proc")
def test_a_worker_killed_mid_cell_stops_its_cell_which_resumes_its_students_on_a_new_worker(grid: Grid, scheduler: str):
    store = grid.distributed / "data/smoke/06_models/students"
    command = [
        str(Path(sys.executable).with_name("kedro")),
        "run",
        "--env",
        "smoke",
        "--pipeline",
        "layer_swap",
        "--runner",
        "mind_the_gap.runners.DaskRunner",
        "--params",
        "training.epochs=25",
    ]  # new students
    env = os.environ | {"KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "400", "DASK_SCHEDULER_ADDRESS": scheduler}
    run = subprocess.Popen(
        command, cwd=grid.distributed, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while len(list(store.glob("*.progress.pt"))) < 2:  # both workers' first students are past an epoch
            assert run.poll() is None, run.stdout.read() if run.stdout else ""
            assert time.monotonic() < deadline, "no worker's first student finished an epoch in 300 s"
            time.sleep(0.1)
        with Client(scheduler) as client:
            workers = set(client.run(os.getpid).values())
        cell, worker = next(iter(_cell_processes(workers).items()))
        os.kill(worker, signal.SIGKILL)
        while cell in _cell_processes(workers):  # the cell's own run stops with its worker
            assert time.monotonic() < deadline
            time.sleep(0.1)
        output, _ = run.communicate(timeout=600)
    finally:
        run.kill()
    assert run.returncode == 0, output[-3000:]
    logs = (grid.distributed / "logs" / "dask").glob("*/*.log")
    texts = [log.read_text() for log in logs]
    assert sum(text.count(ATTEMPT) == 2 for text in texts) == 1  # the killed cell, started twice
    # The killed worker's student, run again on the other worker, resumed (its lines go to its cell's log).
    assert any("resuming after epoch" in text for text in texts)
    runs = _runs(grid.mlflow)
    parent = runs[(runs["name"] == "layer_swap") & runs["parent"].isna()].sort_values("start").iloc[-1]
    cells, students = _study(runs, parent["run_id"])
    assert sorted(cells["cell"]) == sorted(CELLS)
    assert (cells["status"] == "FINISHED").all()
    # Every student finished. One that the killed cell's first try trained after the kill, on the other worker, has
    # a second run: the cell's second try reused it from the store.
    assert students.loc[students["status"] == "FINISHED", "name"].nunique() == STUDENTS


def test_a_failing_cell_fails_its_run_and_the_study_and_is_named_while_the_others_finish(grid: Grid, scheduler: str):
    # The synthetic baselines' table names seeds the grid does not ask for: the cells that start from them fail.
    baselines = grid.distributed / "data/smoke/07_model_output/baselines/synthetic_runs.csv"
    table = pd.read_csv(baselines)
    table.assign(seed=table["seed"] + 7).to_csv(baselines, index=False)
    try:
        run = kedro(
            grid.distributed,
            "--pipeline",
            "layer_swap",
            "--runner",
            "mind_the_gap.runners.DaskRunner",
            scheduler=scheduler,
        )
    finally:
        table.to_csv(baselines, index=False)

    assert run.returncode != 0
    output = " ".join((run.stdout + run.stderr).split())
    from_synthetic = {cell for cell, (_, source, _) in GRID.items() if source == "synthetic"}
    assert f"{len(from_synthetic)} of {len(CELLS)} cells failed" in output
    assert "not run, as they need a failed cell: layer_swap" in output
    assert "cell layer_swap.prefix_from_synthetic failed" in output
    assert "seed(s) [0, 1]" in output
    runs = _runs(grid.mlflow)
    parent = runs[(runs["name"] == "layer_swap") & runs["parent"].isna()].sort_values("start").iloc[-1]
    assert parent["status"] == "FAILED"
    cells, _ = _study(runs, parent["run_id"])
    status = dict(zip(cells["cell"], cells["status"], strict=True))
    assert status == {cell: "FAILED" if cell in from_synthetic else "FINISHED" for cell in GRID}
    # The cells that finished reused every student the first run trained.
    assert pd.read_csv(grid.distributed / RUNS / "prefix_from_real_runs.csv")["cache_hit"].all()
