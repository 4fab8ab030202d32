"""Kedro datasets of the project: the only place, with the pipelines, that knows Kedro."""

from mind_the_gap.io.datasets import DirectoryDataset, ImageSetDataset

__all__ = ["DirectoryDataset", "ImageSetDataset"]
