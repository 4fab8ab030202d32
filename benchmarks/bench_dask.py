"""The Dask runner: a grid's wall time on this machine with 1 and 2 workers, and how the paper's layer-swap grid
would divide over N GPUs.

``measure`` runs one pipeline (by default the default `layer_swap` grid) in a scratch copy of the project whose
upstream outputs (the real data, the synthetic set, the baseline students) come from ``--data-from``, a project
where the pipelines before it have run. Each configuration (the Dask runner with 1 worker, whose cells' PyTorch
uses every core, and with 2 single-threaded workers, each with half) starts from that same student store, so each
trains the same students from scratch.

``estimate`` list-schedules the paper's layer-swap grid (`conf/paper`: every cut of ResNet-50's 18 units, 3 seeds,
four cells, one Dask task each) over 1 to 16 GPUs, each student costing ``--student-hours`` (about an hour on one
GPU at the paper's scale, 100 epochs of ImageNet-100).

    python benchmarks/bench_dask.py measure --data-from /tmp/study [--pipeline layer_swap] [--workers 1 2]
        [--keep /tmp/dask-bench]
    python benchmarks/bench_dask.py estimate [--student-hours 1.0]
"""

from __future__ import annotations

import argparse
import heapq
import shutil
import tempfile
from pathlib import Path

from bench_study import kedro_run, scratch_project

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


def makespan(cells: list[float], gpus: int) -> float:
    """Hours until the last of independent cells (their hours on one GPU) ends, longest first on the first free
    GPU: the Dask runner gives each cell one worker."""
    free = [0.0] * gpus
    for hours in sorted(cells, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + hours)
    return max(free)


def estimate(student_hours: float, units: int = 18, seeds: int = 3, cells: int = 4) -> None:
    students = (units - 1) * seeds  # every cut, every seed, in each cell
    grid = [students * student_hours] * cells
    total = sum(grid)
    print(
        f"Paper layer-swap grid: {cells} cells of {students} students, {total:,.0f} GPU-hours at "
        f"{student_hours:g} h a student; cells per GPU-hour: {cells / total:.4f}\n"
    )
    print("| GPUs | wall, hours | GPUs busy |\n| --- | --- | --- |")
    for gpus in (1, 2, 4, 8, 16):
        hours = makespan(grid, gpus)
        print(f"| {gpus} | {hours:,.0f} | {total / (hours * gpus):.0%} |")
    print(
        f"\nOne task per cell: beyond {cells} GPUs the grid runs no faster (a cell takes {students * student_hours:g}"
        f" h); using more would take a task per student."
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
    estimating.add_argument("--student-hours", type=float, default=1.0)
    arguments = parser.parse_args()
    if arguments.command == "measure":
        measure(arguments.data_from.resolve(), arguments.pipeline, arguments.workers, arguments.keep)
    else:
        estimate(arguments.student_hours)


if __name__ == "__main__":
    main()
