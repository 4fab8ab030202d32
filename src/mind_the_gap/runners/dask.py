"""A Kedro runner on dask.distributed: each cell of the pipeline (see ``grid``) is one Dask task, which runs the
cell's own `kedro run --nodes ...` on a worker, once the cells it reads from have finished; and each student a cell
trains is a Dask task of its own, on one GPU (``mind_the_gap.experiments.executor``).

A cell's process reaches the cluster through the scheduler's address in its environment; when it hands its students
to the cluster it sets the Dask event named after its task, and the cell's task secedes from its worker's thread
pool (as Dask's docs have a task that waits on others do), so that the thread, and its GPU, train students.

Each cell being a `kedro run` of its own, every Kedro and kedro-mlflow hook runs there as in a sequential run;
cells hand each other nothing but what the catalog saves. MLflow shows one study: the `kedro run` of the driver is
the parent run, each cell's run its child (created on the worker and handed to the cell's process through
``MLFLOW_RUN_ID``, which kedro-mlflow then logs into), and each student nested under its cell as usual.

    kedro run --pipeline layer_swap --runner mind_the_gap.runners.DaskRunner

connects to the scheduler Dask's configuration names (``DASK_SCHEDULER_ADDRESS``, or ``scheduler-address``) or,
with none, starts a cluster on this machine: one worker per GPU, else a few single-threaded workers.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import yaml
from kedro.framework.hooks import hook_impl
from kedro.runner import AbstractRunner
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from mind_the_gap.experiments import progress
from mind_the_gap.experiments.executor import (
    CELL_KEY_ENV,
    CELL_LOG_ENV,
    GPU,
    PROGRESS_TOPIC,
    SCHEDULER_ENV,
    WORKER_TAG,
)
from mind_the_gap.runners.grid import Cell, grid_cells, memory_handoffs

CELL_TAG = "dask.cell"
CELL_ENV = "MIND_THE_GAP_DASK_CELL"  # set in a cell's `kedro run`: the cell's name
ATTEMPT = "--- "  # starts the line a cell's log gets each time the cell starts
# Dask's nannies set it for their workers; in PyTorch's process it turns off glibc's adaptive mmap threshold, so
# every large tensor is mapped and unmapped anew: training ran 1.7x slower on the CPU (benchmarks/bench_training.py).
# Cells' processes go without it, and so do the workers of a cluster the runner starts, where students train.
WORKER_MEMORY_SETTINGS = ("MALLOC_TRIM_THRESHOLD_",)
# The wall seconds of the cells run before, per node, for the report's table of times (mind_the_gap.hooks).
EARLIER_SECONDS_ENV = "MIND_THE_GAP_EARLIER_NODE_SECONDS"


class DaskRunHook:
    """Hook. In the driver: records what the `kedro run` was asked for (environment, configuration, parameters,
    pipelines), which the runner asks of every cell's own `kedro run`. In a cell's `kedro run`: names its MLflow
    run after the cell (kedro-mlflow, whose hooks run before the project's, names it after the pipeline)."""

    def __init__(self) -> None:
        self.conf_source: str | None = None
        self.run_params: dict[str, Any] | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self.conf_source = str(context.config_loader.conf_source)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self.run_params = run_params
        cell = os.environ.get(CELL_ENV)
        if cell and mlflow.active_run() is not None:
            mlflow.set_tag(MLFLOW_RUN_NAME, cell)

    def cell_config(self, cell: Cell) -> dict[str, Any]:
        """The options of `kedro run --config` that run ``cell`` as this run would."""
        asked = self.run_params
        run: dict[str, Any] = {"node_names": ",".join(cell.nodes), "conf_source": self.conf_source}
        if asked.get("env"):
            run["env"] = asked["env"]
        if asked.get("pipeline_names"):
            run["pipelines"] = ",".join(asked["pipeline_names"])
        if asked.get("runtime_params"):
            run["params"] = asked["runtime_params"]
        if asked.get("load_versions"):
            run["load_versions"] = ",".join(f"{k}:{v}" for k, v in asked["load_versions"].items())
        return {"run": run}


DASK_HOOK = DaskRunHook()


@dataclass(frozen=True)
class Tracking:
    """Where a cell's MLflow run goes: under the driver's run, in its experiment."""

    uri: str
    experiment_id: str
    parent_run_id: str


@dataclass(frozen=True)
class CellTask:
    """What a worker needs to run a cell: the project, the cell's `kedro run` options file, where its output goes."""

    cell: str
    nodes: tuple[str, ...]
    project_path: str
    config: str
    log: str
    tracking: Tracking | None


@dataclass(frozen=True)
class CellOutcome:
    cell: str
    worker: str
    seconds: float
    mlflow_run_id: str | None
    node_seconds: dict[str, float] = field(default_factory=dict)  # this cell's and every cell's before it


class CellFailed(RuntimeError):
    """A cell's `kedro run` failed."""


def run_cell(task: CellTask, *upstream: CellOutcome) -> CellOutcome:
    """On a worker: the cell's `kedro run` in its own process, logging into the cell's MLflow run; its students
    train as tasks of their own, on the worker thread this task leaves once they start."""
    from distributed import Event, get_worker, secede

    worker = get_worker()
    key = worker.get_current_task()
    earlier = {node: seconds for outcome in upstream for node, seconds in outcome.node_seconds.items()}
    run_id = _cell_run(task.tracking, task.cell, worker.address) if task.tracking else None
    cluster = {SCHEDULER_ENV: worker.scheduler.address, CELL_KEY_ENV: str(key), CELL_LOG_ENV: task.log}
    env = cell_environment(os.environ, task.cell, earlier, run_id) | cluster
    log = Path(task.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("a") as output:  # a cell Dask runs again after its worker died keeps the first attempt's lines
        output.write(f"{ATTEMPT}{time.strftime('%Y-%m-%d %H:%M:%S')}: cell {task.cell} on worker {worker.address}\n")
        output.flush()
        command = [sys.executable, "-m", "mind_the_gap.runners.cell_process", task.config]
        students = Event(str(key))
        students.clear()  # set by an attempt of the cell on a worker that died
        process = subprocess.Popen(command, cwd=task.project_path, env=env, stdout=output, stderr=subprocess.STDOUT)
        while process.poll() is None:
            if students.wait(timeout=1):
                secede()  # no rejoin: the task only waits for its process from here
                process.wait()
        students.clear()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        if run_id is not None:  # kedro-mlflow marks it when Python fails, not when the process is killed
            MlflowClient(task.tracking.uri).set_terminated(run_id, "FAILED")
        raise CellFailed(
            f"cell {task.cell} failed on {worker.address} (exit status {process.returncode}): {_error(log)} (its log: "
            f"{log})"
        )
    share = seconds / len(task.nodes)
    return CellOutcome(task.cell, worker.address, seconds, run_id, earlier | {node: share for node in task.nodes})


def cell_environment(
    worker: Mapping[str, str], cell: str, earlier: dict[str, float], run_id: str | None
) -> dict[str, str]:
    """The environment of a cell's `kedro run`: the worker's, less what Dask sets for its workers' own memory, plus
    the cell's name, the seconds of the cells before it, and its MLflow run."""
    env = {name: value for name, value in worker.items() if name not in WORKER_MEMORY_SETTINGS}
    env |= {CELL_ENV: cell, EARLIER_SECONDS_ENV: json.dumps(earlier)}
    return env | ({"MLFLOW_RUN_ID": run_id} if run_id is not None else {})


def _cell_run(tracking: Tracking, cell: str, worker: str) -> str:
    """The cell's run under the driver's: the one an earlier attempt of the cell started (on a worker that died),
    else a new one."""
    client = MlflowClient(tracking.uri)
    query = f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{tracking.parent_run_id}' and tags.`{CELL_TAG}` = '{cell}'"
    earlier = client.search_runs([tracking.experiment_id], query, max_results=1)
    if earlier:
        client.set_tag(earlier[0].info.run_id, WORKER_TAG, worker)
        return earlier[0].info.run_id
    tags = {MLFLOW_PARENT_RUN_ID: tracking.parent_run_id, CELL_TAG: cell, WORKER_TAG: worker}
    return client.create_run(tracking.experiment_id, run_name=cell, tags=tags).info.run_id


def _error(log: Path) -> str:
    """The error the cell's last `kedro run` ended with: the text under Rich's traceback box (wrapped to the
    terminal's width), else the last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    attempts = [i for i, line in enumerate(lines) if line.startswith(ATTEMPT)]
    lines = lines[attempts[-1] + 1 :] if attempts else lines
    box_ends = [i for i, line in enumerate(lines) if line.startswith("╰")]
    if box_ends and box_ends[-1] < len(lines) - 1:
        return " ".join(lines[box_ends[-1] + 1 :])
    return lines[-1] if lines else "no output"


class CellsFailed(RuntimeError):
    """Some cells failed; the others finished."""


class DaskRunner(AbstractRunner):
    """Runs a pipeline's cells as Dask tasks; ``address`` (or Dask's configuration) names the scheduler, else a
    cluster of ``workers`` workers starts on this machine.

    Options through `kedro run --runner-params`, e.g. ``--runner-params workers=2``.
    """

    def __init__(self, is_async: bool = False, address: str | None = None, workers: int | None = None):
        super().__init__(is_async=is_async)
        self._address = address
        self._workers = int(workers) if workers is not None else None

    def _get_executor(self, max_workers: int) -> None:
        return None  # Dask schedules the cells

    def _run(self, pipeline, catalog, hook_manager=None, run_id: str | None = None) -> None:
        if DASK_HOOK.run_params is None:
            raise RuntimeError("DaskRunner needs mind_the_gap.runners.dask.DASK_HOOK in the project's settings.HOOKS")
        cells = grid_cells(pipeline)
        handoffs = memory_handoffs(pipeline, cells, catalog)
        if handoffs:
            raise ValueError(
                "DaskRunner runs each cell in its own process, so every dataset a cell hands another must be saved "
                f"by the catalog; these are kept in memory: {', '.join(handoffs)}"
            )
        project = Path(DASK_HOOK.run_params["project_path"])
        tasks = self._tasks(cells, project, run_id or time.strftime("%Y-%m-%dT%H.%M.%S"))
        with dask_client(self._address, self._workers) as client:
            dashboard = f" (dashboard: {client.dashboard_link})" if importlib.util.find_spec("bokeh") else ""
            address = client.scheduler.address
            self._logger.info("Dask: %d cells on the scheduler at %s%s", len(cells), address, dashboard)
            # The students' tasks report their start and end: counted here as in a sequential run, planned when
            # the first starts.
            students = functools.cache(lambda: progress.cell_progress({}))
            client.subscribe_topic(PROGRESS_TOPIC, lambda event: progress.report(students(), event[1]))
            try:
                self._schedule(client, cells, tasks)
            finally:
                client.unsubscribe_topic(PROGRESS_TOPIC)

    def _tasks(self, cells: list[Cell], project: Path, run_id: str) -> dict[str, CellTask]:
        folder = project / "logs" / "dask" / run_id  # the cells' options and output, beside the project
        folder.mkdir(parents=True, exist_ok=True)
        tracking = _driver_tracking(project)
        tasks = {}
        for cell in cells:
            config = folder / f"{cell.name}.yml"
            config.write_text(yaml.safe_dump(DASK_HOOK.cell_config(cell), sort_keys=False))
            tasks[cell.name] = CellTask(
                cell.name, cell.nodes, str(project), str(config), str(folder / f"{cell.name}.log"), tracking
            )
        return tasks

    def _schedule(self, client: Any, cells: list[Cell], tasks: dict[str, CellTask]) -> None:
        """Submit each cell once the cells it reads from have finished and a worker thread is free; report each as
        it ends; raise, naming them, if some failed.

        Dask places each submitted task at once, guessing how long the unknown ones take, so cells submitted ahead
        would queue behind a worker's long cell while another worker idles: the study's cells take minutes to hours.
        """
        from distributed import as_completed

        waiting = {cell.name: cell for cell in cells}  # in an order where each comes after its upstream cells
        futures: dict[str, Any] = {}
        cell_of: dict[str, str] = {}  # a future's key: its cell
        finished: set[str] = set()
        failed: dict[str, str] = {}
        skipped: list[str] = []
        running = as_completed()

        def submit_ready() -> None:
            threads = max(1, sum(client.nthreads().values()))  # workers may join or leave during the run
            for name, cell in list(waiting.items()):
                if any(u in failed or u in skipped for u in cell.upstream):
                    skipped.append(waiting.pop(name).name)
                elif set(cell.upstream) <= finished and running.count() < threads:
                    del waiting[name]
                    key = f"{name}-{Path(tasks[name].log).parent.name}"
                    upstream = [futures[u] for u in cell.upstream]
                    futures[name] = client.submit(run_cell, tasks[name], *upstream, key=key, pure=False)
                    cell_of[futures[name].key] = name
                    running.add(futures[name])

        submit_ready()
        for future in running:
            cell = cell_of[future.key]
            if future.status == "finished":
                outcome = future.result()
                finished.add(cell)
                self._logger.info(
                    "Cell %s finished on %s in %.1f s (%d of %d)",
                    cell,
                    outcome.worker,
                    outcome.seconds,
                    len(finished),
                    len(cells),
                )
            else:
                failed[cell] = str(future.exception()) or type(future.exception()).__name__
                self._logger.error("Cell %s failed: %s", cell, failed[cell])
            submit_ready()
        if failed:
            not_run = f"; not run, as they need a failed cell: {', '.join(sorted(skipped))}" if skipped else ""
            raise CellsFailed(f"{len(failed)} of {len(cells)} cells failed: {'; '.join(failed.values())}{not_run}")


def _driver_tracking(project: Path) -> Tracking | None:
    """The MLflow run kedro-mlflow started for this `kedro run`, as a worker elsewhere can reach it."""
    run = mlflow.active_run()
    if run is None:
        return None
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):  # relative to the project
        uri = f"sqlite:///{project / uri.removeprefix('sqlite:///')}"
    return Tracking(uri, run.info.experiment_id, run.info.run_id)


def worker_environments(workers: int | None, gpus: int, cores: int) -> list[dict[str, str]]:
    """The environment of each worker of a cluster on this machine: one per GPU, pinned to it; else ``workers``
    (by default up to 4) sharing the cores, each cell's PyTorch using its worker's share."""
    if gpus:
        return [{"CUDA_VISIBLE_DEVICES": str(i % gpus)} for i in range(workers or gpus)]
    count = workers or min(4, cores)
    threads = str(max(1, cores // count))
    return [{"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}] * count


@contextmanager
def dask_client(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A client of the scheduler at ``address`` or Dask's configured one; with none, of a cluster started here
    (dask-cuda's LocalCUDACluster where installed and GPUs are present) and stopped at the end."""
    import dask
    from distributed import Client

    address = address or dask.config.get("scheduler-address", None)
    if address:
        with Client(address) as client:
            yield client
        return
    environ = dict(os.environ)  # the nannies set their workers' variables (OMP_NUM_THREADS=1, ...) in this process
    try:
        with _local_cluster(workers) as cluster, Client(cluster) as client:
            yield client
    finally:
        os.environ.clear()
        os.environ.update(environ)


def _local_cluster(workers: int | None) -> Any:
    import dask
    import torch
    from distributed import Nanny, Scheduler, SpecCluster

    environ = dask.config.get("distributed.nanny.pre-spawn-environ")
    kept = {name: value for name, value in environ.items() if name not in WORKER_MEMORY_SETTINGS}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": kept}):  # read as the nannies start, here
        gpus = torch.cuda.device_count()
        if gpus:
            try:
                from dask_cuda import LocalCUDACluster
            except ImportError:
                pass
            else:
                return LocalCUDACluster(n_workers=workers or gpus, threads_per_worker=1, resources={GPU: 1})
        local = {"host": "127.0.0.1"}
        specs = {
            f"worker-{i}": {
                "cls": Nanny,
                "options": {**local, "nthreads": 1, "env": env, **({"resources": {GPU: 1}} if gpus else {})},
            }
            for i, env in enumerate(worker_environments(workers, gpus, os.cpu_count() or 1))
        }
        return SpecCluster(specs, scheduler={"cls": Scheduler, "options": {**local, "dashboard_address": ":0"}})
