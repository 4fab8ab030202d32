from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.prepare import DatasetConfig, convert, load_source, prepare_splits
from mind_the_gap.data.sources import (
    DataSourceError,
    list_image_folder,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
)

from ..conftest import write_idx


def test_idx_round_trip_plain_and_gzipped(tmp_path: Path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b", array, compress=False)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)
    assert np.array_equal(read_idx(tmp_path / "b"), array)


def test_truncated_idx_names_the_file(tmp_path: Path):
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, np.zeros((4, 28, 28), dtype=np.uint8), compress=False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataSourceError, match="train-images-idx3-ubyte is truncated"):
        read_idx(path)


def test_fashion_mnist_reads_official_splits(fashion_dir: Path):
    train, test = load_fashion_mnist(fashion_dir)
    assert train.images.shape == (400, 1, 28, 28)
    assert test.images.shape == (100, 1, 28, 28)
    assert train.class_names[0] == "t-shirt/top"
    assert train.num_classes == 10
    assert train.class_counts().tolist() == [40] * 10


def test_missing_dataset_path_says_how_to_fetch(tmp_path: Path):
    with pytest.raises(DataSourceError, match=r"does not exist \(run `make data`"):
        load_fashion_mnist(tmp_path / "nowhere")


def test_missing_idx_file_is_named(fashion_dir: Path):
    (fashion_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataSourceError, match="missing t10k-labels-idx1-ubyte"):
        load_fashion_mnist(fashion_dir)


def _save(path: Path, mode: str, size=(20, 14), value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode in ("L", "P") else (value,) * len(mode)
    Image.new(mode, size, colour).save(path)


def make_folder(root: Path, per_class: int = 4, classes=("cat", "dog", "fox")) -> Path:
    # Mixed formats, modes and sizes, as real folders have them.
    formats = [("png", "RGB"), ("jpg", "RGB"), ("bmp", "L"), ("png", "RGBA"), ("webp", "RGB"), ("gif", "P")]
    for c, name in enumerate(classes):
        for i in range(per_class):
            suffix, mode = formats[(c + i) % len(formats)]
            _save(root / name / f"img{i}.{suffix}", mode, size=(20 + i, 14 + c), value=40 * c + 10)
    return root


def test_image_folder_any_format_to_fixed_size(tmp_path: Path):
    config = DatasetConfig(source="imagefolder", path=make_folder(tmp_path / "imgs"), image_size=12, channels=3)
    train, test = load_source(config)
    assert test is None
    assert train.images.shape == (12, 3, 12, 12)
    assert train.images.dtype == torch.uint8
    assert train.class_names == ("cat", "dog", "fox")
    assert train.class_counts().tolist() == [4, 4, 4]
    # Uniform images stay uniform through resize and crop: the pixel value identifies the class.
    assert train.images[train.labels == 1].float().mean().item() == pytest.approx(50, abs=2)


def test_image_folder_with_train_and_val_keeps_official_split(tmp_path: Path):
    make_folder(tmp_path / "inet" / "train", per_class=5)
    make_folder(tmp_path / "inet" / "val", per_class=2)
    train, test = load_source(DatasetConfig(source="imagefolder", path=tmp_path / "inet", image_size=8, channels=1))
    assert len(train) == 15
    assert len(test) == 6
    assert train.channels == 1


def test_image_folder_with_train_alone_splits_its_test_set_off_it(tmp_path: Path):
    make_folder(tmp_path / "inet" / "train", per_class=5)
    train, test = load_source(DatasetConfig(source="imagefolder", path=tmp_path / "inet", image_size=8))
    assert test is None
    assert train.class_names == ("cat", "dog", "fox")


def test_a_class_named_train_is_a_class(tmp_path: Path):
    make_folder(tmp_path / "vehicles", classes=("bus", "car", "train"))
    make_folder(tmp_path / "vehicles" / "val", classes=("bus",))  # a class named "val" among them, too
    train, test = load_source(DatasetConfig(source="imagefolder", path=tmp_path / "vehicles", image_size=8))
    assert test is None
    assert train.class_names == ("bus", "car", "train", "val")


def test_deep_images_are_scaled_to_8_bits_not_clipped(tmp_path: Path):
    ramp = np.linspace(0, 1, 16 * 16).reshape(16, 16)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "sixteen.png")  # opens as I;16
    Image.fromarray((ramp * 65535).astype(np.int32), mode="I").save(tmp_path / "thirty_two.tif")
    Image.fromarray(ramp.astype(np.float32), mode="F").save(tmp_path / "float.tif")
    Image.fromarray((ramp * 255).astype(np.uint8)).save(tmp_path / "eight.png")
    for name in ("sixteen.png", "thirty_two.tif", "float.tif", "eight.png"):
        (tmp_path / "imgs" / name.split(".")[0]).mkdir(parents=True)
        (tmp_path / name).rename(tmp_path / "imgs" / name.split(".")[0] / name)
    train, _ = load_source(DatasetConfig(source="imagefolder", path=tmp_path / "imgs", image_size=16, channels=1))
    reference = train.images[train.class_names.index("eight")].int()
    for name in ("sixteen", "thirty_two", "float"):
        assert (train.images[train.class_names.index(name)].int() - reference).abs().max() <= 1, name


