"""The class-conditional diffusion generator on a toy set of coloured squares: training, determinism, save/load,
guidance, img2img and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.generators.base import ImageRequest, image_seed
from mind_the_gap.generators.class_diffusion import (
    ClassDiffusionConfig,
    ClassDiffusionGenerator,
    ClassDiffusionModel,
    train_class_diffusion,
)

COLOURS = ((230, 40, 40), (40, 230, 40), (40, 40, 230), (230, 230, 40))
SIZE = 14  # not a multiple of 4: exercises padding to 16 and cropping back
TINY = ClassDiffusionConfig(
    block_out_channels=(8, 16, 16),
    norm_num_groups=4,
    steps=150,
    batch_size=32,
    lr=3e-3,
    warmup_steps=5,
    log_every=10,
    sampling_steps=4,
)


def coloured_squares(per_class: int = 16, seed: int = 0) -> ImageSet:
    """A 6x6 square of the class's colour at a random place on a dark background."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(COLOURS)), per_class)
    images = np.full((len(labels), 3, SIZE, SIZE), 20, dtype=np.uint8)
    for image, label, (y, x) in zip(images, labels, rng.integers(0, SIZE - 6, (len(labels), 2)), strict=True):
        image[:, y : y + 6, x : x + 6] = np.array(COLOURS[label], dtype=np.uint8)[:, None, None]
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels), ("red", "green", "blue", "yellow"))


