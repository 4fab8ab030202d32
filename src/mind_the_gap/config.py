"""The base of every parameter model: unknown keys are errors, and the printed form is compact JSON."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Config(BaseModel):
    # str() is what MLflow records for a parameter object (kedro-mlflow logs node parameters with it).
    model_config = ConfigDict(extra="forbid")

    def __str__(self) -> str:
        return self.model_dump_json()