def test_exif_orientation_is_applied(tmp_path: Path):
    image = np.zeros((10, 20, 3), dtype=np.uint8)
    image[:, :10] = 255  # left half white, as the camera stored it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    (tmp_path / "imgs" / "photo").mkdir(parents=True)
    Image.fromarray(image).save(tmp_path / "imgs" / "photo" / "a.jpg", exif=exif, quality=100)
    train, _ = load_source(DatasetConfig(source="imagefolder", path=tmp_path / "imgs", image_size=10, channels=1))
    upright = train.images[0, 0].float()
    assert upright[:4].mean() > 200
    assert upright[-4:].mean() < 50


def test_hidden_files_and_folders_are_not_images(tmp_path: Path):
    root = make_folder(tmp_path / "imgs")
    (root / "cat" / "._img0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # a macOS resource fork
    (root / "dog" / ".ipynb_checkpoints").mkdir()
    (root / "dog" / ".ipynb_checkpoints" / "img0.png").write_text("not an image")
    train, _ = load_source(DatasetConfig(source="imagefolder", path=root, image_size=8))
    assert train.class_counts().tolist() == [4, 4, 4]


def test_empty_class_folder_is_named(tmp_path: Path):
    root = make_folder(tmp_path / "imgs")
    (root / "empty_class").mkdir()
    with pytest.raises(DataSourceError, match="empty_class holds no images"):
        load_source(DatasetConfig(source="imagefolder", path=root, image_size=8))


def test_truncated_image_is_named_or_skipped(tmp_path: Path, caplog):
    root = make_folder(tmp_path / "imgs")
    broken = root / "dog" / "broken.png"  # dog and fox each gain one bad file beside their 4 good ones
    Image.new("RGB", (64, 64), (1, 2, 3)).save(broken)
    broken.write_bytes(broken.read_bytes()[:100])
    (root / "fox" / "notes.png").write_text("not an image")
    with pytest.raises(DataSourceError, match=r"unreadable image .*(broken|notes)\.png"):
        load_source(DatasetConfig(source="imagefolder", path=root, image_size=8))
    with caplog.at_level(logging.WARNING):
        train, _ = load_source(DatasetConfig(source="imagefolder", path=root, image_size=8, skip_corrupt=True))
    assert train.class_counts().tolist() == [4, 4, 4]
    assert "skipped 2 unreadable image(s)" in caplog.text


def test_max_per_class_in_folder_is_a_seeded_choice(tmp_path: Path):
    root = make_folder(tmp_path / "imgs", per_class=6)
    config = DatasetConfig(source="imagefolder", path=root, image_size=8, max_per_class=3)
    first, _ = load_source(config)
    second, _ = load_source(config)
    assert first.class_counts().tolist() == [3, 3, 3]
    assert torch.equal(first.images, second.images)


def test_only_the_classes_asked_for_are_decoded_in_the_order_given(tmp_path: Path):
    root = make_folder(tmp_path / "imgs", per_class=5)
    (root / "dog" / "notes.png").write_text("not an image")  # would stop the run if dog were decoded
    config = DatasetConfig(source="imagefolder", path=root, image_size=8, classes=["fox", "cat"], max_per_class=3)
    train, test = load_source(config)
    assert train.class_names == ("fox", "cat")
    assert train.class_counts().tolist() == [3, 3]
    split = {"generator_pool": 0.0, "val": 0.34, "test": 0.34}
    splits = prepare_splits(train, test, DatasetConfig.model_validate(config.model_dump() | {"split": split}))
    assert all(part.class_names == ("fox", "cat") for part in splits.values())
    by_index, _ = load_source(config.model_copy(update={"classes": ["2", "0"]}))  # indices of the sorted folders
    assert by_index.class_names == ("fox", "cat")
    # Each class's choice of files depends on the seed and the class alone, not on the other classes asked for.
    alone, _ = load_source(config.model_copy(update={"classes": ["cat"]}))
    assert torch.equal(alone.images, train.images[train.labels == 1])
    with pytest.raises(DataSourceError, match="unknown class name.*unicorn.*known: cat, dog, fox"):
        load_source(config.model_copy(update={"classes": ["cat", "unicorn"]}))


def make_uniform_folder(root: Path, size: tuple[int, int], per_class: int = 3) -> Path:
    for c, name in enumerate(("cat", "dog")):
        for i in range(per_class):
            _save(root / name / f"img{i}.png", "RGB", size=size, value=40 * c + 10)
    return root


def test_folder_of_one_size_keeps_it_when_image_size_is_null(tmp_path: Path):
    train, _ = load_source(DatasetConfig(source="imagefolder", path=make_uniform_folder(tmp_path / "imgs", (24, 24))))
    assert train.images.shape == (6, 3, 24, 24)


def test_shared_non_square_size_keeps_its_shorter_side(tmp_path: Path):
    train, _ = load_source(DatasetConfig(source="imagefolder", path=make_uniform_folder(tmp_path / "imgs", (30, 20))))
    assert train.images.shape == (6, 3, 20, 20)


def test_rotated_jpeg_counts_with_its_upright_size(tmp_path: Path):
    root = make_uniform_folder(tmp_path / "imgs", (30, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 20x30, 30x20 once upright
    Image.new("RGB", (20, 30), (9, 9, 9)).save(root / "dog" / "photo.jpg", exif=exif)
    train, _ = load_source(DatasetConfig(source="imagefolder", path=root))
    assert train.images.shape == (7, 3, 20, 20)


def test_mixed_sizes_with_null_image_size_say_what_to_set(tmp_path: Path):
    root = make_uniform_folder(tmp_path / "imgs", (24, 24))
    _save(root / "dog" / "big.png", "RGB", size=(32, 40))
    with pytest.raises(DataSourceError) as caught:
        load_source(DatasetConfig(source="imagefolder", path=root))
    assert str(caught.value) == (
        f"images in {root} differ in size (cat/img0.png 24x24, dog/big.png 32x40): set dataset.image_size (e.g. 24)"
    )


def test_unreadable_header_is_named_or_skipped_by_the_size_probe(tmp_path: Path):
    root = make_uniform_folder(tmp_path / "imgs", (24, 24))
    (root / "dog" / "notes.png").write_text("not an image")
    with pytest.raises(DataSourceError, match=r"unreadable image .*notes\.png.*dataset\.skip_corrupt"):
        load_source(DatasetConfig(source="imagefolder", path=root))
    train, _ = load_source(DatasetConfig(source="imagefolder", path=root, skip_corrupt=True))
    assert train.images.shape == (6, 3, 24, 24)


def test_size_probe_reads_only_the_files_max_per_class_keeps(tmp_path: Path):
    root = make_uniform_folder(tmp_path / "imgs", (24, 24), per_class=6)
    _save(root / "dog" / "odd.png", "RGB", size=(32, 32))
    seed = next(s for s in range(50) if root / "dog" / "odd.png" not in list_image_folder(root, 3, s).files)
    train, _ = load_source(DatasetConfig(source="imagefolder", path=root, max_per_class=3, seed=seed))
    assert train.images.shape == (6, 3, 24, 24)


def test_train_and_val_folders_resolve_to_one_size(tmp_path: Path):
    make_uniform_folder(tmp_path / "inet" / "train", (24, 24), per_class=4)
    make_uniform_folder(tmp_path / "inet" / "val", (24, 24), per_class=2)
    train, test = load_source(DatasetConfig(source="imagefolder", path=tmp_path / "inet"))
    assert train.images.shape == (8, 3, 24, 24)
    assert test.images.shape == (4, 3, 24, 24)
    (tmp_path / "inet" / "val" / "cat" / "img0.png").unlink()
    _save(tmp_path / "inet" / "val" / "cat" / "img0.png", "RGB", size=(16, 16))
    with pytest.raises(DataSourceError, match=r"train/cat/img0\.png 24x24, val/cat/img0\.png 16x16"):
        load_source(DatasetConfig(source="imagefolder", path=tmp_path / "inet"))


def test_size_chosen_for_null_is_logged(tmp_path: Path, caplog):
    root = make_uniform_folder(tmp_path / "imgs", (30, 20))
    with caplog.at_level(logging.INFO, logger="mind_the_gap.data.prepare"):
        load_source(DatasetConfig(source="imagefolder", path=root))
    assert f"dataset.image_size: null -> 20 px, the shorter side of the 30x20 every image in {root} shares" in (
        caplog.text
    )


def test_native_size_outside_the_allowed_range_asks_for_a_size(tmp_path: Path):
    root = make_uniform_folder(tmp_path / "imgs", (4, 4))
    with pytest.raises(DataSourceError, match=r"every image in .* is 4x4, outside dataset.image_size's range 8-1024"):
        load_source(DatasetConfig(source="imagefolder", path=root))


def test_unknown_class_names_are_listed(fashion_dir: Path):
    config = DatasetConfig(path=fashion_dir, classes=["trouser", "unicorn", "dragon"])
    train, test = load_source(config)
    with pytest.raises(DataSourceError, match="unknown class name.*unicorn, dragon"):
        prepare_splits(train, test, config)


def test_too_few_images_for_the_split_names_the_class(tmp_path: Path):
    make_folder(tmp_path / "imgs", per_class=3)
    _save(tmp_path / "imgs" / "emu" / "only.png", "RGB")
    config = DatasetConfig(source="imagefolder", path=tmp_path / "imgs", image_size=8)
    train, test = load_source(config)
    with pytest.raises(DataSourceError, match=r"too few images .* emu \(1 images\)"):
        prepare_splits(train, test, config)


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="unknown dataset.source 'cifar'"):
        DatasetConfig(source="cifar")


def test_unknown_torchvision_dataset_is_named(tmp_path: Path):
    with pytest.raises(DataSourceError, match="torchvision.datasets has no dataset 'NoSuchSet'"):
        load_source(DatasetConfig(source="torchvision:NoSuchSet", path=tmp_path))


def test_a_set_already_of_the_asked_size_and_channels_is_not_copied():
    images = ImageSet(torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8), torch.arange(6) % 2, ("a", "b"))
    assert convert(images, 8, 3) is images
    assert convert(images, None, None) is images
    grey = convert(images, 4, 1)
    assert grey.images.shape == (6, 1, 4, 4)
    assert grey.images.dtype == torch.uint8


def test_decoding_fills_one_tensor_and_drops_unreadable_rows(tmp_path: Path):
    root = make_folder(tmp_path / "imgs", per_class=3)
    (root / "dog" / "0_broken.png").write_text("not an image")  # first in its class: rows after it move up
    listing = list_image_folder(root, None, 0)
    loaded = load_image_folder(listing, 8, 3, skip_corrupt=True)
    one_by_one = [
        load_image_folder(type(listing)(root, ("one",), (f,), (0,)), 8, 3, False).images[0]
        for f in listing.files
        if f.name != "0_broken.png"
    ]
    assert loaded.class_counts().tolist() == [3, 3, 3]
    assert torch.equal(loaded.images, torch.stack(one_by_one))


def noise_jpegs(root: Path, sizes: list[tuple[int, int]], classes=("cat", "dog")) -> Path:
    """Random-noise JPEGs of odd sizes, so that every crop and resize shows in the pixels."""
    rng = np.random.default_rng(0)
    for name in classes:
        for i, (width, height) in enumerate(sizes):
            (root / name).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)
    return root


