"""Peak memory of `data_processing` on an image folder at the paper's size: resident memory against decoded bytes.

Writes a folder of ``--classes`` x ``--per-class`` JPEGs of ``--size`` px (smooth random colours; or reads
``--folder``), then runs `kedro run --pipeline data_processing` on it in a scratch copy of the project (see
bench_study.py), once on a tiny folder of the same kind for the floor (interpreter and libraries) and once on the
whole folder, and reports each run's peak resident memory (the operating system's maximum RSS) and the decoded
images' bytes. Usage:

    python benchmarks/bench_memory.py [--classes 100] [--per-class 40] [--size 224] [--folder PATH]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
from pathlib import Path

import numpy as np
from bench_study import kedro_run, scratch_project
from PIL import Image


def make_folder(root: Path, classes: int, per_class: int, size: int, seed: int = 0) -> Path:
    """JPEGs of smooth random colour fields, one folder per class: decoding costs what a photo's does."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"n{c:08d}").mkdir(parents=True)
        for i in range(per_class):
            coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
            image.save(root / f"n{c:08d}" / f"{i}.JPEG", quality=90)
    return root


def peak_rss_of_data_processing(project: Path, images: Path, size: int) -> float:
    """GiB: the peak resident memory of one `kedro run --pipeline data_processing` on ``images``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    params = f"dataset.source=imagefolder,dataset.path={images},dataset.image_size={size},dataset.channels=3"
    kedro_run(project, ["--pipeline", "data_processing", "--params", params])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux: the largest child so far
    if peak <= before:
        raise SystemExit("this run's peak is hidden by an earlier, larger one: run the small folder first")
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--folder", type=Path, default=None, help="an existing image folder instead of a new one")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_memory_"))  # kept when a run fails: its kedro.log is there
    project = scratch / "project"
    project.mkdir()
    scratch_project(project)
    tiny = make_folder(scratch / "tiny", 2, 10, args.size)
    images = args.folder or make_folder(scratch / "images", args.classes, args.per_class, args.size)
    count = sum(1 for p in images.rglob("*") if p.is_file())
    decoded = count * 3 * args.size**2 / 2**30
    floor = peak_rss_of_data_processing(project, tiny, args.size)
    peak = peak_rss_of_data_processing(project, images, args.size)
    print(f"{count} images at {args.size} px: {decoded:.2f} GiB decoded")
    print(f"peak resident memory of data_processing: {peak:.2f} GiB; on 20 images: {floor:.2f} GiB")
    print(f"above that floor: {peak - floor:.2f} GiB, {(peak - floor) / decoded:.2f}x the decoded bytes")
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
