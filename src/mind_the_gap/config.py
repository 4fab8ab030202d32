"""The base of every parameter model (unknown keys are errors, the printed form is compact JSON), and nested
parameters as the dotted keys MLflow records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    # str() is what MLflow records for a parameter object (kedro-mlflow logs node parameters with it).
    model_config = ConfigDict(extra="forbid")

    def __str__(self) -> str:
        return self.model_dump_json()


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested parameters as dotted keys: {"training": {"lr": 0.1}} -> {"training.lr": 0.1}."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat
