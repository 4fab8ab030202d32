"""The per-unit profile's samples and the students CKA compares."""

from __future__ import annotations

from mind_the_gap.analysis.profile import cka_pairs, spread

from ..conftest import striped_images


def test_spread_takes_every_kth_image_in_order():
    data = striped_images(10)  # 40 images
    sample = spread(data, 8)
    assert len(sample) == 8
    assert sample.images.equal(data.images[0:40:5])
    assert len(spread(data, 100)) == 40  # never more than the set holds


def test_cka_compares_sources_within_a_seed_and_across_seeds_and_each_source_across_seeds():
    pairs = cka_pairs([0, 1, 2])
    assert pairs["cka_real_synthetic"] == [
        (("real", 0), ("synthetic", 0)),
        (("real", 1), ("synthetic", 1)),
        (("real", 2), ("synthetic", 2)),
    ]
    assert pairs["cka_real_synthetic_across_seeds"] == [  # real seed i vs synthetic seed j != i, every ordered pair
        (("real", 0), ("synthetic", 1)),
        (("real", 0), ("synthetic", 2)),
        (("real", 1), ("synthetic", 0)),
        (("real", 1), ("synthetic", 2)),
        (("real", 2), ("synthetic", 0)),
        (("real", 2), ("synthetic", 1)),
    ]
    assert pairs["cka_real_real"] == [  # the same rule, each pair once: CKA is symmetric
        (("real", 0), ("real", 1)),
        (("real", 0), ("real", 2)),
        (("real", 1), ("real", 2)),
    ]
    assert len(pairs["cka_synthetic_synthetic"]) == 3


def test_every_pair_across_seeds_shares_no_seed():
    pairs = cka_pairs([3, 5, 8, 13])
    for name in ("cka_real_synthetic_across_seeds", "cka_real_real", "cka_synthetic_synthetic"):
        assert all(a[1] != b[1] for a, b in pairs[name]), name
    assert len(pairs["cka_real_synthetic_across_seeds"]) == 4 * 3
    assert len(pairs["cka_real_real"]) == 4 * 3 // 2


def test_one_seed_has_no_pair_across_seeds():
    pairs = cka_pairs([5])
    assert pairs["cka_real_synthetic"] == [(("real", 5), ("synthetic", 5))]
    assert pairs["cka_real_synthetic_across_seeds"] == []
    assert pairs["cka_real_real"] == []  # no reference level
