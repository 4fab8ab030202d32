"""The image store with a deterministic fake backend (and once with a tiny Stable Diffusion), including a real
SIGKILL of a generating process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.generators.base import ImageRequest
from mind_the_gap.generators.diffusers_backends import (
    Img2ImgGenerator,
    StableDiffusionGenerator,
    save_tiny_stable_diffusion,
)
from mind_the_gap.generators.prompts import PromptConfig
from mind_the_gap.generators.store import (
    class_folder,
    generate_into,
    load_images,
    merge_manifests,
    plan_requests,
    run_key,
    shard_requests,
)

CLASSES = ("t-shirt/top", "ankle boot", "bag")
PROMPTS = PromptConfig(mode="plain")


class FakeGenerator:
    """Noise drawn from each request's seed, optionally slowly: a backend in miniature."""

    name = "fake"

    def __init__(self, size: int = 12, channels: int = 3, seconds_per_image: float = 0.0) -> None:
        self.size, self.channels, self.seconds_per_image = size, channels, seconds_per_image

    def generate(self, requests: Sequence[ImageRequest]) -> torch.Tensor:
        time.sleep(self.seconds_per_image * len(requests))
        shape = (self.channels, self.size, self.size)
        seeded = [torch.Generator().manual_seed(r.seed) for r in requests]
        return torch.stack([torch.randint(0, 256, shape, generator=g, dtype=torch.uint8) for g in seeded])

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "size": self.size, "channels": self.channels}


def plan(per_class: int, base_seed: int = 0) -> list[ImageRequest]:
    return plan_requests(CLASSES, per_class, base_seed, PROMPTS.resolve(CLASSES).prompt)


def png_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*.png"))}


def leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() and p.suffix not in (".png", ".jsonl")]


def manifest_lines(directory: Path) -> list[dict]:
    return [json.loads(line) for path in directory.glob("manifest-*.jsonl") for line in path.read_text().splitlines()]


def test_plan_is_deterministic_and_a_prefix_of_any_larger_plan():
    small, large = plan(2), plan(5)
    assert small == plan(2)
    assert small == [r for r in large if r.index < 2]
    assert [r.prompt for r in small[:2]] == ["a photo of a t-shirt/top"] * 2
    assert len({r.seed for r in large}) == len(large)
    assert {r.seed for r in plan(2, base_seed=1)}.isdisjoint(r.seed for r in small)


def test_generate_writes_pngs_and_manifest_and_loads_back(tmp_path: Path):
    generator = FakeGenerator()
    requests = plan(4)
    stats = generate_into(tmp_path, requests, generator, batch_size=5, progress=False)
    assert (stats.generated, stats.skipped, stats.rows_recovered) == (12, 0, 0)
    assert stats.images_per_second > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ankle_boot", "bag", "manifest-0-of-1.jsonl", "t-shirt_top"]

    manifest = merge_manifests(tmp_path)
    assert list(manifest[["class_index", "index"]].itertuples(index=False, name=None)) == [
        (c, i) for c in range(3) for i in range(4)
    ]
    row = manifest.iloc[5]
    assert (row.file, row.class_name, row.prompt, row.backend, row["size"]) == (
        "ankle_boot/00001.png",
        "ankle boot",
        "a photo of a ankle boot",
        "fake",
        12,
    )
    assert row.seed == requests[5].seed

    loaded = load_images(tmp_path, manifest, image_size=12, channels=3, class_names=CLASSES)
    assert torch.equal(loaded.images, generator.generate(requests))
    assert loaded.labels.tolist() == [c for c in range(3) for _ in range(4)]
    assert loaded.class_names == CLASSES
    small = load_images(tmp_path, manifest, image_size=8, channels=1)
    assert small.images.shape == (12, 1, 8, 8)
    assert small.class_names == CLASSES


