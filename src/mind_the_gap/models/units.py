"""Address a student's units by range: freeze, unfreeze, re-initialise and copy them.

A unit range is written as the paper writes it: ``"15-17"``, ``"0-14"``, ``"17"``, ``"15-"`` (to the last
unit), ``"-2"`` (the last two units, as in Python slicing), a comma list of those (``"0,15-17"``), a list of
ints, or a ``range``. A range that names no unit is an error, never an empty selection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

from mind_the_gap.models.architectures import UnitNet, init_weights

UnitSpec = str | int | Iterable[int]

_FORMS = "'3', '0-14', '15-', '-2' or '1,4-6'"


def resolve_units(model: UnitNet, spec: UnitSpec) -> list[int]:
    """The sorted unit indices that ``spec`` names; a clear error for a range that is empty or out of range."""
    n = model.num_units
    if isinstance(spec, int):
        indices = [spec]
    elif isinstance(spec, str):
        indices = [i for item in spec.replace(" ", "").split(",") for i in _parse_item(item, spec, n)]
    else:
        indices = [int(i) for i in spec]
    if not indices:
        raise ValueError(f"unit range {spec!r} names no unit (use {_FORMS})")
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ValueError(f"unit range {spec!r} names unit(s) {bad}, but the model has units 0-{n - 1}")
    return sorted(set(indices))


def _parse_item(item: str, spec: str, n: int) -> list[int]:
    if match := re.fullmatch(r"(\d+)", item):
        return [int(match[1])]
    if match := re.fullmatch(r"-(\d+)", item):
        count = int(match[1])
        if count == 0:
            raise ValueError(f"unit range {spec!r}: '-0' names no unit (the last k units are '-k', k >= 1)")
        return list(range(n - count, n))
    if match := re.fullmatch(r"(\d+)-(\d*)", item):
        first, last = int(match[1]), int(match[2]) if match[2] else n - 1
        if last < first and first < n:
            raise ValueError(f"unit range {spec!r}: '{item}' is empty (its first unit comes after its last)")
        return list(range(first, max(last, first) + 1))
    raise ValueError(f"unit range {spec!r} is not of the form {_FORMS}")


def format_units(indices: Iterable[int]) -> str:
    """The shortest range text for unit indices: [0, 1, 2, 5] -> '0-2,5'."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def freeze_units(model: UnitNet, spec: UnitSpec) -> None:
    """No gradient reaches the parameters of these units, and their normalisation statistics stay fixed."""
    _set_frozen(model, spec, True)


def unfreeze_units(model: UnitNet, spec: UnitSpec) -> None:
    _set_frozen(model, spec, False)


def _set_frozen(model: UnitNet, spec: UnitSpec, frozen: bool) -> None:
    for i in resolve_units(model, spec):
        for module in model.unit(i):
            module.frozen = frozen
            module.requires_grad_(not frozen)
            module.train(model.training and not frozen)


def frozen_units(model: UnitNet) -> list[int]:
    return [i for i in range(model.num_units) if all(getattr(m, "frozen", False) for m in model.unit(i))]


def reinit_units(model: UnitNet, spec: UnitSpec, seed: int) -> None:
    """Fresh initial weights (as at build time) for these units, drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in resolve_units(model, spec):
            for module in model.unit(i):
                init_weights(module)


def copy_units(source: UnitNet, target: UnitNet, spec: UnitSpec) -> None:
    """Copy the weights and buffers (normalisation statistics included) of these units from source to target."""
    if source.unit_paths != target.unit_paths:
        raise ValueError(
            f"cannot copy units between models of {source.num_units} and {target.num_units} units "
            f"({source.numbering} vs {target.numbering} numbering)"
            if source.num_units != target.num_units
            else "cannot copy units between models whose units are different modules"
        )
    for i in resolve_units(source, spec):
        for path in source.unit_paths[i]:
            try:
                target.get_submodule(path).load_state_dict(source.get_submodule(path).state_dict())
            except RuntimeError as exc:
                raise ValueError(f"unit {i} ({path}) differs in shape between source and target: {exc}") from None
