"""Fidelity and diversity: the k-nearest-neighbour manifolds on hand-computed sets, the per-class samples, the
summary over judges."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from mind_the_gap.analysis.fidelity import Manifold, class_groups, manifold, summarize_sets, summary_values


def test_manifold_of_a_hand_computed_case():
    # Real points 0, 1, 2, 3: each one's nearest neighbour (k=1) is 1 away. Generated points 0.5 and 10: each one's
    # nearest generated neighbour is 9.5 away. 0.5 lies in the balls of 0 and 1, 10 in none: precision 1/2, density
    # 2 / (1 * 2). The ball of 0.5 (9.5) holds every real point: recall 1. Real 0 and 1 have 0.5 within 1, 2 and 3
    # do not: coverage 1/2.
    real, generated = torch.tensor([[0.0], [1.0], [2.0], [3.0]]), torch.tensor([[0.5], [10.0]])
    assert manifold(real, generated, k=1) == Manifold(precision=0.5, recall=1.0, density=1.0, coverage=0.5)


def test_a_mode_crowding_set_has_high_density_and_low_coverage_and_recall():
    real = torch.tensor([[float(i)] for i in range(10)])  # radius at k = 2: 1 inside, 2 at the ends
    crowded = torch.full((6, 1), 4.0)  # every generated image on one real one: their own radii are 0
    measured = manifold(real, crowded, k=2)
    assert measured.precision == 1
    assert measured.density == pytest.approx(1.5)  # each lies in the balls of 3, 4 and 5: 3 * 6 / (2 * 6)
    assert measured.coverage == pytest.approx(0.3)  # 3, 4 and 5 have one within their radius
    assert measured.recall == pytest.approx(0.1)  # the generated balls (radius 0) hold the real 4 alone


def test_a_set_drawn_like_the_real_one_reaches_the_expected_density_and_coverage():
    generator = torch.Generator().manual_seed(0)
    real, generated = torch.randn(2000, 2, generator=generator), torch.randn(2000, 2, generator=generator)
    measured = manifold(real, generated, k=3)
    assert measured.density == pytest.approx(1.0, abs=0.05)
    assert measured.coverage == pytest.approx(1 - 2**-3, abs=0.03)


def test_manifold_rejects_too_few_images_and_mismatched_features():
    with pytest.raises(ValueError, match="more than 5 images"):
        manifold(torch.zeros(5, 2), torch.zeros(9, 2), k=5)
    with pytest.raises(ValueError, match="one D"):
        manifold(torch.zeros(9, 2), torch.zeros(9, 3), k=1)


def test_class_groups_names_the_set_and_the_class_that_is_too_small():
    labels = torch.tensor([0] * 8 + [1] * 2 + [2] * 8)
    with pytest.raises(ValueError, match="'guidance 1' has 2 images of class 1"):
        class_groups(labels, 3, 4, "guidance 1", least=2)
    with pytest.raises(ValueError, match="'real' has 0 images of class 3"):  # a class the set lacks entirely
        class_groups(labels, 4, 4, "real", least=1)
    groups = class_groups(torch.tensor([1, 0, 1, 0, 1, 0]), 2, 2, "real", least=1)
    assert [len(g) for g in groups] == [2, 2]
    assert [int(torch.tensor([1, 0, 1, 0, 1, 0])[g[0]]) for g in groups] == [0, 1]


def test_summarize_sets_averages_classes_per_judge_then_judges():
    rows = []
    for seed, spread in ((0, 2.0), (1, 4.0)):
        for label, precision in (("a", 0.2), ("b", 0.4 + seed * 0.2)):
            rows.append(
                {
                    "judge_seed": seed,
                    "set": "real",
                    "class": label,
                    "recognisability": math.nan,
                    "within_class_spread": spread,
                    "precision": 1.0,
                    "recall": 1.0,
                    "density": 1.0,
                    "coverage": 0.9,
                    "frechet_distance": 0.1,
                }
            )
            rows.append(
                {
                    "judge_seed": seed,
                    "set": "guidance 1",
                    "class": label,
                    "recognisability": 0.5,
                    "within_class_spread": spread / 2,
                    "precision": precision,
                    "recall": 0.5,
                    "density": 0.7,
                    "coverage": 0.6,
                    "frechet_distance": 2.0,
                }
            )
    summary = summarize_sets(pd.DataFrame(rows)).set_index("set")
    assert summary.index.tolist() == ["real", "guidance 1"]
    assert summary.loc["guidance 1", "judges"] == 2
    # Per judge the precision averages 0.3 and 0.4; their mean 0.35, CI t(0.975, 1) * 0.05 / sqrt(2) * sqrt(2).
    assert summary.loc["guidance 1", "precision_mean"] == pytest.approx(0.35)
    assert summary.loc["guidance 1", "precision_ci95"] == pytest.approx(12.7062047 * 0.05, rel=1e-6)
    assert summary.loc["guidance 1", "share_of_real_mean"] == pytest.approx(0.5)
    assert summary.loc["guidance 1", "share_of_real_ci95"] == 0
    assert math.isnan(summary.loc["real", "recognisability_mean"])
    values = summary_values(summary.reset_index())
    assert values["guidance 1.precision"] == pytest.approx(0.35)
    assert values["real.share_of_real"] == 1
