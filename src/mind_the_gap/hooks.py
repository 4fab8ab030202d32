"""Project hooks: a run whose inputs other pipelines write says, in one line, which pipelines to run first; the
report's inputs alone are optional, and arrive as None when their pipeline has not run; the wall time of each
pipeline of the run is written to the catalog's ``run_times`` dataset, which the report reads; the run's students
are counted together, so that each student's log lines say how many are done and about how long is left.

The registered pipelines are Kedro's (``kedro.framework.project.pipelines``), looked up when a run starts."""

from __future__ import annotations

import json
import logging
import os
import time
from functools import partial
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.framework.project import pipelines
from kedro.io import DataCatalog
from kedro.pipeline import Node, Pipeline

from mind_the_gap import memory
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import progress
from mind_the_gap.experiments.study import Study
from mind_the_gap.files import write_atomically
from mind_the_gap.runners.dask import EARLIER_SECONDS_ENV
from mind_the_gap.runners.estimate import StudyShape, Throughput, planned_students, study_work
from mind_the_gap.runners.grid import grid_cells
from mind_the_gap.training.config import TrainConfig

log = logging.getLogger(__name__)

# A file named here gets one JSON line per node run: the node's peak of live image and feature tensors, the largest
# image set it read, and its peak resident memory (see MemoryHook).
MEMORY_LOG_ENV = "MIND_THE_GAP_MEMORY_LOG"

# The namespace of the report's nodes: their inputs alone may be missing.
REPORTING = "reporting"


class MissingInputsError(RuntimeError):
    """A pipeline's input is not on disk yet: another pipeline writes it."""


def _missing(pipeline: Pipeline, catalog: DataCatalog) -> set[str]:
    return {
        name
        for name in pipeline.inputs()
        if not name.startswith("params:") and name != "parameters" and not catalog.exists(name)
    }


def missing_inputs_message(selected: Pipeline, catalog: DataCatalog, registered: dict[str, Pipeline]) -> str | None:
    """None when every input of ``selected`` exists; else which are missing, which pipelines write them, and the
    pipelines to run first (those writers and, in turn, the writers of their own missing inputs)."""
    missing = _missing(selected, catalog)
    if not missing:
        return None
    named = {p: pipe for p, pipe in registered.items() if p != "__default__"}
    writers = {name: [p for p, pipe in named.items() if name in pipe.all_outputs()] for name in sorted(missing)}
    needed: set[str] = set()
    frontier = set(missing)
    while frontier:
        name = frontier.pop()
        for p, pipe in named.items():
            if name in pipe.all_outputs() and p not in needed:
                needed.add(p)
                frontier |= _missing(pipe, catalog)
    # In dependency order: a pipeline after those whose outputs it reads.
    reads = {p: {q for q in needed if q != p and named[q].all_outputs() & named[p].inputs()} for p in sorted(needed)}
    first = list(TopologicalSorter(reads).static_order())
    described = ", ".join(f"{name} (written by {' or '.join(ps) or 'no pipeline'})" for name, ps in writers.items())
    if not first:
        return f"missing input(s) {described}"
    return f"missing input(s) {described}: run `kedro run --pipelines {','.join(first)}` first, or `kedro run`"


def optional_missing(pipeline: Pipeline, catalog: DataCatalog) -> set[str]:
    """The missing inputs of ``pipeline`` that only the report reads: it names their pipelines as not run."""
    return {
        name
        for name in _missing(pipeline, catalog)
        if all(node.namespace == REPORTING for node in pipeline.only_nodes_with_inputs(name).nodes)
    }


class MissingInputsHook:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        for name in optional_missing(pipeline, catalog):
            catalog[name] = None  # a MemoryDataset holding None: "not run" in the report
        message = missing_inputs_message(pipeline, catalog, dict(pipelines))
        if message is None:
            return
        # Raised before the run starts, so no error hook ends the MLflow run kedro-mlflow has just opened.
        if mlflow.active_run() is not None:
            mlflow.end_run(status="FAILED")
        raise MissingInputsError(message)


