"""The order students and generations take on the GPUs, on a fake clock; the per-student executor on an in-process
Dask cluster; and the paper study laid out on 8 GPUs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, Event, LocalCluster

from mind_the_gap.experiments.executor import (
    CELL_KEY_ENV,
    GPU,
    SCHEDULER_ENV,
    Schedule,
    Task,
    _slots,
    map_on_cluster,
    simulate,
)
from mind_the_gap.runners.estimate import ASSUMED, Throughput, environment_parameters, study_tasks

REPO = Path(__file__).resolve().parents[2]


def test_tasks_others_wait_on_go_first_then_the_longest():
    schedule = Schedule([Task("short", 1), Task("long", 5), Task("parent", 2), Task("child", 4, needs=("parent",))])
    assert schedule.next().name == "parent"  # its chain (2 + 4 s) is the longest
    assert schedule.next().name == "long"
    assert schedule.next().name == "short"
    assert schedule.next() is None  # the child waits for its parent
    schedule.finish("parent")
    assert schedule.next().name == "child"


def test_a_schedule_names_what_it_cannot_order():
    with pytest.raises(ValueError, match="not scheduled: ghost"):
        Schedule([Task("a", 1, needs=("ghost",))])
    with pytest.raises(ValueError, match="cycle"):
        Schedule([Task("a", 1, needs=("b",)), Task("b", 1, needs=("a",))])


def test_the_fake_clock_gives_each_free_gpu_the_next_ready_task():
    run = simulate([Task("a", 4), Task("b", 3), Task("c", 3), Task("d", 2)], gpus=2)
    assert run.makespan == 6
    assert run.utilization == 1.0
    assert run.starts == {"a": (0.0, 0), "b": (0.0, 1), "c": (3.0, 1), "d": (4.0, 0)}
    waiting = simulate([Task("parent", 2), Task("child", 1, needs=("parent",)), Task("other", 1)], gpus=2)
    assert waiting.starts["child"][0] == 2.0
    assert waiting.utilization == 4 / (2 * 3)


def test_students_go_to_gpus_where_workers_declare_them_else_to_threads():
    gpu_workers = [{"nthreads": 2, "resources": {GPU: 1}}, {"nthreads": 2, "resources": {GPU: 1}}]
    assert _slots(gpu_workers) == (2, {GPU: 1})
    assert _slots([{"nthreads": 1, "resources": {}}, {"nthreads": 1}]) == (2, None)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as local:
        yield local.scheduler_address


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ArithmeticError("three")
    return x


def test_on_the_cluster_each_item_is_a_task_and_the_cell_signals_it_waits(cluster: str, monkeypatch):
    monkeypatch.setenv(SCHEDULER_ENV, cluster)
    monkeypatch.setenv(CELL_KEY_ENV, "cell-run1")
    items = [1, 2, 3, 4, 5]
    assert map_on_cluster(square, items, [f"job{i}" for i in items], cost=float) == [1, 4, 9, 16, 25]
    with Client(cluster) as client:
        assert Event("cell-run1", client).is_set()  # the runner's cell task may secede
    failed = []
    with pytest.raises(ArithmeticError, match="three"):
        map_on_cluster(
            fail_on_three, items, [f"job{i}" for i in items], cost=float, on_failure=lambda: failed.append(1)
        )
    assert failed == [1]


def test_throughput_comes_from_the_benchmark_json_where_present(tmp_path: Path):
    assumed = Throughput.read(tmp_path / "absent.json")
    assert assumed.training == ASSUMED["resnet50_224"]
    assert assumed.sources["training"] == "assumed"
    measured = tmp_path / "gpu_throughput.json"
    measured.write_text(
        json.dumps(
            {
                "resnet50_224": {"eager_images_per_second": 2000.0, "compiled_images_per_second": 2500.0},
                "stable_diffusion_v1_4_512": {"images_per_second": 6.0},
            }
        )
    )
    throughput = Throughput.read(measured)
    assert throughput.training == 2500.0
    assert throughput.generation == 6.0
    assert throughput.sources["generation"].startswith("measured")
    assert throughput.sources["unclip"].startswith("text-to-image")


def test_the_paper_study_keeps_8_gpus_busy_students_generations_and_waits_included():
    throughput = Throughput.read(REPO / "benchmarks" / "results" / "gpu_throughput.json")
    tasks = study_tasks(REPO / "conf", "paper", throughput)
    names = {task.name for task in tasks}
    # The students the plans give with conf/paper's parameters: every fine-tuning arm, fraction and seed.
    efficiency = environment_parameters(REPO / "conf", "paper")["data_efficiency"]
    finetune = [name for name in names if name.startswith("data_efficiency.finetune/")]
    seeds = len(efficiency["seeds"]) + len(efficiency["convergence_check"]["seeds"])  # the check's seeds again
    assert len(finetune) == len(efficiency["fractions"]) * len(efficiency["last_units"]) * seeds
    # Generations come first, and students wait for their images and their parents' cells.
    by_name = {task.name: task for task in tasks}
    assert "generate_synthetic_images/generate synthetic" in by_name
    assert all(
        "generate_synthetic_images/generate synthetic" in by_name[n].needs for n in names if "baselines.synth" in n
    )
    assert all(any(need.startswith("baselines.synthetic/") for need in by_name[n].needs) for n in finetune)
    # A lever's students wait for their teachers' cell; the headline swap from each waits for the lever's students.
    lever = environment_parameters(REPO / "conf", "paper")["levers"]
    distilled = sorted(n for n in names if n.startswith("levers.distillation/"))
    assert len(distilled) == 2 * len(lever["seeds"]) * len(lever["distillation"]["temperatures"])
    students = [n for n in distilled if n.endswith(f"/synthetic/seed{lever['seeds'][0]}")]
    assert students
    assert all(any(need.startswith("baselines.real/") for need in by_name[n].needs) for n in students)
    swaps = [n for n in distilled if "/last units real/" in n]
    assert all(set(students) <= set(by_name[n].needs) for n in swaps)
    # Each arrangement's stitched students, every cut and seed, wait for both baselines' cells.
    stitch = environment_parameters(REPO / "conf", "paper")["stitching"]
    for arrangement in ("real_to_real", "real_to_synthetic", "synthetic_to_real", "synthetic_to_synthetic"):
        stitched = [n for n in names if n.startswith(f"stitching.{arrangement}/")]
        assert len(stitched) == len(stitch["cuts"]) * len(stitch["seeds"]), arrangement
        for name in stitched:
            assert {need.split("/")[0] for need in by_name[name].needs} >= {"baselines.real", "baselines.synthetic"}
    run = simulate(tasks, gpus=8)
    assert run.utilization >= 0.85
    # One task a cell, as before, leaves GPUs idle.
    assert simulate(study_tasks(REPO / "conf", "paper", throughput, per_student=False), gpus=8).utilization < 0.85