def centre_decoded(path: Path, size: int, short_side: int) -> torch.Tensor:
    """The shorter side resized (bicubic) to ``short_side``, then the centre ``size`` px square: by hand."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = short_side / min(image.size)
        width, height = max(short_side, round(image.width * scale)), max(short_side, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0)
        left, top = (width - size) // 2, (height - size) // 2
        return torch.from_numpy(np.asarray(image.crop((left, top, left + size, top + size))).copy()).permute(2, 0, 1)


def test_the_evaluation_crop_resizes_224_px_images_to_256_then_takes_the_centre(tmp_path: Path):
    root = noise_jpegs(tmp_path / "imgs", [(301, 257), (250, 333)], classes=("cat",))
    listing = list_image_folder(root, None, 0)
    evaluated = load_image_folder(listing, 224, 3, skip_corrupt=False, crop=0.875)
    trained = load_image_folder(listing, 224, 3, skip_corrupt=False)
    for row, path in enumerate(listing.files):
        assert torch.equal(evaluated.images[row], centre_decoded(path, 224, 256))
        assert torch.equal(trained.images[row], centre_decoded(path, 224, 224))


def test_eval_crop_decodes_val_and_test_again_and_leaves_training_images_alone(tmp_path: Path):
    sizes = [(31, 23), (27, 35), (40, 29), (33, 33), (45, 26), (29, 38)]
    noise_jpegs(tmp_path / "inet" / "train", sizes)
    noise_jpegs(tmp_path / "inet" / "val", sizes[:2])
    split = {"generator_pool": 0.3, "val": 0.3}
    plain = DatasetConfig(source="imagefolder", path=tmp_path / "inet", image_size=14, split=split)
    cropped = plain.model_copy(update={"eval_crop": 0.875})  # 16 px, then the centre 14
    splits = prepare_splits(*load_source(cropped), cropped)
    before = prepare_splits(*load_source(plain), plain)
    for name in ("generator_pool", "train"):
        assert torch.equal(splits[name].images, before[name].images)
    train_folder = list_image_folder(tmp_path / "inet" / "train", None, 0)
    as_evaluated = load_image_folder(train_folder, 14, 3, skip_corrupt=False, crop=0.875).images
    as_trained = load_image_folder(train_folder, 14, 3, skip_corrupt=False).images
    assert not (as_evaluated == as_trained).flatten(1).all(1).any()  # every file looks different either way
    for image in splits["val"].images:
        assert (as_evaluated == image).flatten(1).all(1).any()
    assert torch.equal(splits["val"].labels, before["val"].labels)
    val_folder = list_image_folder(tmp_path / "inet" / "val", None, 0)
    assert torch.equal(splits["test"].images, load_image_folder(val_folder, 14, 3, False, crop=0.875).images)


def test_eval_crop_cuts_the_test_split_out_of_a_plain_folder_with_it(tmp_path: Path):
    noise_jpegs(tmp_path / "imgs", [(31, 23), (27, 35), (40, 29), (33, 33), (45, 26), (29, 38), (30, 31)])
    config = DatasetConfig(source="imagefolder", path=tmp_path / "imgs", image_size=14, eval_crop=0.875)
    splits = prepare_splits(*load_source(config), config)
    files = list_image_folder(tmp_path / "imgs", None, 0)
    as_evaluated = load_image_folder(files, 14, 3, skip_corrupt=False, crop=0.875).images
    for name in ("val", "test"):
        for image in splits[name].images:
            assert (as_evaluated == image).flatten(1).all(1).any()
    for image in splits["train"].images:
        assert not (as_evaluated == image).flatten(1).all(1).any()


def test_eval_crop_is_for_image_folders_only():
    with pytest.raises(ValueError, match=r"dataset.eval_crop \(0.875\) applies to image folders only"):
        DatasetConfig(source="fashion_mnist", eval_crop=0.875)
    with pytest.raises(ValueError, match="eval_crop"):
        DatasetConfig(source="imagefolder", eval_crop=1.5)


def test_generated_and_real_tensors_are_resized_with_the_decoders_filter():
    images = ImageSet(torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8), torch.arange(3), ("a", "b", "c"))
    expected = F.interpolate(images.images.float(), size=(8, 8), mode="bicubic", antialias=True)
    assert torch.equal(convert(images, 8, None).images, expected.round().clamp(0, 255).to(torch.uint8))
