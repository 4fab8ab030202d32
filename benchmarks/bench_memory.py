"""Each node's memory at the paper's scale, extrapolated from `kedro run --env paper` at two small sizes.

Runs the paper-shaped environment of the test suite (`conf/paper` with only its sizes changed: an ImageNet-layout
folder of 4 of the paper's classes at 96 px, tiny random-weight Stable Diffusion and unCLIP, ResNet-50 students; see
tests/pipelines/paper_shaped.py) twice, every pipeline, at ``--sizes`` training images a class (the generated sets
scaled alike), with ``MIND_THE_GAP_MEMORY_LOG`` set, so that every node reports the peak bytes of the image and
feature tensors it held, the largest image set it read and its peak resident memory (mind_the_gap.hooks.MemoryHook).

The extrapolation, per node: the tracked peak is fitted as a line in the largest set read (through the two runs) and
read off at that set's size at ImageNet-100 scale: the real training pool, 1,300 images a class less 5 % for
validation, 100 classes, at 224 px (``--paper-set-gib``, 17.3 GiB); every set a node reads is taken to grow as the
real pool does (the paper's generated sets are no larger). Peak resident memory is the larger run's plus the growth
of the tracked peak: what does not grow with the data (the interpreter, the models, CUDA's libraries) stays. Feature
tensors grow with ``normalization.analysis_images`` and ``probe_images``, which the overlay keeps at 16: at the
paper's 5,000, ResNet-50's pooled features of every unit are 0.3 GB a set, small beside the sets. Usage:

    python benchmarks/bench_memory.py [--sizes 20 40] [--keep /tmp/bench-memory]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suite's paper-shaped helpers

from tests.pipelines.paper_shaped import (  # noqa: E402
    kedro_run,
    make_paper_shaped_project,
    save_tiny_models,
    size_overlay,
    write_imagenet_folder,
)

GIB = 2**30
PAPER_SET_GIB = 1300 * 0.95 * 100 * 3 * 224 * 224 / GIB
GENERATED_PER_TRAIN_IMAGE = 12 / 20  # the paper-shaped test's images generated a class per real training image


def measure(folder: Path, train_per_class: int) -> pd.DataFrame:
    """One `kedro run --env paper_shaped` of every pipeline with ``train_per_class`` real images a class: each
    node's row of the memory log (its first run: nothing cached)."""
    dataset = write_imagenet_folder(folder / "imagenet", train_per_class, max(2, train_per_class // 4))
    stable_diffusion, unclip, clip = save_tiny_models(folder / "models")
    overlay = size_overlay(dataset, stable_diffusion, unclip, clip, "cpu")
    overlay["generation"]["images_per_class"] = max(4, round(train_per_class * GENERATED_PER_TRAIN_IMAGE))
    project = make_paper_shaped_project(folder / "project", overlay)
    log = folder / "memory.jsonl"
    kedro_run(project, hf_home=folder / "hf", memory_log=log, timeout=4 * 3600)
    return pd.read_json(log, lines=True).drop_duplicates("node").set_index("node")


def extrapolate(small: pd.DataFrame, large: pd.DataFrame, paper_set_gib: float) -> pd.DataFrame:
    """Per node: both runs' figures and the paper-scale estimates (see the module docstring), in GiB."""
    table = pd.DataFrame(index=large.index)
    for name, run in (("small", small), ("large", large)):
        table[f"read_{name}"] = run["largest_read_bytes"] / GIB
        table[f"tracked_{name}"] = run["peak_bytes"] / GIB
    table["rss_large"] = large["peak_rss_bytes"] / GIB
    grows = table["read_large"] > table["read_small"]
    slope = (table["tracked_large"] - table["tracked_small"]) / (table["read_large"] - table["read_small"])
    slope = slope.where(grows, 0.0)
    paper_read = (table["read_large"] * paper_set_gib / table["read_large"].max()).where(grows, table["read_large"])
    table["tracked_paper"] = table["tracked_large"] + slope * (paper_read - table["read_large"])
    table["rss_paper"] = table["rss_large"] + table["tracked_paper"] - table["tracked_large"]
    table["multiple"] = (table["tracked_large"] / table["read_large"]).replace(np.inf, np.nan)
    return table.sort_values("rss_paper", ascending=False)


def markdown(table: pd.DataFrame) -> str:
    lines = [
        "| node | largest set read, MiB (small, large run) | tracked peak, MiB (multiple of the set) "
        "| peak RSS of the large run, GiB | at ImageNet-100 scale: tracked, GiB | peak RSS, GiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for node, row in table.iterrows():
        multiple = "" if pd.isna(row["multiple"]) else f" ({row['multiple']:.2f}x)"
        lines.append(
            f"| {node} | {row['read_small'] * 1024:.1f}, {row['read_large'] * 1024:.1f} "
            f"| {row['tracked_large'] * 1024:.1f}{multiple} | {row['rss_large']:.2f} "
            f"| {row['tracked_paper']:.1f} | {row['rss_paper']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[20, 40], help="real training images a class")
    parser.add_argument("--paper-set-gib", type=float, default=PAPER_SET_GIB)
    parser.add_argument("--keep", type=Path, default=None, help="keep the scratch projects here")
    args = parser.parse_args()
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="bench_memory_"))
    small, large = (measure(scratch / f"size_{size}", size) for size in sorted(args.sizes))
    table = extrapolate(small, large, args.paper_set_gib)
    table.to_csv(scratch / "bench_memory.csv")
    print(markdown(table))
    print(
        f"\nImageNet-100's training pool: {args.paper_set_gib:.1f} GiB; the largest node at that scale: "
        f"{table['rss_paper'].max():.1f} GiB of resident memory ({table['rss_paper'].idxmax()})"
    )
    if args.keep is None:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
