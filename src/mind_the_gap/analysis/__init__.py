"""Measurements of image sets and trained students, for the normalization and ablations pipelines."""
