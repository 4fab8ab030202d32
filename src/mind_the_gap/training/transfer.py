"""Students that start from a trained student: some units kept from it, the others trained anew or fine-tuned.

This is the operation behind the paper's experiments: keep the first (or last) units of a student trained on one
source and train the rest on the other (``layer_swap``), or fine-tune the last units of a synthetic-trained
student on a little real data (``data_efficiency``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from mind_the_gap.config import Config
from mind_the_gap.models.architectures import UnitNet
from mind_the_gap.models.units import copy_units, format_units, freeze_units, resolve_units


class TransferConfig(Config):
    """How a student starts from its parent."""

    lower: Literal["frozen", "finetune"] = Field("frozen", description="the kept units: frozen, or fine-tuned")
    lr_scale: float = Field(
        0.1, gt=0, le=1, description="learning rate of units that start from the parent's weights, times training.lr"
    )
    reinit: bool = Field(True, description="the other units: fresh weights (true) or the parent's (false)")


@dataclass(frozen=True)
class Transfer:
    """Start from the student ``parent`` (its key in the student store), keeping its units ``kept``."""

    parent: str
    kept: str
    config: TransferConfig

    def describe(self, model: UnitNet) -> dict[str, Any]:
        """What decides the child's training, for its cache key and its MLflow parameters."""
        kept = format_units(resolve_units(model, self.kept))
        return {"parent": self.parent, "kept": kept, "numbering": model.numbering, **self.config.model_dump()}


def start_from_parent(model: UnitNet, parent: UnitNet, transfer: Transfer) -> dict[str, float]:
    """Give ``model`` (freshly initialised) the parent's kept units, frozen or not, and the parent's other units
    too unless ``reinit``; return the learning-rate scale of every parameter that starts from the parent's weights.
    """
    kept = resolve_units(model, transfer.kept)
    from_parent = kept if transfer.config.reinit else list(range(model.num_units))
    copy_units(parent, model, from_parent)
    if transfer.config.lower == "frozen":
        freeze_units(model, kept)
    owner = model.unit_of_parameter()
    return {name: transfer.config.lr_scale for name, unit in owner.items() if unit in set(from_parent)}
