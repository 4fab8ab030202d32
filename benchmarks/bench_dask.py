"""The Dask runner: a grid's wall time on this machine with 1 and 2 workers, and how the paper's layer-swap grid
would divide over N GPUs.

``measure`` runs one pipeline (by default the default `layer_swap` grid) in a scratch copy of the project whose
upstream outputs (the real data, the synthetic set, the baseline students) come from ``--data-from``, a project
where the pipelines before it have run. Each configuration (the Dask runner with 1 worker, whose cells' PyTorch
uses every core, and with 2 single-threaded workers, each with half) starts from that same student store, so each
trains the same students from scratch.

``estimate`` lays the whole study of an environment (by default `conf/paper`) over 1 to 16 GPUs on the fake clock
of the executor's own scheduling (``mind_the_gap.experiments.executor.simulate``): every student the experiments'
plans give, every generated set, and the waits for the cells each cell reads from; once with a task per student
(the Dask runner now) and once with a task per cell (before). Durations come from ``bench_gpu.py``'s JSON where
it exists, else from the assumptions it names (``mind_the_gap.runners.estimate``).

    python benchmarks/bench_dask.py measure --data-from /tmp/study [--pipeline layer_swap] [--workers 1 2]
        [--keep /tmp/dask-bench]
    python benchmarks/bench_dask.py estimate [--throughput benchmarks/results/gpu_throughput.json] [--env paper]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench_study import kedro_run, scratch_project

from mind_the_gap.experiments.executor import simulate
from mind_the_gap.runners.estimate import PAPER_SHAPE, Throughput, study_tasks

ROOT = Path(__file__).resolve().parents[1]

DASK = ["--runner", "mind_the_gap.runners.DaskRunner", "--runner-params"]
STORE = Path("data/06_models/students")


def measure(data_from: Path, pipeline: str, workers: list[int], keep: Path | None) -> None:
    folder = keep or Path(tempfile.mkdtemp(prefix="bench-dask-"))
    scratch_project(folder)
    for layer in sorted((data_from / "data").glob("0[2-8]_*")):
        shutil.copytree(layer, folder / "data" / layer.name, dirs_exist_ok=True)
    upstream = {path.name for path in (folder / STORE).iterdir()}
    seconds = {}
    for count in workers:
        name = f"Dask, {count} worker{'s' if count > 1 else ''}"
        for path in (folder / STORE).iterdir():  # back to the upstream students: every configuration trains afresh
            if path.name not in upstream:
                path.unlink()
        seconds[name] = kedro_run(folder, ["--pipeline", pipeline, *DASK, f"workers={count}"])
        print(f"{name}: {seconds[name]:.0f} s", flush=True)
    first = next(iter(seconds))
    print(f"\n| `kedro run --pipeline {pipeline}` | wall, s | speed-up over {first} |\n| --- | --- | --- |")
    for name, value in seconds.items():
        print(f"| {name} | {value:,.0f} | {seconds[first] / value:.2f}x |")
    print(f"\nScratch project: {folder} (kedro.log, logs/dask/)")


def estimate(throughput_json: Path, env: str) -> None:
    throughput = Throughput.read(throughput_json)
    sources = throughput.sources
    print(
        f"Throughput per GPU: ResNet-50 training {throughput.training:,.0f} images/s ({sources['training']}); "
        f"Stable Diffusion {throughput.generation:g} images/s ({sources['generation']}); img2img: "
        f"{sources['img2img']}; unCLIP: {sources['unclip']}. Sets the size of ImageNet-100's: "
        f"{PAPER_SHAPE.classes} classes of {PAPER_SHAPE.train_per_class} training images.\n"
    )
    per_student = study_tasks(ROOT / "conf", env, throughput)
    per_cell = study_tasks(ROOT / "conf", env, throughput, per_student=False)
    generating = [task for task in per_student if "/generate " in task.name]
    hours = sum(task.seconds for task in per_student) / 3600
    generation_hours = sum(task.seconds for task in generating) / 3600
    print(
        f"`{env}`: {len(per_student) - len(generating)} students and {len(generating)} generated sets in "
        f"{len(per_cell)} cells: {hours:,.0f} GPU-hours ({hours - generation_hours:,.0f} training, "
        f"{generation_hours:,.0f} generating)\n"
    )
    print("| GPUs | per-student tasks: wall, hours | GPUs busy | per-cell tasks: wall, hours | GPUs busy |")
    print("| --- | --- | --- | --- | --- |")
    for gpus in (1, 2, 4, 8, 16):
        students, cells = simulate(per_student, gpus), simulate(per_cell, gpus)
        print(
            f"| {gpus} | {students.makespan / 3600:,.0f} | {students.utilization:.0%} | {cells.makespan / 3600:,.0f} | "
            f"{cells.utilization:.0%} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    measuring = commands.add_parser("measure")
    measuring.add_argument("--data-from", type=Path, required=True, help="a project where the upstream pipelines ran")
    measuring.add_argument("--pipeline", default="layer_swap")
    measuring.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="one run per worker count")
    measuring.add_argument("--keep", type=Path, help="the scratch folder (default: a new temporary one)")
    estimating = commands.add_parser("estimate")
    estimating.add_argument(
        "--throughput",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "gpu_throughput.json",
        help="bench_gpu.py's",
    )
    estimating.add_argument("--env", default="paper", help="the configuration environment whose study is laid out")
    arguments = parser.parse_args()
    if arguments.command == "measure":
        measure(arguments.data_from.resolve(), arguments.pipeline, arguments.workers, arguments.keep)
    else:
        estimate(arguments.throughput, arguments.env)


if __name__ == "__main__":
    main()