def requests(count: int = 6, init: ImageSet | None = None) -> list[ImageRequest]:
    names = ("red", "green", "blue", "yellow")
    return [
        ImageRequest(
            i % 4,
            names[i % 4],
            i // 4,
            image_seed(7, i % 4, i // 4),
            init_image=None if init is None else init.images[i],
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def trained() -> tuple[ClassDiffusionModel, list[tuple[int, dict[str, float]]]]:
    log: list[tuple[int, dict[str, float]]] = []
    model = train_class_diffusion(coloured_squares(), TINY, progress=False, on_log=lambda s, r: log.append((s, r)))
    return model, log


def test_training_loss_falls(trained) -> None:
    model, log = trained
    assert [step for step, _ in log] == list(range(10, 151, 10))
    assert log[-1][1]["loss"] < 0.5 * log[0][1]["loss"]
    assert (model.num_classes, model.image_size, model.channels) == (4, (SIZE, SIZE), 3)
    assert model.unet.class_embedding.num_embeddings == 5  # the classes and the null class


def test_images_carry_their_class(trained) -> None:
    model, _ = trained
    batch = requests(40)
    images = ClassDiffusionGenerator(model).generate(batch).float()
    square = images.amax(1, keepdim=True) > 120  # pixels brighter than the background
    colour = (images * square).sum((2, 3)) / square.sum((2, 3)).clamp(min=1)
    nearest = torch.cdist(colour, torch.tensor(COLOURS, dtype=torch.float)).argmin(1)
    assert (nearest == torch.tensor([r.class_index for r in batch])).float().mean() >= 0.9


def test_training_is_deterministic() -> None:
    config = TINY.model_copy(update={"steps": 3})
    first, second = (train_class_diffusion(coloured_squares(), config, progress=False) for _ in range(2))
    assert first.fingerprint() == second.fingerprint()
    other = train_class_diffusion(coloured_squares(), config.model_copy(update={"seed": 1}), progress=False)
    assert other.fingerprint() != first.fingerprint()


def test_images_depend_only_on_their_request(trained) -> None:
    model, _ = trained
    batch = requests(6)
    images = ClassDiffusionGenerator(model, batch_size=4).generate(batch)  # batches of 4 and 2
    assert images.dtype == torch.uint8
    assert images.shape == (6, 3, SIZE, SIZE)
    # Alone or in another batch, an image is the same up to a grey level: CPU kernels pick their summation order by
    # batch size, so exact equality across batch sizes is not something float arithmetic can promise.
    alone = ClassDiffusionGenerator(model, batch_size=1).generate(batch[::-1]).flip(0)
    assert (images.int() - alone.int()).abs().max() <= 1
    assert torch.equal(images, ClassDiffusionGenerator(model, batch_size=4).generate(batch))
    assert not torch.equal(images[0], images[4])  # same class, other seed
    assert ClassDiffusionGenerator(model).generate([]).shape == (0, 3, SIZE, SIZE)


def test_save_load_round_trip(trained, tmp_path: Path) -> None:
    model, _ = trained
    model.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["model.json", "unet.safetensors"]
    loaded = ClassDiffusionModel.load(tmp_path / "model")
    assert loaded.config == model.config
    assert loaded.class_names == model.class_names
    original, reloaded = ClassDiffusionGenerator(model), ClassDiffusionGenerator(loaded)
    assert torch.equal(original.generate(requests()), reloaded.generate(requests()))
    assert original.describe() == reloaded.describe()
    with pytest.raises(FileNotFoundError, match="unet.safetensors"):
        ClassDiffusionModel.load(tmp_path)


def test_guidance_scale_changes_images(trained) -> None:
    model, _ = trained
    plain = ClassDiffusionGenerator(model, guidance_scale=1.0)
    guided = ClassDiffusionGenerator(model, guidance_scale=4.0)
    assert not torch.equal(plain.generate(requests()), guided.generate(requests()))
    assert plain.describe()["guidance_scale"] == 1.0
    assert guided.describe()["guidance_scale"] == 4.0


def test_img2img_strength(trained) -> None:
    model, _ = trained
    real = coloured_squares(seed=1)
    batch = requests(6, init=real)
    assert torch.equal(ClassDiffusionGenerator(model, strength=0.0).generate(batch), real.images[:6])
    edited = ClassDiffusionGenerator(model, strength=0.5).generate(batch)
    generated = ClassDiffusionGenerator(model, strength=1.0).generate(batch)
    assert edited.shape == generated.shape == (6, 3, SIZE, SIZE)
    assert not torch.equal(generated, real.images[:6])
    # Half-way noise keeps more of the real image than pure generation does.
    distance = [(images.float() - real.images[:6].float()).abs().mean() for images in (edited, generated)]
    assert distance[0] < distance[1]
    assert torch.equal(edited, ClassDiffusionGenerator(model, strength=0.5, batch_size=1).generate(batch))


def test_describe_is_json_and_complete(trained) -> None:
    model, _ = trained
    description = ClassDiffusionGenerator(model, steps=3, guidance_scale=2.5, strength=0.5).describe()
    assert json.loads(json.dumps(description)) == description
    assert description["backend"] == "class_diffusion"
    assert (description["steps"], description["guidance_scale"], description["strength"]) == (3, 2.5, 0.5)
    assert len(description["weights_sha256"]) == 64


def test_bfloat16_sampling_is_deterministic(trained) -> None:
    model, _ = trained
    generator = ClassDiffusionGenerator(model, precision="bfloat16", batch_size=4)
    images = generator.generate(requests())
    assert torch.equal(images, ClassDiffusionGenerator(model, precision="bfloat16", batch_size=1).generate(requests()))
    assert generator.describe()["precision"] == "bfloat16"


@pytest.mark.parametrize(("capabilities", "expected"), [({}, "float32"), ({"avx512_bf16": True}, "bfloat16")])
def test_auto_precision_is_bfloat16_where_the_cpu_has_it(trained, monkeypatch, capabilities, expected) -> None:
    model, _ = trained
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert ClassDiffusionGenerator(model, precision="auto", device="cpu").describe()["precision"] == expected
    assert ClassDiffusionGenerator(model, precision="float32", device="cpu").describe()["precision"] == "float32"


def test_bad_input_names_the_culprit(trained) -> None:
    model, _ = trained
    generator = ClassDiffusionGenerator(model)
    bad_class = ImageRequest(4, "purple", 0, 1)
    with pytest.raises(ValueError, match="purple/0: class_index 4 outside"):
        generator.generate([bad_class])
    real = coloured_squares()
    with pytest.raises(ValueError, match="needs an init_image"):
        ClassDiffusionGenerator(model, strength=0.5).generate(requests(2))
    wrong_shape = ImageRequest(0, "red", 0, 1, init_image=real.images[0, :1])
    with pytest.raises(ValueError, match=r"red/0: init_image must be uint8 \(3, 14, 14\)"):
        ClassDiffusionGenerator(model, strength=0.5).generate([wrong_shape])
    with pytest.raises(ValueError, match="strength"):
        ClassDiffusionGenerator(model, strength=1.5)
    with pytest.raises(ValueError, match="no denoising step"):
        ClassDiffusionGenerator(model, strength=0.1, steps=4)
    with pytest.raises(ValidationError, match="norm_num_groups"):
        ClassDiffusionConfig(block_out_channels=(8, 12), norm_num_groups=8)
    with pytest.raises(ValidationError, match="extra"):
        ClassDiffusionConfig(unknown=1)
    with pytest.raises(ValueError, match="empty"):
        train_class_diffusion(real.subset(torch.zeros(0, dtype=torch.long)), TINY, progress=False)
