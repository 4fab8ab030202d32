"""A pipeline cut into cells for the Dask runner: what runs together, in which order, and what must be saved."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kedro.framework.project import configure_project, pipelines
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro_datasets.pandas import CSVDataset

from mind_the_gap.hooks import RunTimesHook
from mind_the_gap.runners.dask import (
    CELL_ENV,
    EARLIER_SECONDS_ENV,
    DaskRunHook,
    _error,
    cell_environment,
    dask_client,
    worker_environments,
)
from mind_the_gap.runners.grid import PER_CELL, Cell, grid_cells, memory_handoffs


def identity(x):
    return x


def pair(x, y):
    return x


def test_nodes_of_a_namespace_are_one_cell_after_the_cells_they_read():
    pipeline = Pipeline(
        [
            Node(identity, "raw", "clean", name="prepare"),
            Node(identity, "clean", "a_model", name="train", namespace="grid.a"),
            Node(identity, "a_model", "a_score", name="score", namespace="grid.a"),
            Node(identity, "clean", "b_score", name="train", namespace="grid.b"),
            Node(pair, ["a_score", "b_score"], "summary", name="summarize", namespace="grid"),
        ]
    )
    cells = grid_cells(pipeline)
    assert cells[0].name == "prepare"
    assert cells[-1] == Cell("grid", ("grid.summarize",), ("grid.a", "grid.b"))
    by_name = {c.name: c for c in cells}
    assert by_name["grid.a"] == Cell("grid.a", ("grid.a.train", "grid.a.score"), ("prepare",))
    assert by_name["grid.b"].upstream == ("prepare",)


@pytest.mark.filterwarnings("ignore:Namespace .stats. is interrupted")
def test_a_namespace_that_would_wait_on_itself_through_another_cell_is_split_into_its_nodes():
    # stats.measure feeds cell "fit", which feeds stats.compare: as one cell, "stats" would wait on "fit" and back.
    pipeline = Pipeline(
        [
            Node(identity, "data", "statistics", name="measure", namespace="stats"),
            Node(identity, "statistics", "model", name="fit"),
            Node(identity, "model", "comparison", name="compare", namespace="stats"),
        ]
    )
    cells = grid_cells(pipeline)
    assert [(c.name, c.upstream) for c in cells] == [
        ("stats.measure", ()),
        ("fit", ("stats.measure",)),
        ("stats.compare", ("fit",)),
    ]


def test_every_registered_pipeline_cuts_into_cells_in_dependency_order():
    configure_project("mind_the_gap")
    for name, pipeline in pipelines.items():
        cells = grid_cells(pipeline)
        seen: set[str] = set()
        for cell in cells:
            assert set(cell.upstream) <= seen, (name, cell)
            seen.add(cell.name)
        builders = {n.name for n in pipeline.nodes if PER_CELL in n.tags}
        scheduled = [n for c in cells for n in c.nodes if n not in builders]
        assert sorted(scheduled) == sorted(n.name for n in pipeline.nodes if n.name not in builders)
    layer_swap = {c.name for c in grid_cells(pipelines["layer_swap"])}
    assert layer_swap == {
        "layer_swap",
        "layer_swap.prefix_from_real",
        "layer_swap.prefix_from_synthetic",
        "layer_swap.suffix_from_real",
        "layer_swap.suffix_from_synthetic",
        "layer_swap.prefix_real_control",
        "layer_swap.prefix_synthetic_control",
        "layer_swap.suffix_real_control",
        "layer_swap.suffix_synthetic_control",
    }


def test_a_dataset_one_cell_hands_another_in_memory_is_named(tmp_path: Path):
    pipeline = Pipeline(
        [
            Node(identity, "raw", "kept_in_memory", name="first", namespace="a"),
            Node(identity, "raw", "saved", name="second", namespace="a"),
            Node(pair, ["kept_in_memory", "saved"], "out", name="third", namespace="b"),
            Node(identity, "raw", "inside", name="fourth", namespace="b"),
            Node(identity, "inside", "out2", name="fifth", namespace="b"),
        ]
    )
    catalog = DataCatalog({"saved": CSVDataset(filepath=str(tmp_path / "a.csv")), "kept_in_memory": MemoryDataset()})
    assert memory_handoffs(pipeline, grid_cells(pipeline), catalog) == ["kept_in_memory"]


def test_a_per_cell_builder_runs_in_each_cell_that_reads_it_and_hands_nothing_over(tmp_path: Path):
    pipeline = Pipeline(
        [
            Node(identity, "raw", "saved", name="prepare"),
            Node(identity, "saved", "bundle", name="build", tags=[PER_CELL]),
            Node(pair, ["bundle", "saved"], "a_out", name="train", namespace="a"),
            Node(pair, ["bundle", "a_out"], "b_out", name="train", namespace="b"),
            Node(identity, "raw", "c_out", name="alone", namespace="c"),
        ]
    )
    cells = {c.name: c for c in grid_cells(pipeline)}
    assert set(cells) == {"prepare", "a", "b", "c"}
    assert cells["a"].nodes == ("build", "a.train")
    assert cells["b"].nodes == ("build", "b.train")
    assert cells["c"].nodes == ("c.alone",)
    assert cells["a"].upstream == ("prepare",)  # it waits for what the builder reads
    assert cells["b"].upstream == ("a", "prepare")
    catalog = DataCatalog({"saved": CSVDataset(filepath=str(tmp_path / "a.csv")), "bundle": MemoryDataset()})
    # The bundle is built in each cell that reads it; what one cell hands another is still named.
    assert memory_handoffs(pipeline, list(cells.values()), catalog) == ["a_out"]


def test_local_workers_share_the_cores_or_take_one_gpu_each():
    assert worker_environments(None, gpus=0, cores=2) == [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}] * 2
    assert worker_environments(None, gpus=0, cores=16) == [{"OMP_NUM_THREADS": "4", "MKL_NUM_THREADS": "4"}] * 4
    assert worker_environments(1, gpus=0, cores=16)[0]["OMP_NUM_THREADS"] == "16"
    assert [e["CUDA_VISIBLE_DEVICES"] for e in worker_environments(None, gpus=3, cores=16)] == ["0", "1", "2"]


def test_a_cell_runs_with_the_environment_parameters_and_pipelines_of_the_run():
    hook = DaskRunHook()
    hook.conf_source = "/project/conf"
    hook.before_pipeline_run(
        {
            "env": "smoke",
            "pipeline_names": ["layer_swap"],
            "load_versions": {},
            "runtime_params": {"training": {"epochs": 3}},
        }
    )
    node = "layer_swap.prefix_from_real.train_students"
    config = hook.cell_config(Cell("layer_swap.prefix_from_real", (node,), ()))
    assert config == {
        "run": {
            "node_names": node,
            "conf_source": "/project/conf",
            "env": "smoke",
            "pipelines": "layer_swap",
            "params": {"training": {"epochs": 3}},
        }
    }


@pytest.mark.parametrize(
    "output, error",
    [
        (
            "INFO start\n╭── Traceback ──╮\n│ frame │\n╰───────────────╯\nValueError: the baseline\nstudents missing\n",
            "ValueError: the baseline students missing",
        ),
        ("Traceback (most recent call last):\n  File x\nKeyError: 'seed'\n", "KeyError: 'seed'"),
        (
            "--- 12:00: cell a on worker 1\nValueError: first\n--- 12:01: cell a on worker 2\nOSError: disk full\n",
            "OSError: disk full",
        ),
        ("", "no output"),
    ],
)
def test_a_failed_cell_is_reported_with_the_error_it_ended_on(tmp_path: Path, output: str, error: str):
    log = tmp_path / "cell.log"
    log.write_text(output)
    assert _error(log) == error


def test_a_cells_run_times_include_those_of_the_cells_before_it(monkeypatch):
    earlier = {"baselines.real.train_students": 30.0, "prepare_real_data": 2.0}
    monkeypatch.setenv(EARLIER_SECONDS_ENV, json.dumps(earlier))
    hook = RunTimesHook()
    configure_project("mind_the_gap")
    hook.before_pipeline_run({}, pipelines["reporting"], DataCatalog())
    assert hook.table() == [
        {"pipeline": "baselines", "nodes": 1, "seconds": 30.0},
        {"pipeline": "data_processing", "nodes": 1, "seconds": 2.0},
    ]


def test_a_cell_runs_without_the_memory_setting_dask_gives_its_workers():
    worker = {"PATH": "/usr/bin", "OMP_NUM_THREADS": "1", "MALLOC_TRIM_THRESHOLD_": "65536"}
    env = cell_environment(worker, "layer_swap.prefix_from_real", {"prepare_real_data": 2.0}, run_id="abc")
    assert "MALLOC_TRIM_THRESHOLD_" not in env
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["PATH"] == "/usr/bin"
    assert env[CELL_ENV] == "layer_swap.prefix_from_real"
    assert env["MLFLOW_RUN_ID"] == "abc"
    assert json.loads(env[EARLIER_SECONDS_ENV]) == {"prepare_real_data": 2.0}
    assert "MLFLOW_RUN_ID" not in cell_environment(worker, "a", {}, run_id=None)


def test_the_workers_of_a_cluster_the_runner_starts_keep_glibcs_adaptive_memory_settings():
    # Students train in the workers' own processes: without Dask's MALLOC_TRIM_THRESHOLD_ (1.7x faster on the CPU).
    with dask_client(workers=1) as client:
        assert set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
