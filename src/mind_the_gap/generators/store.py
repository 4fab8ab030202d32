"""A resumable, incremental, shardable store of generated images, whatever the backend.

Layout: ``<directory>/<class>/<index:05d>.png`` plus one JSON-lines manifest per shard,
``<directory>/manifest-<i>-of-<N>.jsonl``, a row per image. Name the directory by ``run_key`` of every generation
parameter: changed parameters then never reuse old images, while asking for more images per class (not part of
the key) tops up the same folder. Every PNG lands atomically and its row only after it, so a run killed at any
moment resumes where it stopped, and shards (``shard_requests``) can run at the same time on other machines.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from mind_the_gap import memory
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.prepare import convert_images
from mind_the_gap.generators.base import ImageGenerator, ImageRequest, image_seed
from mind_the_gap.generators.prompts import PromptFn
from mind_the_gap.keys import content_key

log = logging.getLogger(__name__)

PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk every complete PNG ends with
MANIFEST_COLUMNS = ["file", "class_name", "class_index", "index", "prompt", "seed", "backend"]


@dataclass(frozen=True)
class GenerationStats:
    generated: int
    skipped: int  # already on disk
    rows_recovered: int  # rows rebuilt for images a killed run wrote but did not record
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0


def run_key(params: Mapping[str, Any]) -> str:
    """A short hex digest of the canonical JSON of every parameter that determines the images.

    Put in the backend's ``describe()``, the resolved prompt config, the base seed, the class names, the output
    size and (for img2img and unclip) a digest of the real images; leave out the number of images per class.
    """
    try:
        return content_key(params, 16, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"run_key needs JSON-serialisable parameters: {exc}") from exc


def plan_requests(
    class_names: Sequence[str],
    images_per_class: int,
    base_seed: int,
    prompt_fn: PromptFn,
    init_images: ImageSet | None = None,
) -> list[ImageRequest]:
    """Every image of a run, class by class; the first ``k`` requests of a class are the same for any larger count.

    With ``init_images`` (img2img, unclip), image ``i`` of a class starts from real image ``i % n`` of the ``n``
    images of that class name in ``init_images``, in their order there.
    """
    if images_per_class < 0:
        raise ValueError(f"images_per_class must be >= 0, got {images_per_class}")
    requests = []
    for class_index, class_name in enumerate(class_names):
        pool = None if init_images is None else _class_pool(init_images, class_name)
        for index in range(images_per_class):
            seed = image_seed(base_seed, class_index, index)
            prompt = prompt_fn(class_name, index, seed)
            init = None if pool is None else init_images.images[pool[index % len(pool)]]
            requests.append(ImageRequest(class_index, class_name, index, seed, prompt, init))
    return requests


def _class_pool(images: ImageSet, class_name: str) -> list[int]:
    if class_name not in images.class_names:
        raise ValueError(f"init_images has no class {class_name!r}")
    pool = (images.labels == images.class_names.index(class_name)).nonzero().flatten().tolist()
    if not pool:
        raise ValueError(f"init_images holds no image of class {class_name!r}")
    return pool


def parse_shard(shard: str) -> tuple[int, int]:
    """``"i/N"`` as ``(i, N)``, with 0 <= i < N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
    if match is None or int(match[1]) >= int(match[2]):
        raise ValueError(f"shard must be 'i/N' with 0 <= i < N (e.g. '0/4'), got {shard!r}")
    return int(match[1]), int(match[2])


def shard_requests(requests: Sequence[ImageRequest], shard: str) -> list[ImageRequest]:
    """Shard ``i/N``'s share: requests with ``(class_index + index) % N == i``. The rule does not depend on the
    number of images per class, so a top-up leaves every image in the shard it had."""
    i, n = parse_shard(shard)
    return [r for r in requests if (r.class_index + r.index) % n == i]


def class_folder(class_name: str) -> str:
    """A class name made safe as one folder name (``t-shirt/top`` -> ``t-shirt_top``)."""
    return re.sub(r"[^\w.-]+", "_", class_name).lstrip(".") or "_"


