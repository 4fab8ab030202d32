"""The tiny study of the pipelines' tests: baseline students to start others from, and an MLflow database."""

from ..pipelines.conftest import tiny, tracking, tracking_uri  # noqa: F401
