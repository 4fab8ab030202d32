"""Statistics over seeds: means with their 95% confidence intervals per group of a runs table, and comparisons paired
by seed (students of one seed share initial weights and batch order): the paired difference, the share of a gap
recovered with Fieller's interval, and Holm's correction for a family of comparisons.

With three seeds a bootstrap has ten distinct resamples, so every interval here is t-based.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

FIELLER = "fieller"
DELTA = "delta (Fieller unbounded)"  # the denominator's interval includes 0: Fieller's set is no finite interval
NO_GAP = 1e-12  # a mean gap below this (rounding of equal accuracies) has no share to recover


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t confidence interval (NaN for fewer than two values)."""
    array = np.asarray(values, dtype=float)
    if array.size < 2:
        return float(array.mean()) if array.size else math.nan, math.nan
    half_width = _t95(array.size) * array.std(ddof=1) / math.sqrt(array.size)
    return float(array.mean()), float(half_width)


def summarize(results: pd.DataFrame, by: Sequence[str], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per group: n, and for each metric its mean and 95% CI half-width. A missing key is a group of its
    own (a runs table read back from CSV has NaN where a column was empty): no student is left out."""
    rows = []
    for keys, group in results.groupby(list(by), sort=False, dropna=False):
        row = dict(zip(by, keys if isinstance(keys, tuple) else (keys,), strict=True))
        row["n"] = len(group)
        for metric in metrics:
            row[f"{metric}_mean"], row[f"{metric}_ci95"] = mean_ci95(group[metric].tolist())
        rows.append(row)
    return pd.DataFrame(rows)


def _t95(n: int) -> float:
    """The two-sided 95% quantile of Student's t for the mean of ``n`` values."""
    return float(stats.t.ppf(0.975, n - 1))


@dataclass(frozen=True)
class PairedDifference:
    """The mean of per-seed differences, the half-width of its 95% t-interval, the number of pairs and the two-sided
    p-value of a paired t-test (NaN interval and p for fewer than two pairs, or differences without spread)."""

    mean: float
    ci95: float
    n: int
    p: float


def paired_difference(treated: Sequence[float], reference: Sequence[float]) -> PairedDifference:
    """``treated - reference``, the two aligned by seed."""
    differences = np.asarray(treated, dtype=float) - np.asarray(reference, dtype=float)
    n = differences.size
    mean, ci95 = mean_ci95(differences)
    spread = differences.std(ddof=1) if n > 1 else 0.0
    p = float(2 * stats.t.sf(abs(mean) / (spread / math.sqrt(n)), n - 1)) if spread > 0 else math.nan
    return PairedDifference(mean, ci95, n, p)


@dataclass(frozen=True)
class Ratio:
    """A ratio of mean paired differences with its 95% interval; ``method`` says how the interval was had:
    Fieller's theorem, or the delta method where Fieller's set is unbounded."""

    estimate: float
    low: float
    high: float
    n: int
    method: str


def gap_recovered(cell: Sequence[float], low: Sequence[float], high: Sequence[float]) -> Ratio:
    """(cell - low) / (high - low), the three aligned by seed: 0 at the ``low`` reference, 1 at the ``high``.

    The estimate is mean(cell - low) / mean(high - low), NaN where that gap is zero (to rounding). Fieller's 95%
    interval is the set of ratios r for which mean(a) - r mean(b) (a = cell - low, b = high - low per seed) is within
    its t-interval of zero:
    (ā - r b̄)² <= t² (v_aa - 2 r v_ab + r² v_bb), v the (co)variances of the means. It is a finite interval when the
    denominator's mean is significantly non-zero (b̄² > t² v_bb); where it is not, the delta method's
    r ± t sqrt(v_aa - 2 r v_ab + r² v_bb) / |b̄| is given instead, and ``method`` says so.
    """
    a = np.asarray(cell, dtype=float) - np.asarray(low, dtype=float)
    b = np.asarray(high, dtype=float) - np.asarray(low, dtype=float)
    n = a.size
    if n == 0 or abs(b.mean()) < NO_GAP:
        return Ratio(math.nan, math.nan, math.nan, n, FIELLER)
    mean_a, mean_b = float(a.mean()), float(b.mean())
    ratio = mean_a / mean_b
    if n < 2:
        return Ratio(ratio, math.nan, math.nan, n, FIELLER)
    covariance = np.cov(a, b, ddof=1) / n  # of the means
    v_aa, v_ab, v_bb = covariance[0, 0], covariance[0, 1], covariance[1, 1]
    t2 = _t95(n) ** 2
    quadratic = mean_b**2 - t2 * v_bb
    if quadratic > 0:
        linear = mean_a * mean_b - t2 * v_ab
        constant = mean_a**2 - t2 * v_aa
        root = math.sqrt(max(linear**2 - quadratic * constant, 0.0))
        return Ratio(ratio, (linear - root) / quadratic, (linear + root) / quadratic, n, FIELLER)
    half_width = math.sqrt(t2 * max(v_aa - 2 * ratio * v_ab + ratio**2 * v_bb, 0.0)) / abs(mean_b)
    return Ratio(ratio, ratio - half_width, ratio + half_width, n, DELTA)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family's p-values, in their order: the i-th smallest times (m - i + 1),
    never below the one before it, at most 1. NaN p-values stay NaN and do not count in the family's size m."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def by_seed(*runs: pd.DataFrame, metric: str = "test_accuracy") -> list[np.ndarray]:
    """Each table's ``metric`` on the seeds all of them share, in the order of those seeds: the pairing."""
    series = [rows.groupby("seed")[metric].mean() for rows in runs]
    seeds = sorted(set.intersection(*(set(s.index) for s in series)))
    return [s.loc[seeds].to_numpy(dtype=float) for s in series]


def paired_columns(name: str, difference: PairedDifference, scale: float = 100.0) -> dict[str, float]:
    """A paired difference as a table's columns: ``name`` (the mean, times ``scale``: points for accuracies),
    ``name_ci95``, ``name_n`` and ``name_p``."""
    return {
        name: scale * difference.mean,
        f"{name}_ci95": scale * difference.ci95,
        f"{name}_n": difference.n,
        f"{name}_p": difference.p,
    }


def ratio_columns(name: str, ratio: Ratio) -> dict[str, float | str]:
    """A ratio as a table's columns: ``name``, ``name_low``, ``name_high`` and ``name_method``."""
    return {name: ratio.estimate, f"{name}_low": ratio.low, f"{name}_high": ratio.high, f"{name}_method": ratio.method}


def with_holm(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """``table`` with ``name_p_holm``: its ``name_p`` column Holm-corrected as one family."""
    return table.assign(**{f"{name}_p_holm": holm(table[f"{name}_p"].tolist()) if len(table) else []})