def _folders(requests: Sequence[ImageRequest]) -> dict[str, str]:
    folders: dict[str, str] = {}
    owners: dict[str, str] = {}
    for name in dict.fromkeys(r.class_name for r in requests):
        folder = class_folder(name)
        if owners.setdefault(folder, name) != name:
            raise ValueError(f"class names {owners[folder]!r} and {name!r} both map to the folder {folder!r}")
        folders[name] = folder
    return folders


def generate_into(
    directory: Path,
    requests: Sequence[ImageRequest],
    generator: ImageGenerator,
    batch_size: int,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
    *,
    shard: str = "0/1",
) -> GenerationStats:
    """Generate the requests whose PNG is not yet in ``directory``, ``batch_size`` per ``generator.generate`` call.

    ``shard`` names this process's manifest; run each shard's requests (``shard_requests``) in one process at a
    time. ``on_batch(done, total)`` is called after each batch is on disk. With ``progress``, a bar shows the images
    where stderr is a terminal; elsewhere (a log file) a line is logged as each tenth of them is on disk.
    """
    started = time.perf_counter()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    directory = Path(directory)
    folders = _folders(requests)
    on_disk: dict[str, set[str]] = {}
    for folder in folders.values():
        (directory / folder).mkdir(parents=True, exist_ok=True)
        on_disk[folder] = {entry.name for entry in os.scandir(directory / folder)}  # one listing, not a stat each
    i, n = parse_shard(shard)
    manifest_path = directory / f"manifest-{i}-of-{n}.jsonl"
    _drop_torn_tail(manifest_path)
    recorded = {row["file"] for row in _read_rows(directory)}
    params = generator.describe()

    todo: list[tuple[ImageRequest, str]] = []
    recovered = []
    for request in requests:
        folder, name = folders[request.class_name], f"{request.index:05d}.png"
        file = f"{folder}/{name}"
        if f".{name}.tmp" in on_disk[folder]:  # left by a killed run: this request is ours alone
            (directory / folder / f".{name}.tmp").unlink(missing_ok=True)
        # A recorded image was complete before its row was written; an unrecorded one is checked.
        if name in on_disk[folder] and (file in recorded or _complete_png(directory / file)):
            if file not in recorded:
                recovered.append(_row(request, file, generator.name, params))
        else:
            todo.append((request, file))

    done = 0
    with (
        manifest_path.open("a", encoding="utf-8") as manifest,
        ThreadPoolExecutor(1) as writer,
        # disable=None: no bar where stderr is not a terminal, whose redraws would clutter a log file.
        tqdm(
            total=len(todo),
            unit="img",
            desc=f"generating {directory.name}",
            disable=None if progress else True,
            smoothing=0.1,
        ) as bar,
    ):

        def land(written: Future[int]) -> None:
            nonlocal done
            count = written.result()  # re-raises the writer's error, if any
            done += count
            bar.update(count)
            if progress and bar.disable and done * 10 // len(todo) > (done - count) * 10 // len(todo):
                rate = done / (time.perf_counter() - started)
                log.info("generating %s: %d/%d images, %.1f images/s", directory.name, done, len(todo), rate)
            if on_batch is not None:
                on_batch(done, len(todo))

        if recovered:
            _append(manifest, recovered)
        pending: Future[int] | None = None  # the previous batch, written while the next one is generated
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            images = generator.generate([request for request, _ in batch])
            if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(batch):
                raise ValueError(
                    f"{generator.name} returned {images.dtype} {tuple(images.shape)} for {len(batch)} requests; "
                    "expected uint8 (B, C, H, W)"
                )
            if pending is not None:
                land(pending)
            rows = [_row(request, file, generator.name, params) for request, file in batch]
            pending = writer.submit(_write_batch, directory, images, rows, manifest)
        if pending is not None:
            land(pending)
    return GenerationStats(len(todo), len(requests) - len(todo), len(recovered), time.perf_counter() - started)


def _row(request: ImageRequest, file: str, backend: str, params: Mapping[str, Any]) -> dict[str, Any]:
    row = {
        "file": file,
        "class_name": request.class_name,
        "class_index": request.class_index,
        "index": request.index,
        "prompt": request.prompt,
        "seed": request.seed,
        "backend": backend,
    }
    row.update((key, value) for key, value in params.items() if key not in row)
    return row


