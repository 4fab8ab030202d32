"""The normalization pipeline's nodes on tiny data: input statistics, the per-unit profile, and the students
normalised otherwise or adapted with AdaBN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mind_the_gap.analysis import profile
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments.normalization import NormalizationConfig
from mind_the_gap.pipelines.normalization.nodes import (
    compare_normalizations,
    measure_input_statistics,
    profile_units,
    train_with_synthetic_statistics,
)
from mind_the_gap.pipelines.normalization.pipeline import create_pipeline
from mind_the_gap.results.sections import study_report

from .conftest import BASELINE_SEEDS, TinyExperiment

CONFIG = NormalizationConfig(seeds=BASELINE_SEEDS, analysis_images=32, probe_images=48)


def test_input_statistics_per_class_and_channel_against_hand_computed_ones(tiny: TinyExperiment):
    brighter = ImageSet(
        (tiny.real_train.images.int() // 2 + 100).byte(), tiny.real_train.labels, tiny.real_train.class_names
    )
    table, figure, metrics = measure_input_statistics(tiny.real_train, brighter)
    overall = table[table["class"] == "all"].iloc[0]
    real, other = tiny.real_train.images.double() / 255, brighter.images.double() / 255
    assert overall["real_mean"] == pytest.approx(real.mean().item())
    assert overall["synthetic_std"] == pytest.approx(other.std(unbiased=False).item())
    assert overall["wasserstein"] > 0.1
    assert table["class"].tolist() == ["all", *tiny.real_train.class_names]
    # The histograms: a panel for all images, then one per class, each a real and a synthetic curve per channel.
    panels = [ax for ax in figure.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["all images", *tiny.real_train.class_names]
    assert [line.get_label() for line in panels[0].lines] == ["real", "synthetic"]
    assert panels[0].get_yscale() == "log"
    density = panels[0].lines[0].get_ydata()
    assert density.sum() == pytest.approx(1)
    same, _, _ = measure_input_statistics(tiny.real_train, tiny.real_train)
    assert same["wasserstein"].eq(0).all()
    assert metrics["input.wasserstein.channel0"]["value"] == pytest.approx(overall["wasserstein"])


def normalization_text(profile_table: pd.DataFrame, figures: Path) -> str:
    """The text of the report's normalization section for a per-unit profile."""
    sections = study_report(figures, normalization_unit_profile=profile_table).sections
    return next(section.text for section in sections if section.title == "Normalization")