def test_a_rerun_skips_everything_and_a_top_up_makes_only_the_missing_images(tmp_path: Path):
    generator = FakeGenerator()
    generate_into(tmp_path / "run", plan(2), generator, batch_size=4, progress=False)
    assert generate_into(tmp_path / "run", plan(2), generator, batch_size=4, progress=False).generated == 0
    calls: list[tuple[int, int]] = []
    stats = generate_into(
        tmp_path / "run",
        plan(5),
        generator,
        batch_size=4,
        progress=False,
        on_batch=lambda done, total: calls.append((done, total)),
    )
    assert (stats.generated, stats.skipped) == (9, 6)
    assert calls == [(4, 9), (8, 9), (9, 9)]

    generate_into(tmp_path / "at_once", plan(5), generator, batch_size=7, progress=False)
    assert png_files(tmp_path / "run") == png_files(tmp_path / "at_once")
    assert len(merge_manifests(tmp_path / "run")) == len(manifest_lines(tmp_path / "run")) == 15


def test_two_shards_make_one_full_run(tmp_path: Path):
    generator, requests = FakeGenerator(), plan(5)
    first, second = shard_requests(requests, "0/2"), shard_requests(requests, "1/2")
    assert first
    assert second
    assert sorted(first + second, key=requests.index) == requests
    generate_into(tmp_path / "sharded", first, generator, batch_size=3, progress=False, shard="0/2")
    generate_into(tmp_path / "sharded", second, generator, batch_size=3, progress=False, shard="1/2")
    generate_into(tmp_path / "full", requests, generator, batch_size=3, progress=False)
    assert png_files(tmp_path / "sharded") == png_files(tmp_path / "full")
    merged = merge_manifests(tmp_path / "sharded")
    assert merged.drop(columns="file").equals(merge_manifests(tmp_path / "full").drop(columns="file"))
    assert sorted(p.name for p in (tmp_path / "sharded").glob("*.jsonl")) == [
        "manifest-0-of-2.jsonl",
        "manifest-1-of-2.jsonl",
    ]
    # A top-up keeps every image in its shard.
    assert set(shard_requests(plan(9), "1/2")) >= set(second)


@pytest.mark.parametrize("shard", ["2/2", "1", "a/b", "-1/2", "0/0", "1/2/3", ""])
def test_bad_shards_are_named(shard: str):
    with pytest.raises(ValueError, match=rf"'i/N'.*{shard!r}"):
        shard_requests(plan(1), shard)


def test_run_key_changes_with_any_parameter_but_not_with_key_order():
    params = {
        "generator": FakeGenerator().describe(),
        "prompts": PROMPTS.model_dump(),
        "base_seed": 0,
        "class_names": list(CLASSES),
    }
    key = run_key(params)
    assert re.fullmatch(r"[0-9a-f]{16}", key)  # a folder name: hex digits only
    assert run_key(dict(reversed(params.items()))) == key
    assert run_key({**params, "base_seed": 1}) != key
    assert run_key({**params, "generator": FakeGenerator(size=13).describe()}) != key
    with pytest.raises(TypeError, match="JSON"):
        run_key({"path": Path(".")})


def test_a_crash_between_image_and_row_loses_and_duplicates_nothing(tmp_path: Path):
    generator, requests = FakeGenerator(), plan(4)
    generate_into(tmp_path / "reference", requests, generator, batch_size=4, progress=False)
    generate_into(tmp_path / "run", requests, generator, batch_size=4, progress=False)
    manifest = tmp_path / "run" / "manifest-0-of-1.jsonl"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:5]) + lines[5][:40])  # rows 5.. lost, the last one torn mid-write
    (tmp_path / "run" / "bag" / "00003.png").write_bytes(b"\x89PNG\r\n")  # a truncated image without a row
    (tmp_path / "run" / "bag" / ".00002.png.tmp").write_bytes(b"half")  # a temporary file of a killed run

    stats = generate_into(tmp_path / "run", requests, generator, batch_size=4, progress=False)
    assert (stats.generated, stats.rows_recovered) == (1, 6)
    assert png_files(tmp_path / "run") == png_files(tmp_path / "reference")
    assert not leftovers(tmp_path / "run")
    rows = manifest_lines(tmp_path / "run")
    assert sorted(row["file"] for row in rows) == sorted(merge_manifests(tmp_path / "reference")["file"])


