"""Project hooks: a run whose inputs other pipelines write says, in one line, which pipelines to run first; the
report's inputs alone are optional, and arrive as None when their pipeline has not run."""

from __future__ import annotations

from graphlib import TopologicalSorter
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline

from mind_the_gap.pipeline_registry import register_pipelines
from mind_the_gap.pipelines.reporting.pipeline import OPTIONAL_INPUTS


class MissingInputsError(RuntimeError):
    """A pipeline's input is not on disk yet: another pipeline writes it."""


def _missing(pipeline: Pipeline, catalog: DataCatalog) -> set[str]:
    return {name for name in pipeline.inputs() if not name.startswith("params:") and name != "parameters"
            and not catalog.exists(name)}  # fmt: skip


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
    report = {node.name for node in pipeline.nodes if node.namespace == "reporting"}
    return {name for name in _missing(pipeline, catalog) & set(OPTIONAL_INPUTS)
            if all(node.name in report for node in pipeline.only_nodes_with_inputs(name).nodes)}  # fmt: skip


class MissingInputsHook:
    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog) -> None:
        for name in optional_missing(pipeline, catalog):
            catalog[name] = None  # a MemoryDataset holding None: "not run" in the report
        message = missing_inputs_message(pipeline, catalog, register_pipelines())
        if message is None:
            return
        # Raised before the run starts, so no error hook ends the MLflow run kedro-mlflow has just opened.
        if mlflow.active_run() is not None:
            mlflow.end_run(status="FAILED")
        raise MissingInputsError(message)
