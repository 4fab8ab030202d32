"""The distillation loss against a hand-computed case, its gradient, and the teacher's settings."""

from __future__ import annotations

import math

import pytest
import torch

from mind_the_gap.training.distillation import Teacher, distillation_loss


def test_the_loss_is_t_squared_times_the_kl_divergence_of_the_softened_predictions():
    # Teacher logits (ln 3, 0) at T = 1: p = (3/4, 1/4); student (0, 0): q = (1/2, 1/2).
    # KL(p || q) = 3/4 ln(3/2) + 1/4 ln(1/2).
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    student = torch.zeros(1, 2, requires_grad=True)
    loss = distillation_loss(student, torch.tensor([[math.log(3), 0.0]]), temperature=1.0)
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert student.grad.tolist() == [pytest.approx([-0.25, 0.25])]  # q - p
    # At T = 2 the teacher's logits (2 ln 3, 0) soften to the same p, and T² scales the divergence by 4.
    loss = distillation_loss(torch.zeros(1, 2), torch.tensor([[2 * math.log(3), 0.0]]), temperature=2.0)
    assert loss.item() == pytest.approx(4 * expected)


def test_the_loss_is_zero_on_the_teachers_own_logits_and_averages_over_the_batch():
    logits = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    assert distillation_loss(logits, logits, 3.0).item() == pytest.approx(0, abs=1e-6)
    one = distillation_loss(torch.zeros(1, 2), torch.tensor([[math.log(3), 0.0]]), 1.0)
    two = distillation_loss(torch.zeros(2, 2), torch.tensor([[math.log(3), 0.0], [0.0, 0.0]]), 1.0)
    assert two.item() == pytest.approx(one.item() / 2)


def test_a_teacher_needs_a_positive_temperature():
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        Teacher("key", 0)
    assert Teacher("key", 4.0).describe() == {"teacher": "key", "temperature": 4.0}
