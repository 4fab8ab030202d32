"""The CLIP judge, on a tiny random-weight CLIP saved as a folder and loaded through ``from_pretrained``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mind_the_gap.analysis.clip_judge import ClipJudge, clip_weights_present, save_tiny_clip
from mind_the_gap.data.imageset import ImageSet


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "model")


def test_weights_are_present_in_a_model_folder_and_absent_for_an_uncached_id(tiny_clip: Path, tmp_path: Path):
    assert clip_weights_present(str(tiny_clip))
    assert not clip_weights_present(str(tmp_path))  # a folder without a model
    assert not clip_weights_present("nobody/no-such-clip-model")


def test_the_confidence_is_the_probability_of_each_images_own_class(tiny_clip: Path):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8, generator=generator)  # grey, another size
    names = ("coat", "bag", "sandal")
    judge = ClipJudge(str(tiny_clip), list(names), torch.device("cpu"), batch_size=2)
    per_class = torch.stack(
        [judge.confidence(ImageSet(images, torch.full((5,), label), names)) for label in range(len(names))], 1
    )
    assert per_class.shape == (5, 3)
    assert per_class.sum(1) == pytest.approx(torch.ones(5), abs=1e-5)  # a softmax over the classes' prompts
    assert (per_class > 0).all()
    mixed = judge.confidence(ImageSet(images, torch.tensor([0, 1, 2, 0, 1]), names))
    assert mixed == pytest.approx(per_class[torch.arange(5), torch.tensor([0, 1, 2, 0, 1])], abs=1e-6)