class RunTimesHook:
    """Wall seconds of each pipeline's nodes in this run, written (atomically, as JSON) to the file of the catalog's
    ``dataset`` when the run starts and after each node, in a run that has a node reading it: the report. Under the
    Dask runner each cell is a `kedro run` of its own, handed the seconds of the cells before it; under
    ParallelRunner, whose node hooks run in its worker processes, each worker knows its own nodes' times only. A
    project without the dataset in its catalog gets no table."""

    def __init__(self, dataset: str = "run_times") -> None:
        self._dataset = dataset
        self._path: Path | None = None  # the dataset's file, from the catalog's configuration
        self._writes = False  # whether this run has a node that reads the table
        self._owner: dict[str, str] = {}
        self._started: dict[str, float] = {}
        self._seconds: dict[str, float] = {}

    @hook_impl
    def after_catalog_created(self, conf_catalog: dict[str, Any]) -> None:
        filepath = conf_catalog.get(self._dataset, {}).get("filepath")
        self._path = Path(filepath) if filepath else None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        registered = {name: pipe for name, pipe in pipelines.items() if name != "__default__"}
        self._owner = {node.name: name for name, pipe in registered.items() for node in pipe.nodes}
        self._started, self._seconds = {}, json.loads(os.environ.get(EARLIER_SECONDS_ENV, "{}"))
        self._writes = self._path is not None and any(self._dataset in node.inputs for node in pipeline.nodes)
        self._write()  # before the hook that sets a missing report input to None looks (settings.HOOKS' order)

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        self._seconds[node.name] = time.perf_counter() - self._started.pop(node.name, time.perf_counter())
        self._write()

    def _write(self) -> None:
        if self._writes:
            table = json.dumps(self.table(), indent=2)
            write_atomically(self._path, lambda temp: temp.write_text(table))

    def table(self) -> list[dict[str, Any]]:
        """One row per pipeline with nodes finished so far in this run, in the order they first ran."""
        rows: dict[str, dict[str, Any]] = {}
        for node, seconds in self._seconds.items():
            row = rows.setdefault(self._owner.get(node, "other"), {"nodes": 0, "seconds": 0.0})
            row["nodes"] += 1
            row["seconds"] += seconds
        return [{"pipeline": name, **row} for name, row in rows.items()]


class StudentProgressHook:
    """Counts the run's students together (``progress``), so that each student's start and end says how many of the
    run's are done and about how long the rest take: those of the run's cells, as ``planned_run`` gives them."""

    @hook_impl
    def before_pipeline_run(self, pipeline: Pipeline, catalog: DataCatalog) -> None:
        progress.plan_run(partial(planned_run, pipeline, catalog))

    @hook_impl
    def after_pipeline_run(self) -> None:
        progress.end_run()

    @hook_impl
    def on_pipeline_error(self) -> None:
        progress.end_run()


def planned_run(pipeline: Pipeline, catalog: DataCatalog) -> dict[str, int] | None:
    """Every student of the cells of ``pipeline`` by name, with its planned optimizer steps, as the experiments'
    plans give them with the run's parameters on stand-ins of its real sets' sizes (``estimate.study_work``); None,
    with a warning, where they cannot be planned."""
    try:
        parameters = catalog["parameters"].load()
        shape = StudyShape.of(catalog["real_data_summary"].load())
        work = study_work(parameters, shape, Throughput.read(None))
    except Exception as error:  # only the count needs it: a plan the estimate no longer mirrors must not stop a run
        log.warning("each cell counts its own students: the run's students could not be planned (%r)", error)
        return None
    students = planned_students(work, TrainConfig.model_validate(parameters["training"]))
    cells = [cell.name for cell in grid_cells(pipeline) if cell.name in students]
    return {name: steps for cell in cells for name, steps in students[cell].items()}


class MemoryHook:
    """Where ``MIND_THE_GAP_MEMORY_LOG`` names a file, each node's memory, appended to it as one JSON line: the peak
    bytes of live image and feature tensors while its inputs load and it runs (``memory``: what the library tracks,
    the sets handed to it in memory included), the largest image set it read, and its peak resident set size
    (Linux: the high-water mark reset through ``/proc/self/clear_refs`` when the node's inputs start loading).
    Nodes must run one at a time in the process, as under Kedro's sequential runner or a Dask cell."""

    def __init__(self) -> None:
        self._node: str | None = None

    @hook_impl
    def before_dataset_loaded(self, node: Node) -> None:
        self._start(node)

    @hook_impl
    def before_node_run(self, node: Node, inputs: dict[str, Any]) -> None:
        self._start(node)
        for value in inputs.values():  # sets handed over in memory count as read by this node
            for images in _image_sets(value):
                memory.track(images.images, read=True)

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        path, self._node = os.environ.get(MEMORY_LOG_ENV), None
        if not path:
            return
        peak = memory.window_peak()
        row = {"node": node.name, "peak_bytes": peak.peak_bytes, "largest_read_bytes": peak.largest_read_bytes}
        with open(path, "a") as log:
            log.write(json.dumps(row | {"peak_rss_bytes": _peak_resident_bytes()}) + "\n")

    def _start(self, node: Node) -> None:
        if self._node != node.name and os.environ.get(MEMORY_LOG_ENV):
            self._node = node.name
            memory.start_window()
            _reset_peak_resident()


def _image_sets(value: Any) -> list[ImageSet]:
    if isinstance(value, ImageSet):
        return [value]
    if isinstance(value, Study):
        return [value.val, value.test]
    return []


def _reset_peak_resident() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: the peak is the process's so far
        pass


def _peak_resident_bytes() -> int | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    kib = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return None if kib is None else int(kib) * 1024
