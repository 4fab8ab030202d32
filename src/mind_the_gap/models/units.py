"""Address a student's units by range: freeze, unfreeze, re-initialise and copy them.

A unit range is written as the paper writes it: ``"15-17"``, ``"0-14"``, ``"17"``, ``"15-"`` (to the last
unit), ``"-2"`` (the last two units, as in Python slicing), a list of ints, or a ``range``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from mind_the_gap.models.students import UnitNet, init_weights

UnitSpec = str | int | Iterable[int]


def resolve_units(model: UnitNet, spec: UnitSpec) -> list[int]:
    """The sorted unit indices that ``spec`` names; a clear error for any out of range."""
    n = model.num_units
    if isinstance(spec, int):
        indices = [spec]
    elif isinstance(spec, str):
        text = spec.replace(" ", "")
        try:
            if text.startswith("-"):
                indices = list(range(n - int(text[1:]), n))
            elif "-" in text:
                first, last = text.split("-", 1)
                indices = list(range(int(first), int(last) + 1 if last else n))
            elif "," in text:
                indices = [int(t) for t in text.split(",")]
            else:
                indices = [int(text)] if text else []
        except ValueError:
            raise ValueError(f"unit range {spec!r} is not of the form '3', '0-14', '15-', '-2' or '1,4,7'") from None
    else:
        indices = [int(i) for i in spec]
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ValueError(f"unit range {spec!r} names unit(s) {bad}, but the model has units 0-{n - 1}")
    return sorted(set(indices))


def freeze_units(model: UnitNet, spec: UnitSpec) -> None:
    """No gradient reaches the parameters of these units, and their normalisation statistics stay fixed."""
    _set_frozen(model, spec, True)


def unfreeze_units(model: UnitNet, spec: UnitSpec) -> None:
    _set_frozen(model, spec, False)


def _set_frozen(model: UnitNet, spec: UnitSpec, frozen: bool) -> None:
    for i in resolve_units(model, spec):
        unit = model[i]
        unit.frozen = frozen
        unit.requires_grad_(not frozen)
        unit.train(model.training and not frozen)


def frozen_units(model: UnitNet) -> list[int]:
    return [i for i, unit in enumerate(model) if getattr(unit, "frozen", False)]


def reinit_units(model: UnitNet, spec: UnitSpec, seed: int) -> None:
    """Fresh initial weights (as at build time) for these units, drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in resolve_units(model, spec):
            init_weights(model[i])


def copy_units(source: UnitNet, target: UnitNet, spec: UnitSpec) -> None:
    """Copy the weights and buffers (normalisation statistics included) of these units from source to target."""
    if source.num_units != target.num_units:
        raise ValueError(f"cannot copy units between models of {source.num_units} and {target.num_units} units")
    for i in resolve_units(source, spec):
        try:
            target[i].load_state_dict(source[i].state_dict())
        except RuntimeError as exc:
            raise ValueError(f"unit {i} differs in shape between source and target: {exc}") from None
