"""An image set's fingerprint: computed once, kept in its file, derived for the views students train on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mind_the_gap import memory
from mind_the_gap.data import imageset
from mind_the_gap.data.imageset import ImageSet, ImageView, load_image_set, save_image_set
from mind_the_gap.experiments.executor import set_file
from mind_the_gap.experiments.study import SetView, StudentJob

from ..conftest import striped_images


def test_a_set_is_hashed_once_and_its_file_keeps_the_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = striped_images(4)
    fingerprint = data.fingerprint()
    save_image_set(data, tmp_path / "set.safetensors")
    hashed = []
    monkeypatch.setattr(imageset.hashlib, "blake2b", lambda **kw: hashed.append(kw) or pytest.fail("hashed again"))
    assert data.fingerprint() == fingerprint
    loaded = load_image_set(tmp_path / "set.safetensors")
    assert loaded.fingerprint() == fingerprint
    assert hashed == []


def test_a_file_without_a_fingerprint_is_hashed_when_asked(tmp_path: Path):
    data = striped_images(4)
    save_file(
        {"images": data.images, "labels": data.labels},
        str(tmp_path / "old.safetensors"),
        metadata={"class_names": '["0", "1", "2", "3"]'},
    )
    old = load_image_set(tmp_path / "old.safetensors")
    assert old.fingerprint() == ImageSet(data.images, data.labels, ("0", "1", "2", "3")).fingerprint()


def test_a_whole_view_is_its_set_and_a_subset_gets_a_fingerprint_without_hashing_its_images():
    real, synthetic = striped_images(6), striped_images(6, seed=3)
    sets = {"real": real, "synthetic": synthetic}
    whole = StudentJob("whole", 0, (SetView("real", torch.arange(len(real))),))
    assert whole.training_set(sets) is real
    half = torch.arange(0, len(real), 2)
    subset = StudentJob("half", 0, (SetView("real", half),)).training_set(sets)
    assert torch.equal(subset.gather(torch.arange(len(half))), real.images[half])
    other_half = StudentJob("half", 0, (SetView("real", half + 1),)).training_set(sets)
    assert subset.fingerprint() != other_half.fingerprint()
    assert subset.fingerprint() != real.fingerprint()
    mixed = StudentJob("mixed", 0, (SetView("real", half), SetView("synthetic"))).training_set(sets)
    assert len(mixed) == len(half) + len(synthetic)
    assert torch.equal(mixed.gather(torch.arange(len(half), len(mixed))), synthetic.images)
    assert (
        mixed.fingerprint()
        != StudentJob("mixed", 0, (SetView("synthetic"), SetView("real", half))).training_set(sets).fingerprint()
    )


def test_a_view_of_several_sets_gathers_what_their_joined_copy_holds_and_copies_nothing():
    real, synthetic = striped_images(6), striped_images(8, seed=3)
    part = torch.tensor([5, 0, 3])
    view = ImageView(((real, part), (synthetic, None)))
    joined = torch.cat([real.images[part], synthetic.images])
    index = torch.randperm(len(view), generator=torch.Generator().manual_seed(0))
    assert torch.equal(view.gather(index), joined[index])
    out = torch.empty_like(joined[:4])
    assert view.gather(index[:4], out=out) is out
    assert torch.equal(out, joined[index[:4]])
    assert torch.equal(view.labels, torch.cat([real.labels[part], synthetic.labels]))
    assert torch.equal(torch.cat(list(view.chunks(4))), joined)
    assert view.nbytes == joined.numel()
    alone = ImageView(((real, part),))
    assert torch.equal(alone.gather(torch.tensor([2, 0])), real.images[part[[2, 0]]])
    other_classes = ImageSet(synthetic.images, synthetic.labels, tuple(reversed(synthetic.class_names)))
    with pytest.raises(ValueError, match="different classes"):
        ImageView(((real, None), (other_classes, None)))


def test_a_stored_set_is_mapped_not_read_and_writes_to_it_stay_in_memory(tmp_path: Path):
    images = torch.randint(0, 256, (256, 3, 128, 128), dtype=torch.uint8)  # 12 MiB
    data = ImageSet(images, torch.arange(256) % 4, ("a", "b", "c", "d"))
    save_image_set(data, tmp_path / "set.safetensors")
    before = _resident_bytes()
    loaded = load_image_set(tmp_path / "set.safetensors")
    assert _resident_bytes() - before < 4 * 2**20  # the pages are read when touched
    assert torch.equal(loaded.images, images)
    loaded.images[0] = 0  # copy-on-write: the file keeps its pixels
    assert torch.equal(load_image_set(tmp_path / "set.safetensors").images[0], images[0])


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def test_the_memory_ledger_counts_each_storage_once_while_it_lives_and_the_largest_set_read(tmp_path: Path):
    data = striped_images(8)
    save_image_set(data, tmp_path / "set.safetensors")
    memory.start_window()
    loaded = load_image_set(tmp_path / "set.safetensors")
    half = loaded.subset(torch.arange(4))
    view = loaded.images[2:]  # a view of a tracked storage counts nothing more
    memory.track(view)
    assert memory.window_peak() == memory.WindowPeak(data.nbytes + half.nbytes, data.nbytes)
    del half
    copy = loaded.subset(torch.arange(2))
    assert memory.window_peak().peak_bytes == data.nbytes + 2 * copy.nbytes  # the peak stays: half was larger
    memory.start_window()
    assert memory.window_peak() == memory.WindowPeak(0, 0)
    memory.track(loaded.images, read=True)  # a set handed to the next window in memory counts there
    assert memory.window_peak() == memory.WindowPeak(data.nbytes, data.nbytes)


def test_a_set_handed_to_workers_is_read_from_its_own_file_or_written_once(tmp_path: Path):
    stored, built = striped_images(4), striped_images(4, seed=5)
    save_image_set(stored, tmp_path / "stored.safetensors")
    loaded = load_image_set(tmp_path / "stored.safetensors")
    assert loaded.file == (tmp_path / "stored.safetensors").resolve()
    assert set_file(loaded, tmp_path / "sets").path == str(loaded.file)  # no copy of a stored set
    assert built.file is None
    handed = set_file(built, tmp_path / "sets")
    assert Path(handed.path).parent == (tmp_path / "sets").resolve()
    assert torch.equal(handed.load().images, built.images)
    save_image_set(built, tmp_path / "stored.safetensors")  # the catalog's file replaced by a later run
    with pytest.raises(ValueError, match="stored.safetensors changed after its cell handed it"):
        set_file(loaded, tmp_path / "sets").load()
