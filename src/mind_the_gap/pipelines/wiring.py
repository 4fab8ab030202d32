"""Wiring shared by the pipelines: one node function for every cell of a grid, and the study node."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from kedro.pipeline import Node

from mind_the_gap.experiments.study import build_study
from mind_the_gap.runners.grid import PER_CELL


def bind(func: Callable[..., Any], **fixed: Any) -> Callable[..., Any]:
    """``func`` with some arguments fixed: one node function serves every cell of a grid.

    Unlike ``functools.partial`` it keeps the name, the docstring and, without the fixed arguments, the signature
    and type hints, which Kedro reads to map inputs and validate parameters.
    """

    signature = inspect.signature(func)
    signature = signature.replace(parameters=[p for p in signature.parameters.values() if p.name not in fixed])

    def bound(*args: Any, **kwargs: Any) -> Any:
        return func(**signature.bind(*args, **kwargs).arguments, **fixed)

    functools.update_wrapper(bound, func)
    bound.__signature__ = signature
    bound.__annotations__ = {k: v for k, v in func.__annotations__.items() if k not in fixed}
    return bound


def study_node() -> Node:
    """The node that bundles what every student shares into ``study``, in every pipeline that trains or reads
    students. It is cheap and kept in memory (``copy_mode: assign`` in the catalog: one object, never copied); a
    distributed runner runs it in every cell that reads it (its ``per_cell`` tag)."""
    return Node(
        build_study,
        ["real_val", "real_test", "student_store", "real_statistics", "params:student", "params:training"],
        "study",
        name="build_study",
        tags=[PER_CELL],
    )
