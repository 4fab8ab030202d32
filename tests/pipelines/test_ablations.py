"""The ablations pipeline's nodes on tiny data: each factor's students, the texture-vs-shape tests, the mixed sets
and the summary with each row's gap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib.container import BarContainer
from PIL import Image

from mind_the_gap.analysis.statistics import holm
from mind_the_gap.analysis.texture_shape import VIEWS
from mind_the_gap.data.imageset import ImageSet, ImageView
from mind_the_gap.data.prepare import nested_subsets
from mind_the_gap.experiments.ablations import (
    AblationsConfig,
    evaluate_texture_shape,
    oracle_generations,
    plan_diversity,
    plan_diversity_swaps,
    plan_mixing,
    plan_oracle,
)
from mind_the_gap.experiments.study import SetView, views
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.pipelines.ablations.nodes import summarize_ablations, train_on_pools
from mind_the_gap.pipelines.ablations.pipeline import FACTORS, create_pipeline
from mind_the_gap.results.sections import views_by_source

from .conftest import BASELINE_SEEDS, REPO, STUDENT, TinyExperiment

CONFIG = AblationsConfig.model_validate(
    {
        "seeds": [0],
        "augmentation": {"policies": ["none", "trivial_augment"], "sources": ["synthetic"]},
        "texture_shape": {"sources": ["real", "synthetic"]},
        "mixing": {"real_shares": [0.25], "batchnorm": ["shared"]},
    }
)


def test_augmentation_replaces_or_extends_the_standard_recipe(tiny: TinyExperiment, tracking):
    runs = train_on_pools("augmentation", tiny.real_train, tiny.synthetic_train, tiny.study, CONFIG)
    assert runs[["variant", "trained_on"]].values.tolist() == [["none", "synthetic"], ["trivial_augment", "synthetic"]]
    assert runs["test_accuracy"].between(0, 1).all()
    assert not runs["cache_hit"].any()
    again = train_on_pools("augmentation", tiny.real_train, tiny.synthetic_train, tiny.study, CONFIG)
    assert again["cache_hit"].all()
    assert again["student_key"].tolist() == runs["student_key"].tolist()
    # The policies train students other than the baselines, whose recipe is the standard one.
    assert not set(runs["student_key"]) & set(tiny.synthetic_runs["student_key"])


def test_mixed_sets_keep_the_pool_size_and_the_real_share(tiny: TinyExperiment, tracking):
    synthetic = joined(tiny.synthetic_train, tiny.synthetic_train)  # twice the real pool's size
    runs = train_on_pools("mixing", tiny.real_train, synthetic, tiny.study, CONFIG)
    rows = runs.set_index("variant")
    assert rows.loc["25% real", "train_images"] == len(tiny.real_train)
    assert rows.loc["25% real", "real_images"] == len(tiny.real_train) // 4
    assert rows.loc["all real + all synthetic", "train_images"] == len(tiny.real_train) + len(synthetic)
    with pytest.raises(ValueError, match="needs 72 synthetic images, the synthetic set has 48"):
        train_on_pools("mixing", tiny.real_train, tiny.synthetic_train.subset(torch.arange(48)), tiny.study, CONFIG)


def test_a_mixed_job_names_the_subsets_one_generator_per_seed_draws_real_then_synthetic(tiny: TinyExperiment):
    sets = {"real_train": tiny.real_train, "synthetic_train": joined(tiny.synthetic_train, tiny.synthetic_train)}
    mixed, everything = plan_mixing(sets, tiny.study.training, CONFIG)
    generator = torch.Generator().manual_seed(0)
    real = nested_subsets(tiny.real_train, [0.25], generator)[0.25]
    fraction = (len(tiny.real_train) - len(real)) / len(sets["synthetic_train"])
    synthetic = nested_subsets(sets["synthetic_train"], [fraction], generator)[fraction]
    assert [view.name for view in mixed.train] == ["real_train", "synthetic_train"]
    assert_same_images(mixed.training_set(sets), joined(real, synthetic))
    assert mixed.columns["real_images"] == len(real)
    assert everything.train == (SetView("real_train"), SetView("synthetic_train"))
    assert_same_images(everything.training_set(sets), joined(*sets.values()))


def test_each_mixed_student_also_trains_with_batchnorm_statistics_per_source(tiny: TinyExperiment):
    sets = {"real_train": tiny.real_train, "synthetic_train": joined(tiny.synthetic_train, tiny.synthetic_train)}
    config = CONFIG.model_copy(
        update={"mixing": CONFIG.mixing.model_copy(update={"batchnorm": ["shared", "per_source"]})}
    )
    jobs = plan_mixing(sets, tiny.study.training, config)
    assert [(job.columns["variant"], job.training) for job in jobs] == [
        ("25% real", None),
        ("all real + all synthetic", None),
        ("25% real, BN per source", tiny.study.training.model_copy(update={"batchnorm": "per_source"})),
        ("all real + all synthetic, BN per source", tiny.study.training.model_copy(update={"batchnorm": "per_source"})),
    ]
    assert [job.train for job in jobs[2:]] == [job.train for job in jobs[:2]]  # the same images, seed for seed


def joined(*sets: ImageSet) -> ImageSet:
    return ImageSet(torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]), sets[0].class_names)


def assert_same_images(view: ImageView, expected: ImageSet) -> None:
    assert torch.equal(view.gather(torch.arange(len(view))), expected.images)
    assert torch.equal(view.labels, expected.labels)
    assert view.class_names == expected.class_names


def test_reconstruction_denoises_real_images_with_the_generations_own_model_and_the_oracle_is_unclip(
    tiny: TinyExperiment,
):
    config = AblationsConfig.model_validate(
        {"seeds": [0], "oracle": {"reconstruction_strengths": [0.1, 0.5], "unclip": True}}
    )
    generations = oracle_generations(GenerationConfig(), config)
    assert list(generations) == ["strength 0.1", "strength 0.5", "unclip"]
    assert generations["strength 0.1"].strength == 0.1
    assert generations["strength 0.5"].backend == "img2img"
    assert generations["strength 0.5"].img2img_model == "class_diffusion"
    assert generations["unclip"].backend == "unclip"
    reconstruction, oracle = plan_oracle({"strength 0.5": tiny.synthetic_train, "unclip": tiny.synthetic_train}, config)
    assert reconstruction.name == "ablations/reconstruction/strength 0.5/synthetic/seed0"
    assert reconstruction.columns["factor"] == "reconstruction"
    assert reconstruction.train == views("strength 0.5")
    assert reconstruction.columns["train_images"] == len(tiny.synthetic_train)
    assert oracle.name == "ablations/oracle/unclip/synthetic/seed0"
    assert oracle.columns["factor"] == "oracle"


def test_the_reconstruction_dial_of_conf_paper_is_the_papers():
    paper = yaml.safe_load((REPO / "conf/paper/parameters.yml").read_text())["ablations"]
    assert AblationsConfig.model_validate(paper).oracle.reconstruction_strengths == [0.1, 0.25, 0.5, 0.75]


def test_the_old_oracle_strengths_key_names_the_new_one():
    with pytest.raises(ValueError, match="ablations.oracle.strengths is now ablations.oracle.reconstruction_strengths"):
        AblationsConfig.model_validate({"oracle": {"strengths": [0.5]}})


def test_diversity_plans_synthetic_students_then_two_layer_swaps_from_each(tiny: TinyExperiment):
    variants = {"guidance 1": tiny.synthetic_train, "guidance 2": tiny.synthetic_train}
    synthetic = plan_diversity(variants, STUDENT, CONFIG)
    assert [job.train for job in synthetic] == [views("guidance 1"), views("guidance 2")]
    runs = pd.DataFrame({"variant": ["guidance 1", "guidance 2"], "seed": [0, 0], "student_key": ["k1", "k2"]})
    sets = {**variants, "real_train": tiny.real_train}
    swaps = plan_diversity_swaps(runs, variants, sets, STUDENT, CONFIG)
    assert [(j.columns["variant"], j.columns["trained_on"], j.transfer.parent, j.transfer.kept) for j in swaps] == [
        ("guidance 1", "first 3 real, rest synthetic", "k1", "3-9"),  # the student has units 0-9
        ("guidance 1", "last 3 real, rest synthetic", "k1", "0-6"),
        ("guidance 2", "first 3 real, rest synthetic", "k2", "3-9"),
        ("guidance 2", "last 3 real, rest synthetic", "k2", "0-6"),
    ]
    assert all(job.train == views("real_train") for job in swaps)
    whole = CONFIG.model_copy(update={"diversity": CONFIG.diversity.model_copy(update={"first_units": 10})})
    with pytest.raises(ValueError, match="must leave a unit kept: the student has 10"):
        plan_diversity(variants, STUDENT, whole)


def test_texture_shape_views_and_shape_bias(tiny: TinyExperiment, tracking, tmp_path: Path):
    runs = train_on_pools("texture_shape", tiny.real_train, tiny.synthetic_train, tiny.study, CONFIG)
    assert set(runs["trained_on"]) == {"real", "synthetic"}
    assert runs["variant"].eq("local_shuffle").all()
    config = CONFIG.model_copy(update={"seeds": BASELINE_SEEDS[:1]})
    views = evaluate_texture_shape(tiny.real_runs, tiny.synthetic_runs, runs, tiny.study, tmp_path, config)
    assert views[["variant", "trained_on"]].values.tolist() == [
        ["standard", "real"],
        ["standard", "synthetic"],
        ["local_shuffle", "real"],
        ["local_shuffle", "synthetic"],
    ]
    for view in VIEWS:
        assert views[f"{view}_accuracy"].between(0, 1).all(), view
    expected = views["shape_accuracy"] / (views["shape_accuracy"] + views["texture_accuracy"])
    assert views["shape_bias"].tolist() == pytest.approx(expected.tolist())
    baseline = tiny.real_runs.set_index("seed").loc[0, "test_accuracy"]
    assert views.iloc[0]["test_accuracy"] == pytest.approx(baseline)
    again = evaluate_texture_shape(tiny.real_runs, tiny.synthetic_runs, runs, tiny.study, tmp_path, config)
    pd.testing.assert_frame_equal(again, views, check_dtype=False)  # read back from the analysis store
    assert len(list(tmp_path.glob("*.csv"))) == 1


def test_a_folder_of_cue_conflict_images_gives_each_student_its_shape_bias(tiny: TinyExperiment, tmp_path, tracking):
    folder = tmp_path / "cue-conflict"
    for shape, texture in [(0, 1), (1, 2), (2, 3), (3, 0), (1, 1)]:  # the last agrees with itself: left out
        (folder / f"class{shape}").mkdir(parents=True, exist_ok=True)
        pixels = tiny.test.images[tiny.test.labels == shape][0, 0].numpy()
        Image.fromarray(pixels).save(folder / f"class{shape}" / f"class{shape}1-class{texture}1.png")
    config = CONFIG.model_copy(
        update={"texture_shape": CONFIG.texture_shape.model_copy(update={"cue_conflict_dir": str(folder)})}
    )
    views = evaluate_texture_shape(
        tiny.real_runs,
        tiny.synthetic_runs,
        tiny.real_runs.iloc[:0].assign(trained_on=[]),
        tiny.study,
        tmp_path / "analyses",
        config,
    )
    assert len(views) == 2  # the baseline students of seed 0
    assert views["cue_conflict_shape_correct"].between(0, 1).all()
    both = views["cue_conflict_shape_correct"] + views["cue_conflict_texture_correct"]
    assert (both <= 1).all()


def test_summary_gaps_and_the_gap_between_sources_under_one_variant(tiny: TinyExperiment):
    def rows(factor: str, variant: str, source: str, accuracies: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "pipeline": "ablations",
                "factor": factor,
                "variant": variant,
                "trained_on": source,
                "seed": range(len(accuracies)),
                "test_accuracy": accuracies,
            }
        )

    real = rows("baseline", "standard", "real", [0.9, 0.9]).assign(cell="real")
    synthetic = rows("baseline", "standard", "synthetic", [0.8, 0.8]).assign(cell="synthetic")
    augmentation = pd.concat(
        [rows("augmentation", "none", "real", [0.88, 0.88]), rows("augmentation", "none", "synthetic", [0.7, 0.7])]
    )
    mixing = rows("mixing", "50% real", "real + synthetic", [0.86, 0.86])
    per_source = rows("mixing", "50% real, BN per source", "real + synthetic", [0.87, 0.89])
    views = pd.DataFrame(columns=["variant", "trained_on", "shape_accuracy", "texture_accuracy", "shape_bias"])
    summary, metrics, figure, interactive = summarize_ablations(
        real, synthetic, views, augmentation, pd.concat([mixing, per_source])
    )
    table = summary.set_index(["factor", "variant", "trained_on"])
    # Per-source statistics against shared ones, paired by seed: (1 + 3) / 2 points.
    assert table.loc[("mixing", "50% real, BN per source", "real + synthetic"), "vs_shared_bn_pp"] == pytest.approx(2)
    assert pd.isna(table.loc[("mixing", "50% real", "real + synthetic"), "vs_shared_bn_pp"])
    assert table.loc[("augmentation", "none", "synthetic"), "gap_pp"] == pytest.approx(20)
    assert table.loc[("augmentation", "none", "real"), "gap_between_sources_pp"] == pytest.approx(18)
    assert table.loc[("baseline", "standard", "synthetic"), "gap_between_sources_pp"] == pytest.approx(10)
    assert pd.isna(table.loc[("mixing", "50% real", "real + synthetic"), "gap_between_sources_pp"])
    assert metrics["mixing.50_ real.real _ synthetic.gap_pp"]["value"] == pytest.approx(4)
    # The PNG's figure: a bar per row, the first on top, and the baselines as vertical lines.
    (axes,) = figure.axes
    labels = [tick.get_text() for tick in axes.get_yticklabels()]
    assert labels[-1] == "baseline: standard (real)"
    assert labels[0] == "mixing: 50% real, BN per source (real + synthetic)"
    bars = [bar for container in axes.containers if isinstance(container, BarContainer) for bar in container]
    assert [bar.get_width() for bar in bars] == pytest.approx(summary["test_accuracy_mean"].tolist())
    lines = {line.get_label(): line.get_xdata()[0] for line in axes.get_lines() if line.get_label()[0] != "_"}
    assert lines == {"real-only": pytest.approx(0.9), "synthetic-only": pytest.approx(0.8)}
    # The interactive figure: a group of bars per factor, the first row on top, the baselines as vertical lines.
    bars = {trace.name: trace for trace in interactive.data}
    assert list(bars) == ["baseline", "augmentation", "mixing"]
    assert bars["augmentation"].x == pytest.approx((0.88, 0.70))
    assert bars["augmentation"].error_x.array == (0, 0)
    assert bars["mixing"].y == (
        "mixing: 50% real (real + synthetic)",
        "mixing: 50% real, BN per source (real + synthetic)",
    )
    assert interactive.layout.yaxis.categoryarray[-1] == "baseline: standard (real)"
    lines = {shape.name: shape.x0 for shape in interactive.layout.shapes if shape.type == "line"}
    assert lines == {"real-only": pytest.approx(0.9), "synthetic-only": pytest.approx(0.8)}


T95_2 = 4.302652729911275  # Student's t, 97.5 % quantile, 2 degrees of freedom: three seeds


def test_views_compare_the_sources_paired_by_seed_against_their_gap_on_the_test_set():
    def students(source: str, cell: bool, **accuracies: list[float]) -> pd.DataFrame:
        table = pd.DataFrame({"pipeline": "ablations", "trained_on": source, "seed": [0, 1, 2], **accuracies})
        return table.assign(cell=source) if cell else table.assign(variant="standard")

    real = students("real", True, test_accuracy=[0.9, 0.9, 0.9])
    synthetic = students("synthetic", True, test_accuracy=[0.8, 0.8, 0.8])  # a gap of 10 points every seed
    controls = {f"{view}_accuracy": [0.5, 0.5, 0.5] for view in ("blur", "noise", "contrast")}
    views = pd.concat(
        [
            students(
                "real",
                False,
                test_accuracy=[0.9, 0.9, 0.9],
                shape_accuracy=[0.60, 0.62, 0.64],
                texture_accuracy=[0.12, 0.12, 0.12],
                **controls,
            ),
            students(
                "synthetic",
                False,
                test_accuracy=[0.8, 0.8, 0.8],
                shape_accuracy=[0.40, 0.40, 0.40],
                texture_accuracy=[0.19, 0.19, 0.19],
                **controls | {"blur_accuracy": [0.40, 0.39, 0.41]},
            ),
        ]
    )
    views["shape_bias"] = views["shape_accuracy"] / (views["shape_accuracy"] + views["texture_accuracy"])
    summary, *_ = summarize_ablations(real, synthetic, views)
    row = summary.set_index(["factor", "variant", "trained_on"]).loc[("baseline", "standard", "synthetic")]
    # shape: the real students lead by 20, 22 and 24 points, 10, 12 and 14 beyond their lead on the test set
    assert row["shape_between_sources_pp"] == pytest.approx(22)
    assert row["shape_between_sources_pp_ci95"] == pytest.approx(T95_2 * 2 / np.sqrt(3))
    assert row["shape_extra_gap_pp"] == pytest.approx(12)
    assert row["shape_extra_gap_pp_ci95"] == pytest.approx(T95_2 * 2 / np.sqrt(3))
    assert row["texture_between_sources_pp"] == pytest.approx(-7)
    assert row["texture_extra_gap_pp"] == pytest.approx(-17)
    # blur: a lead of 10, 11 and 9 points, none beyond the test set's
    assert row["blur_between_sources_pp"] == pytest.approx(10)
    assert row["blur_extra_gap_pp"] == pytest.approx(0, abs=1e-9)
    assert row["blur_extra_gap_pp_ci95"] == pytest.approx(T95_2 * 1 / np.sqrt(3))
    assert row["noise_extra_gap_pp"] == pytest.approx(-10)
    # one family: every view's extra gap with a p-value (shape and blur; the rest have no spread)
    p = [row[f"{view}_extra_gap_pp_p"] for view in VIEWS]
    assert [row[f"{view}_extra_gap_pp_p_holm"] for view in VIEWS] == pytest.approx(holm(p), nan_ok=True)
    assert row["shape_extra_gap_pp_p_holm"] == pytest.approx(2 * row["shape_extra_gap_pp_p"])
    # The report's table: one row per view, the test set first.
    table = views_by_source(summary)
    assert table["view"].tolist() == ["test", *VIEWS]
    assert table["variant"].eq("baseline: standard").all()
    first, shape = table.iloc[0], table.iloc[1]
    assert first["between_sources_pp"] == pytest.approx(10)
    assert pd.isna(first["extra_gap_pp"])
    assert (shape["real_accuracy_mean"], shape["synthetic_accuracy_mean"]) == pytest.approx((0.62, 0.40))
    assert shape["extra_gap_pp"] == pytest.approx(12)
    assert views_by_source(summary.drop(columns=[c for c in summary if "extra_gap" in c])) is None


def test_pipeline_has_one_namespace_per_factor_from_one_template():
    pipeline = create_pipeline()
    names = {n.name for n in pipeline.nodes}
    assert {f"ablations.{factor}.train_students" for factor in FACTORS} <= names
    assert {"ablations.oracle.generate", "ablations.diversity.generate", "ablations.summarize"} <= names
    assert {"ablations.diversity.measure_sets", "ablations.measure_per_class_gaps"} <= names
    assert {
        "ablations_summary",
        "ablations_diversity_per_class",
        "ablations_per_class_summary",
    } <= pipeline.all_outputs()
    assert "synthetic_train" in pipeline.inputs()


@pytest.mark.parametrize(
    ("update", "culprit"),
    [
        ({"mixing": {"real_shares": [0.0]}}, "real_shares"),
        ({"oracle": {"reconstruction_strengths": [1.5]}}, "reconstruction_strengths"),
        ({"texture_shape": {"contrast": 1.0}}, "contrast"),
        ({"texture_shape": {"blur_sigma": 0}}, "blur_sigma"),
        ({"texture_shape": {"noise_std": -0.1}}, "noise_std"),
        ({"augmentation": {"policies": ["mixup"]}}, "policies"),
        ({"diversity": {"guidance_scales": [-1]}}, "guidance_scales"),
        ({"diversity": {"spread_images": 8, "neighbours": 8}}, r"neighbours \(8\) must be below spread_images"),
    ],
)
def test_bad_configuration_names_the_key(update, culprit):
    with pytest.raises(ValueError, match=culprit):
        AblationsConfig.model_validate(update)
