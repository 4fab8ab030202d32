"""Paired statistics against cases worked out by hand.

With 3 seeds (2 degrees of freedom) Student's t has a closed form: P(|T| > t) = 1 - t / sqrt(2 + t²), so the 95%
quantile solves t / sqrt(2 + t²) = 0.95: t² = 2 * 0.95² / (1 - 0.95²) = 1.805 / 0.0975 = 18.5128..., t = 4.30265.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mind_the_gap.analysis.statistics import (
    DELTA,
    FIELLER,
    by_seed,
    gap_recovered,
    holm,
    mean_ci95,
    paired_columns,
    paired_difference,
    summarize,
    with_holm,
)

T95_DF2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))


def test_the_t_quantile_of_two_degrees_of_freedom_is_the_closed_form():
    assert T95_DF2 == pytest.approx(4.302653, abs=1e-6)


def test_a_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    # Differences per seed: 0.10, 0.05, 0.15. Mean 0.10; deviations 0, -0.05, 0.05: variance 0.005 / 2 = 0.0025,
    # sd 0.05, standard error 0.05 / sqrt(3) = 0.028868; half-width 4.30265 * 0.028868 = 0.124207.
    # t = 0.10 / 0.028868 = 3.4641 (sqrt 12); p = 1 - 3.4641 / sqrt(2 + 12) = 1 - 0.925820 = 0.074180.
    difference = paired_difference([0.90, 0.80, 0.85], [0.80, 0.75, 0.70])
    assert difference.mean == pytest.approx(0.10)
    assert difference.ci95 == pytest.approx(0.124207, abs=1e-6)
    assert difference.n == 3
    assert difference.p == pytest.approx(1 - math.sqrt(12) / math.sqrt(14), abs=1e-9)
    assert difference.p == pytest.approx(0.074180, abs=1e-6)


def test_pairing_is_narrower_than_the_unpaired_means_where_seeds_move_together():
    # Seed effects shared by both arms cancel: differences 0.02, 0.03, 0.02, mean 0.023333, deviations -1/300,
    # 2/300, -1/300: variance (6 / 90000) / 2, sd 0.0057735, half-width 4.30265 * 0.0057735 / sqrt(3) = 0.014342,
    # where either arm's own interval (sd 0.05) is 4.30265 * 0.05 / sqrt(3) = 0.124207 wide on each side.
    difference = paired_difference([0.87, 0.83, 0.92], [0.85, 0.80, 0.90])
    assert difference.mean == pytest.approx(0.07 / 3)
    assert difference.ci95 == pytest.approx(0.014342, abs=1e-6)
    assert mean_ci95([0.85, 0.80, 0.90])[1] == pytest.approx(0.124207, abs=1e-6)


def test_differences_without_spread_have_no_p_value():
    assert math.isnan(paired_difference([0.9, 0.8], [0.9, 0.8]).p)  # identical arms


def test_a_single_pair_has_a_difference_but_no_interval():
    difference = paired_difference([0.9], [0.8])
    assert (difference.mean, difference.n) == (pytest.approx(0.1), 1)
    assert math.isnan(difference.ci95)
    assert math.isnan(difference.p)


def test_gap_recovered_with_a_constant_denominator_is_the_numerators_interval_scaled():
    # b = high - low = 0.4 on every seed (no variance): Fieller's quadratic is b̄² r² - 2 ā b̄ r + ā² - t² v_aa,
    # its roots (ā ± t sqrt(v_aa)) / b̄. a = cell - low = 0.2, 0.3, 0.4: ā = 0.3, sd 0.1, sqrt(v_aa) = 0.1 / sqrt(3).
    # Estimate 0.3 / 0.4 = 0.75; half-width 4.30265 * 0.057735 / 0.4 = 0.621034.
    low = [0.5, 0.5, 0.5]
    ratio = gap_recovered([0.7, 0.8, 0.9], low, [0.9, 0.9, 0.9])
    half_width = T95_DF2 * 0.1 / math.sqrt(3) / 0.4
    assert half_width == pytest.approx(0.621034, abs=1e-6)
    assert ratio.estimate == pytest.approx(0.75)
    assert (ratio.low, ratio.high) == pytest.approx((0.75 - half_width, 0.75 + half_width))
    assert (ratio.n, ratio.method) == (3, FIELLER)


def test_fieller_interval_ends_solve_its_defining_equation():
    # a = 0.20, 0.10, 0.15 (cell - low), b = 0.30, 0.20, 0.30 (high - low): ā = 0.15, b̄ = 0.8 / 3.
    # Deviations of a: 0.05, -0.05, 0; of b: 0.1 / 3, -0.2 / 3, 0.1 / 3. Variances of the means (divide by n - 1 = 2,
    # then by n = 3): v_aa = 0.005 / 6, v_bb = (0.06 / 9) / 6, v_ab = (0.005 / 3 + 0.01 / 3) / 6 = 0.005 / 6.
    # b̄² = 0.0711 > t² v_bb = 18.5128 * 0.001111 = 0.02057: bounded. Each end r solves
    # (ā - r b̄)² = t² (v_aa - 2 r v_ab + r² v_bb); the estimate is 0.15 / 0.2667 = 0.5625.
    cell, low, high = [0.7, 0.6, 0.65], [0.5, 0.5, 0.5], [0.8, 0.7, 0.8]
    ratio = gap_recovered(cell, low, high)
    mean_a, mean_b = 0.15, 0.8 / 3
    v_aa, v_bb, v_ab = 0.005 / 6, (0.06 / 9) / 6, 0.005 / 6
    assert ratio.estimate == pytest.approx(0.5625)
    assert ratio.method == FIELLER
    for end in (ratio.low, ratio.high):
        assert (mean_a - end * mean_b) ** 2 == pytest.approx(T95_DF2**2 * (v_aa - 2 * end * v_ab + end**2 * v_bb))
    assert ratio.low < ratio.estimate < ratio.high
    # Worked out: A = b̄² - t² v_bb = 0.050541, B = ā b̄ - t² v_ab = 0.024573, C = ā² - t² v_aa = 0.007073,
    # roots (B ± sqrt(B² - A C)) / A = 0.17564 and 0.79674.
    quadratic = mean_b**2 - T95_DF2**2 * v_bb
    linear = mean_a * mean_b - T95_DF2**2 * v_ab
    constant = mean_a**2 - T95_DF2**2 * v_aa
    root = math.sqrt(linear**2 - quadratic * constant)
    assert (ratio.low, ratio.high) == pytest.approx(((linear - root) / quadratic, (linear + root) / quadratic))
    assert (ratio.low, ratio.high) == pytest.approx((0.17564, 0.79674), abs=1e-5)


def test_an_unbounded_fieller_set_falls_back_to_the_delta_method_and_says_so():
    # b = 0.10, -0.05, 0.20: b̄ = 0.25 / 3 = 0.08333, its t-interval includes 0 (b̄² = 0.00694 < t² v_bb). a = 0.05,
    # 0.05, 0.05 (no variance), so the delta method's half-width is t * r * sqrt(v_bb) / |b̄| with r = ā / b̄ = 0.6.
    # v_bb: deviations 0.01667, -0.13333, 0.11667; squares sum 0.031667; / 2 / 3 = 0.0052778.
    ratio = gap_recovered([0.55, 0.55, 0.55], [0.5, 0.5, 0.5], [0.6, 0.45, 0.7])
    v_bb = 0.031666667 / 6
    assert ratio.estimate == pytest.approx(0.6)
    assert ratio.method == DELTA
    half_width = T95_DF2 * 0.6 * math.sqrt(v_bb) / (0.25 / 3)
    assert (ratio.low, ratio.high) == pytest.approx((0.6 - half_width, 0.6 + half_width), rel=1e-6)


def test_gap_recovered_without_a_gap_is_undefined():
    ratio = gap_recovered([0.7, 0.8], [0.5, 0.6], [0.5, 0.6])
    assert math.isnan(ratio.estimate)
    # Equal accuracies whose differences round to about 1e-17, not to 0: still no gap, not a ratio of 1e16.
    rounded = gap_recovered([0.3, 0.3], [0.15, 0.05], [0.2, 0.0])
    assert math.isnan(rounded.estimate)
    assert math.isnan(rounded.low)


def test_holm_multiplies_the_ith_smallest_by_m_minus_i_plus_1_and_keeps_the_order():
    # Sorted: 0.01 * 4 = 0.04; 0.03 * 3 = 0.09; 0.04 * 2 = 0.08, raised to 0.09; 0.2 * 1 = 0.2.
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_holm_leaves_untested_comparisons_out_of_the_family():
    adjusted = holm([0.02, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.04)  # m = 2, not 3
    assert math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.04)


def test_by_seed_pairs_on_the_seeds_every_table_has():
    treated = pd.DataFrame({"seed": [2, 0, 1], "test_accuracy": [0.3, 0.1, 0.2]})
    reference = pd.DataFrame({"seed": [0, 1, 5], "test_accuracy": [0.0, 0.5, 0.9]})
    a, b = by_seed(treated, reference)
    np.testing.assert_array_equal(a, [0.1, 0.2])
    np.testing.assert_array_equal(b, [0.0, 0.5])


def test_paired_columns_and_holm_columns_name_themselves():
    columns = paired_columns("gap_pp", paired_difference([0.90, 0.80, 0.85], [0.80, 0.75, 0.70]))
    assert columns["gap_pp"] == pytest.approx(10.0)
    assert columns["gap_pp_ci95"] == pytest.approx(12.4207, abs=1e-4)
    assert columns["gap_pp_n"] == 3
    table = with_holm(pd.DataFrame({"x_p": [0.01, 0.04]}), "x")
    assert table["x_p_holm"].tolist() == pytest.approx([0.02, 0.04])


def test_a_group_with_a_missing_key_is_summarized_not_dropped():
    # A synthetic->synthetic control trains no unit on real data: its empty real_units reads back from CSV as NaN.
    runs = pd.DataFrame({"cell": ["a", "b", "b"], "real_units": ["0-4", math.nan, math.nan], "x": [0.5, 0.6, 0.8]})
    summary = summarize(runs, by=["cell", "real_units"], metrics=["x"])
    assert summary["cell"].tolist() == ["a", "b"]
    assert summary["x_mean"].tolist() == pytest.approx([0.5, 0.7])
