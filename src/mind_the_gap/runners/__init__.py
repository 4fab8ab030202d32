"""Runners beyond Kedro's own: ``kedro run --runner mind_the_gap.runners.DaskRunner``."""

from mind_the_gap.runners.dask import DaskRunner

__all__ = ["DaskRunner"]
