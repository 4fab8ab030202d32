"""Distillation: a student learns a teacher's softened predictions instead of hard labels (Hinton et al., 2015)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Teacher:
    """Learn from the stored student ``key``'s predictions (on the same augmented batch), softened at
    ``temperature``."""

    key: str
    temperature: float

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"a teacher's temperature must be positive, got {self.temperature}")

    def describe(self) -> dict[str, Any]:
        """What decides the student's training, for its cache key and its MLflow parameters."""
        return {"teacher": self.key, "temperature": self.temperature}


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch; T² keeps the gradients' scale
    as T changes (Hinton et al., 2015). Computed in float32 whatever the autocast precision."""
    student = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2