def _write_batch(directory: Path, images: torch.Tensor, rows: list[dict[str, Any]], manifest: IO[str]) -> int:
    """Every PNG of a batch, then their rows: a row is never written before its image is on disk."""
    for image, row in zip(images, rows, strict=True):
        _write_png(directory / row["file"], image)
    _append(manifest, rows)
    return len(rows)


def _write_png(path: Path, image: torch.Tensor) -> None:
    """Atomically: a hidden temporary file in the same folder, fsync'd, then renamed over the final name."""
    array = image.permute(1, 2, 0).numpy()
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("wb") as f:
        Image.fromarray(array[..., 0] if array.shape[2] == 1 else array).save(f, format="PNG")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _append(manifest: IO[str], rows: list[dict[str, Any]]) -> None:
    manifest.write("".join(json.dumps(row) + "\n" for row in rows))
    manifest.flush()
    os.fsync(manifest.fileno())


def _complete_png(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            f.seek(-len(PNG_END), os.SEEK_END)
            return f.read() == PNG_END
    except OSError:  # shorter than the IEND chunk, or unreadable
        return False


def _drop_torn_tail(manifest: Path) -> None:
    """Cut a last line that a killed run left half-written, so that the next row starts on a line of its own."""
    if not manifest.exists():
        return
    with manifest.open("rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def _read_rows(directory: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(directory.glob("manifest-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # the torn last line of a shard that is being written or was killed
                continue
    return rows


def merge_manifests(directory: Path) -> pd.DataFrame:
    """Every shard's manifest as one table: a row per image (the last written wins), by class index and index."""
    rows = _read_rows(Path(directory))
    if not rows:
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    frame = pd.DataFrame(rows).drop_duplicates("file", keep="last")
    return frame.sort_values(["class_index", "index"], kind="stable").reset_index(drop=True)


def load_images(
    directory: Path,
    manifest: pd.DataFrame,
    image_size: int,
    channels: int,
    class_names: Sequence[str] | None = None,
) -> ImageSet:
    """The manifest's images as an ImageSet at the real data's size and channel count, labelled by class index.

    Pass the real data's ``class_names`` to keep labels comparable (they are checked against the manifest);
    without them, the names come from the manifest, which must then hold every class.
    """
    directory = Path(directory)
    class_index = manifest["class_index"].to_numpy(dtype=np.int64)
    if class_names is None:
        names = manifest.drop_duplicates("class_index").set_index("class_index")["class_name"].sort_index()
        if list(names.index) != list(range(len(names))):
            raise ValueError(f"manifest of {directory} lacks some class indices: pass class_names")
        class_names = tuple(names)
    class_names = tuple(class_names)
    expected = np.asarray(class_names + ("",), dtype=object)  # "" matches no row: an index past the end fails
    if (expected[np.minimum(class_index, len(class_names))] != manifest["class_name"].to_numpy()).any():
        raise ValueError(f"manifest of {directory} does not match class_names {class_names}")
    labels = torch.from_numpy(class_index.copy())  # pandas hands out a read-only array
    images = torch.empty((len(manifest), channels, image_size, image_size), dtype=torch.uint8)
    paths = [directory / file for file in manifest["file"]]
    chunk = 1024  # decoded images held at once, besides the result
    # PIL releases the GIL while decoding, so threads use every core.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, len(paths), chunk):
            arrays = list(pool.map(_read_png, paths[start : start + chunk]))
            for shape in {array.shape for array in arrays}:
                positions = [i for i, array in enumerate(arrays) if array.shape == shape]
                stack = torch.from_numpy(np.stack([arrays[i] for i in positions]))
                stack = stack.unsqueeze(1) if stack.ndim == 3 else stack.permute(0, 3, 1, 2)
                index = torch.tensor(positions) + start
                # The real data's own conversion, so that both sets are resized alike.
                images[index] = convert_images(stack, image_size, channels)
    return ImageSet(memory.track(images, read=True), labels, class_names)


def _read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image if image.mode in ("L", "RGB") else image.convert("RGB"))
    except OSError as exc:
        raise ValueError(f"unreadable generated image {path}: {exc}") from exc