def test_profile_lines_up_with_the_units_and_uses_other_seeds_as_reference(tiny: TinyExperiment, tmp_path: Path):
    analyses = tmp_path / "analyses"
    table, figure, interactive, metrics = profile_units(
        tiny.real_runs, tiny.synthetic_runs, tiny.real_train, tiny.synthetic_train, tiny.study, analyses, CONFIG
    )
    assert table["unit"].tolist() == list(range(10))
    assert table["name"].iloc[0] == "stem"
    assert table["cka_real_real_n"].eq(1).all()  # one pair of seeds
    assert table["cka_real_synthetic_n"].eq(2).all()  # one pair per seed
    for column in ("cka_real_synthetic_mean", "cka_real_real_mean", "probe_real_mean", "probe_synthetic_mean"):
        assert table[column].between(0, 1 + 1e-9).all(), column
    assert np.allclose(table["probe_gap_mean"], table["probe_real_mean"] - table["probe_synthetic_mean"])
    assert table["bn_shift_mean"].iloc[:-1].gt(0).all()
    assert np.isnan(table["bn_shift_mean"].iloc[-1])  # the classifier has no BatchNorm
    assert table["frechet_real_synthetic_mean"].nunique() == 1
    assert table["frechet_real_synthetic_mean"].iloc[0] > 0
    # 32 images per set in the 64 penultimate dimensions of a width-8 student: the report says so.
    assert table["frechet_images"].eq(32).all()
    assert table["frechet_dimensions"].eq(64).all()
    caveat = "rest on 32 images per set, fewer than the 64 dimensions: they are biased upward"
    assert caveat in normalization_text(table, tmp_path)
    assert "Fréchet" not in normalization_text(table.assign(frechet_images=64), tmp_path)
    assert metrics["unit9.probe_real_mean"]["value"] == pytest.approx(table["probe_real_mean"].iloc[9])
    assert metrics["frechet_real_synthetic_mean"]["value"] == pytest.approx(
        table["frechet_real_synthetic_mean"].iloc[0]
    )
    assert "unit9.bn_shift_mean" not in metrics  # NaN: no metric
    # The PNG's figure: the same three panels over the units.
    assert len(figure.axes) == 3
    legend = [text.get_text() for text in figure.axes[2].get_legend().get_texts()]
    assert legend == ["real-trained student", "synthetic-trained student"]
    assert list(figure.axes[2].lines[0].get_ydata()) == pytest.approx(table["probe_real_mean"].tolist())
    # The interactive figure: three panels over the units, each curve a measure's mean ± 95% CI.
    curves = {trace.name: trace for trace in interactive.data}
    cka = curves["real vs synthetic student (same seed)"]
    assert cka.y == pytest.approx(table["cka_real_synthetic_mean"].tolist())
    assert cka.error_y.array == pytest.approx(table["cka_real_synthetic_ci95"].tolist())
    assert curves["real-trained student"].yaxis == "y3"
    assert curves["real-trained student"].x == tuple(range(10))
    assert interactive.layout.xaxis3.ticktext[0] == "0<br>stem"
    # A second run reads the stored table; another setting is another analysis.
    (stored,) = analyses.glob("*.csv")
    pd.read_csv(stored).assign(probe_real_mean=0.123).to_csv(stored, index=False)
    again, _, _, _ = profile_units(
        tiny.real_runs, tiny.synthetic_runs, tiny.real_train, tiny.synthetic_train, tiny.study, analyses, CONFIG
    )
    assert again["probe_real_mean"].iloc[0] == 0.123
    assert again["cka_real_real_n"].eq(1).all()
    other = CONFIG.model_copy(update={"probe_images": 40})
    profile_units(
        tiny.real_runs, tiny.synthetic_runs, tiny.real_train, tiny.synthetic_train, tiny.study, analyses, other
    )
    assert len(list(analyses.glob("*.csv"))) == 2


def test_a_student_compared_with_itself_has_no_statistics_shift_and_full_similarity(
    tiny: TinyExperiment, tmp_path: Path
):
    table, _, _, _ = profile_units(
        tiny.real_runs, tiny.real_runs, tiny.real_train, tiny.real_train, tiny.study, tmp_path, CONFIG
    )
    assert np.allclose(table["bn_shift_mean"].iloc[:-1], 0)
    assert np.allclose(table["cka_real_synthetic_mean"], 1)  # the "synthetic" students are the real ones here
    assert np.allclose(table["frechet_real_synthetic_mean"], 0, atol=1e-9)  # exact, with 32 images in 64 dimensions


def test_profile_reduces_every_units_features_before_it_keeps_them(tiny: TinyExperiment, tmp_path: Path, monkeypatch):
    # CKA reads each unit's full feature map one minibatch at a time, reduced to an (n, n) matrix inside the forward
    # pass; every other measure reads pooled features: nothing grows with the number of images but the pooled ones.
    cka_batches, pooled_calls = [], []
    grams, features = profile.unit_grams, profile.unit_features

    def counted_grams(model, images, normalization):
        cka_batches.append(len(images))
        return grams(model, images, normalization)

    def checked_features(*args, pooled: bool, **kwargs):
        pooled_calls.append(pooled)
        return features(*args, pooled=pooled, **kwargs)

    monkeypatch.setattr(profile, "unit_grams", counted_grams)
    monkeypatch.setattr(profile, "unit_features", checked_features)
    config = CONFIG.model_copy(update={"cka_batch_size": 8})
    table, _, _, _ = profile_units(
        tiny.real_runs, tiny.synthetic_runs, tiny.real_train, tiny.synthetic_train, tiny.study, tmp_path, config
    )
    assert cka_batches == [8] * 4 * 4  # 32 test images in 4 batches, for each of the 4 students
    assert pooled_calls
    assert all(pooled_calls)
    for column in ("cka_real_synthetic_mean", "cka_real_real_mean", "cka_synthetic_synthetic_mean"):
        assert table[column].between(-1, 1).all(), column