KILL_SCRIPT = """
import importlib.util, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("store_tests", sys.argv[1])
tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tests)
tests.generate_into(Path(sys.argv[2]), tests.plan(12), tests.FakeGenerator(seconds_per_image=0.05), batch_size=3,
                    progress=False)
"""


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path):
    directory = tmp_path / "killed"
    for kill_after in (4, 13):  # images on disk before the kill: once early, once later
        process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, __file__, str(directory)])
        deadline = time.monotonic() + 60
        while len(list(directory.rglob("*.png"))) < kill_after and process.poll() is None:
            assert time.monotonic() < deadline, "the generating process made no progress"
            time.sleep(0.005)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    written = len(list(directory.rglob("*.png")))
    assert 13 <= written < 36

    stats = generate_into(directory, plan(12), FakeGenerator(), batch_size=3, progress=False)
    assert stats.generated + stats.skipped == 36
    assert stats.skipped >= written - 1
    generate_into(tmp_path / "reference", plan(12), FakeGenerator(), batch_size=3, progress=False)
    assert png_files(directory) == png_files(tmp_path / "reference")
    assert not leftovers(directory)
    rows = manifest_lines(directory)
    assert sorted(row["file"] for row in rows) == sorted(png_files(directory))  # exactly one row per image


def test_class_folders_are_safe_and_distinct():
    assert class_folder("t-shirt/top") == "t-shirt_top"
    assert class_folder("..") == "_"
    assert class_folder("ankle boot") == "ankle_boot"
    clash = [ImageRequest(0, "a/b", 0, 1), ImageRequest(1, "a b", 0, 2)]
    with pytest.raises(ValueError, match="'a/b' and 'a b'"):
        generate_into(Path("unused"), clash, FakeGenerator(), batch_size=1, progress=False)


def test_load_images_checks_the_class_names(tmp_path: Path):
    generate_into(tmp_path, plan(1), FakeGenerator(), batch_size=3, progress=False)
    with pytest.raises(ValueError, match="class_names"):
        load_images(tmp_path, merge_manifests(tmp_path), 12, 3, class_names=("bag", "ankle boot", "t-shirt/top"))


def test_an_empty_folder_has_an_empty_manifest(tmp_path: Path):
    assert merge_manifests(tmp_path).empty


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save_tiny_stable_diffusion(tmp_path_factory.mktemp("models")))


def test_tiny_stable_diffusion_through_the_store(tmp_path: Path, tiny_sd: str):
    generator = StableDiffusionGenerator(
        tiny_sd, steps=2, height=32, width=32, output_size=16, channels=1, device="cpu"
    )
    stats = generate_into(tmp_path, plan(2), generator, batch_size=4, progress=False)
    assert stats.generated == 6
    manifest = merge_manifests(tmp_path)
    assert set(manifest["model_id"]) == {tiny_sd}
    assert set(manifest["steps"]) == {2}
    loaded = load_images(tmp_path, manifest, image_size=16, channels=1, class_names=CLASSES)
    assert loaded.images.shape == (6, 1, 16, 16)
    assert (loaded.images.int() - generator.generate(plan(2)).int()).abs().max() <= 1  # batch-size rounding


def test_real_images_flow_through_img2img_at_strength_zero(tmp_path: Path, tiny_sd: str):
    real = ImageSet(
        torch.randint(0, 256, (6, 1, 16, 16), dtype=torch.uint8),
        torch.tensor([2, 0, 1, 0, 2, 1]),
        ("bag", "t-shirt/top", "ankle boot"),
    )
    requests = plan_requests(CLASSES, 3, 0, PROMPTS.prompt, init_images=real)
    # t-shirt/top's real images are images 2 and 5: its requests take them in turn.
    assert [r.init_image.data_ptr() for r in requests[:3]] == [real.images[i].data_ptr() for i in (2, 5, 2)]
    generator = Img2ImgGenerator(tiny_sd, steps=2, height=32, width=32, strength=0.0, output_size=16, channels=1)
    generate_into(tmp_path, requests, generator, batch_size=4, progress=False)
    loaded = load_images(tmp_path, merge_manifests(tmp_path), 16, 1, class_names=CLASSES)
    assert torch.equal(loaded.images, torch.stack([r.init_image for r in requests]))
    with pytest.raises(ValueError, match="'coat'"):
        plan_requests(("coat",), 1, 0, PROMPTS.prompt, init_images=real)
