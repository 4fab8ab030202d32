"""Statistics over seeds: means with their 95% confidence intervals, per group of a runs table."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t confidence interval (NaN for fewer than two values)."""
    array = np.asarray(values, dtype=float)
    if array.size < 2:
        return float(array.mean()) if array.size else math.nan, math.nan
    half_width = stats.t.ppf(0.975, array.size - 1) * array.std(ddof=1) / math.sqrt(array.size)
    return float(array.mean()), float(half_width)


def summarize(results: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per group: n, and for each metric its mean and 95% CI half-width."""
    rows = []
    for keys, group in results.groupby(list(by), sort=False):
        row = dict(zip(by, keys if isinstance(keys, tuple) else (keys,), strict=True))
        row["n"] = len(group)
        for metric in metrics:
            row[f"{metric}_mean"], row[f"{metric}_ci95"] = mean_ci95(group[metric].tolist())
        rows.append(row)
    return pd.DataFrame(rows)