def test_normalisation_variants_and_adabn(tiny: TinyExperiment, tracking, tmp_path: Path):
    runs = train_with_synthetic_statistics(tiny.synthetic_train, tiny.study, CONFIG)
    assert runs["statistics"].eq("synthetic").all()
    assert sorted(runs["seed"]) == BASELINE_SEEDS
    summary, per_seed, metrics = compare_normalizations(
        tiny.real_runs, tiny.synthetic_runs, runs, tiny.real_train, tiny.study, tmp_path, CONFIG
    )
    summary = summary.set_index("variant")
    assert set(summary.index) == {
        "real",
        "synthetic",
        "adabn_all",
        "adabn_7-9",
        "synthetic_statistics",
        "own_statistics",
    }
    assert summary["n"].eq(2).all()
    assert summary.loc["real", "gap_pp"] == 0
    synthetic = tiny.synthetic_runs.set_index("seed")["test_accuracy"]
    rows = per_seed[per_seed["variant"] == "synthetic"].set_index("seed")["test_accuracy"]
    assert rows.to_dict() == pytest.approx(synthetic.to_dict())  # the baselines' own figures
    own = per_seed[per_seed["variant"] == "synthetic_statistics"].set_index("seed")["test_accuracy"]
    assert own.to_dict() == pytest.approx(runs.set_index("seed")["test_accuracy"].to_dict())
    assert metrics["adabn_all.gap_pp"]["value"] == pytest.approx(summary.loc["adabn_all", "gap_pp"])
    own_mean = summary.loc["own_statistics", "test_accuracy_mean"]
    assert metrics["own_statistics.test_accuracy_mean"]["value"] == pytest.approx(own_mean)
    # AdaBN's change is paired with the very student it adapted.
    adabn = per_seed[per_seed["variant"] == "adabn_all"].set_index("seed")
    assert adabn["change_pp"].to_dict() == pytest.approx((100 * (adabn["test_accuracy"] - synthetic)).to_dict())
    assert summary.loc["synthetic", "change_vs_synthetic_pp"] == 0
    assert summary.loc["adabn_all", "change_vs_synthetic_pp"] == pytest.approx(adabn["change_pp"].mean())


def test_without_the_synthetic_statistics_students_the_variants_are_the_baselines_and_adabn(
    tiny: TinyExperiment, tracking, tmp_path: Path
):
    config = CONFIG.model_copy(update={"synthetic_statistics": False})
    runs = train_with_synthetic_statistics(tiny.synthetic_train, tiny.study, config)
    assert runs.empty
    summary, per_seed, _ = compare_normalizations(
        tiny.real_runs, tiny.synthetic_runs, runs, tiny.real_train, tiny.study, tmp_path, config
    )
    assert set(summary["variant"]) == {"real", "synthetic", "adabn_all", "adabn_7-9"}
    assert sorted(per_seed[per_seed["variant"] == "adabn_all"]["seed"]) == BASELINE_SEEDS


def test_pipeline_wiring():
    pipeline = create_pipeline()
    assert {n.name for n in pipeline.nodes} == {
        "build_study",
        "normalization.measure_input_statistics",
        "normalization.profile_units",
        "normalization.synthetic_statistics.train_students",
        "normalization.compare_normalizations",
    }
    assert "baselines_synthetic_runs" in pipeline.inputs()
    assert "normalization_summary" in pipeline.outputs()
    assert "study" not in pipeline.inputs()  # built inside, from the real sets, the store and the settings


def test_bad_configuration_names_the_key():
    with pytest.raises(ValueError, match="analysis_images"):
        NormalizationConfig(analysis_images=3)
    with pytest.raises(ValueError, match="cka_batch_size"):
        NormalizationConfig(cka_batch_size=4)
