"""BatchNorm statistics per source: each source's images forwarded on their own, the first source's statistics the
model's own, checked against forwards of each source alone; and mixed training with them end to end."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mind_the_gap.data.imageset import ImageView
from mind_the_gap.models.architectures import StudentConfig, build_student
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import Normalization, TeacherModel, fit
from mind_the_gap.training.source_norm import SourceStatistics, part_ids

from ..conftest import striped_images

STUDENT = StudentConfig(width=8)
FAST = TrainConfig(epochs=2, batch_size=16, lr=0.05, warmup_epochs=0, progress=False, batchnorm="per_source")
UNIT = Normalization((0.5,), (0.25,))


def statistics(model: torch.nn.Module) -> list[torch.Tensor]:
    return [
        tensor.clone()
        for module in model.modules()
        if isinstance(module, _BatchNorm)
        for tensor in (module.running_mean, module.running_var)
    ]


def test_each_source_is_normalised_by_its_own_statistics_and_the_first_sources_are_the_models():
    torch.manual_seed(0)
    model = build_student(STUDENT, 3, 1, 16).train()
    real_alone, synthetic_alone = copy.deepcopy(model), copy.deepcopy(model)
    x, source = torch.randn(8, 1, 16, 16), torch.tensor([0, 1, 0, 1, 1, 0, 0, 1])
    per_source = SourceStatistics(model, 2)
    with torch.no_grad():
        logits = per_source.logits(model, x, source)
        real, synthetic = real_alone(x[source == 0]), synthetic_alone(x[source == 1])
    torch.testing.assert_close(logits[source == 0], real)
    torch.testing.assert_close(logits[source == 1], synthetic)
    for ours, theirs in zip(statistics(model), statistics(real_alone), strict=True):
        torch.testing.assert_close(ours, theirs)  # the real images' statistics, untouched by the synthetic ones
    with per_source._active(1):
        for ours, theirs in zip(statistics(model), statistics(synthetic_alone), strict=True):
            torch.testing.assert_close(ours, theirs)


def test_a_source_with_one_image_in_the_batch_is_normalised_by_its_running_statistics():
    torch.manual_seed(0)
    model = build_student(STUDENT, 3, 1, 16).train()
    evaluated = copy.deepcopy(model).eval()
    x, source = torch.randn(5, 1, 16, 16), torch.tensor([0, 0, 1, 0, 0])
    per_source = SourceStatistics(model, 2)
    with torch.no_grad():
        logits = per_source.logits(model, x, source)
        torch.testing.assert_close(logits[2:3], evaluated(x[2:3]))
    with per_source._active(1):
        for ours, theirs in zip(statistics(model), statistics(evaluated), strict=True):
            torch.testing.assert_close(ours, theirs)  # one image updates no statistics
    assert all(module.training for module in model.modules())


def test_mixed_training_keeps_the_first_sources_statistics_and_resumes_them(tmp_path):
    real, synthetic = striped_images(12, seed=0), striped_images(12, seed=1)
    mixed = ImageView(((real, None), (synthetic, None)))
    assert part_ids(mixed.part_sizes).tolist() == [0] * 48 + [1] * 48
    trained, shared, stopped, resumed = (_student() for _ in range(4))  # the same initial weights
    fit(trained, mixed, FAST, seed=0, normalization=UNIT)
    fit(shared, mixed, FAST.model_copy(update={"batchnorm": "shared"}), seed=0, normalization=UNIT)
    assert any(not torch.equal(a, b) for a, b in zip(statistics(trained), statistics(shared), strict=True))
    # Killed after the first epoch and started again: the same student, the other source's statistics resumed.
    progress = tmp_path / "student.progress.pt"
    with pytest.raises(RuntimeError, match="stop"):
        fit(stopped, mixed, FAST, seed=0, normalization=UNIT, progress_file=progress, on_epoch=_stop_after_first)
    fit(resumed, mixed, FAST, seed=0, normalization=UNIT, progress_file=progress)
    for a, b in zip(resumed.state_dict().values(), trained.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _student() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_student(STUDENT, 4, 1, 16)


def _stop_after_first(record: dict[str, float]) -> None:
    raise RuntimeError("stop")


def test_per_source_statistics_need_several_sources_and_no_teacher():
    real = striped_images(8)
    with pytest.raises(ValueError, match="joined from several sets"):
        fit(build_student(STUDENT, 4, 1, 16), real, FAST, seed=0, normalization=UNIT)
    mixed = ImageView(((real, None), (striped_images(8, seed=1), None)))
    teacher = TeacherModel(build_student(STUDENT, 4, 1, 16), UNIT, 2.0)
    with pytest.raises(ValueError, match="teacher"):
        fit(build_student(STUDENT, 4, 1, 16), mixed, FAST, seed=0, normalization=UNIT, teacher=teacher)
