"""The ablations pipeline's nodes on tiny data: each factor's students, the texture-vs-shape tests, the mixed sets
and the summary with each row's gap."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib.container import BarContainer
from PIL import Image

from mind_the_gap.data.imageset import ImageSet, ImageView
from mind_the_gap.data.prepare import nested_subsets
from mind_the_gap.experiments.ablations import (
    AblationsConfig,
    oracle_generations,
    plan_diversity,
    plan_diversity_swaps,
    plan_mixing,
    plan_oracle,
)
from mind_the_gap.experiments.study import SetView, views
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.pipelines.ablations.nodes import (
    evaluate_texture_shape,
    summarize_ablations,
    train_on_pools,
)
from mind_the_gap.pipelines.ablations.pipeline import FACTORS, create_pipeline

from .conftest import BASELINE_SEEDS, STUDENT, TinyExperiment

CONFIG = AblationsConfig.model_validate(
    {
        "seeds": [0],
        "augmentation": {"policies": ["none", "trivial_augment"], "sources": ["synthetic"]},
        "texture_shape": {"sources": ["real", "synthetic"]},
        "mixing": {"real_shares": [0.25]},
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
    mixed, everything = plan_mixing(sets, CONFIG)
    generator = torch.Generator().manual_seed(0)
    real = nested_subsets(tiny.real_train, [0.25], generator)[0.25]
    fraction = (len(tiny.real_train) - len(real)) / len(sets["synthetic_train"])
    synthetic = nested_subsets(sets["synthetic_train"], [fraction], generator)[fraction]
    assert [view.name for view in mixed.train] == ["real_train", "synthetic_train"]
    assert_same_images(mixed.training_set(sets), joined(real, synthetic))
    assert mixed.columns["real_images"] == len(real)
    assert everything.train == (SetView("real_train"), SetView("synthetic_train"))
    assert_same_images(everything.training_set(sets), joined(*sets.values()))


def joined(*sets: ImageSet) -> ImageSet:
    return ImageSet(torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets]), sets[0].class_names)


def assert_same_images(view: ImageView, expected: ImageSet) -> None:
    assert torch.equal(view.gather(torch.arange(len(view))), expected.images)
    assert torch.equal(view.labels, expected.labels)
    assert view.class_names == expected.class_names


def test_oracle_variants_denoise_real_images_with_the_generations_own_model_and_name_their_sets(tiny: TinyExperiment):
    config = AblationsConfig.model_validate({"seeds": [0], "oracle": {"strengths": [0.5]}})
    generations = oracle_generations(GenerationConfig(), config)
    assert list(generations) == ["strength 0.5"]
    assert generations["strength 0.5"].backend == "img2img"
    assert generations["strength 0.5"].img2img_model == "class_diffusion"
    (job,) = plan_oracle({"strength 0.5": tiny.synthetic_train}, config)
    assert job.name == "ablations/oracle/strength 0.5/synthetic/seed0"
    assert job.train == views("strength 0.5")
    assert job.columns["train_images"] == len(tiny.synthetic_train)


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
    views = pd.DataFrame(columns=["variant", "trained_on", "shape_accuracy", "texture_accuracy", "shape_bias"])
    summary, metrics, figure, interactive = summarize_ablations(real, synthetic, views, augmentation, mixing)
    table = summary.set_index(["factor", "variant", "trained_on"])
    assert table.loc[("augmentation", "none", "synthetic"), "gap_pp"] == pytest.approx(20)
    assert table.loc[("augmentation", "none", "real"), "gap_between_sources_pp"] == pytest.approx(18)
    assert table.loc[("baseline", "standard", "synthetic"), "gap_between_sources_pp"] == pytest.approx(10)
    assert pd.isna(table.loc[("mixing", "50% real", "real + synthetic"), "gap_between_sources_pp"])
    assert metrics["mixing.50_ real.real _ synthetic.gap_pp"]["value"] == pytest.approx(4)
    # The PNG's figure: a bar per row, the first on top, and the baselines as vertical lines.
    (axes,) = figure.axes
    labels = [tick.get_text() for tick in axes.get_yticklabels()]
    assert labels[-1] == "baseline: standard (real)"
    assert labels[0] == "mixing: 50% real (real + synthetic)"
    bars = [bar for container in axes.containers if isinstance(container, BarContainer) for bar in container]
    assert [bar.get_width() for bar in bars] == pytest.approx(summary["test_accuracy_mean"].tolist())
    lines = {line.get_label(): line.get_xdata()[0] for line in axes.get_lines() if line.get_label()[0] != "_"}
    assert lines == {"real-only": pytest.approx(0.9), "synthetic-only": pytest.approx(0.8)}
    # The interactive figure: a group of bars per factor, the first row on top, the baselines as vertical lines.
    bars = {trace.name: trace for trace in interactive.data}
    assert list(bars) == ["baseline", "augmentation", "mixing"]
    assert bars["augmentation"].x == pytest.approx((0.88, 0.70))
    assert bars["augmentation"].error_x.array == (0, 0)
    assert bars["mixing"].y == ("mixing: 50% real (real + synthetic)",)
    assert interactive.layout.yaxis.categoryarray[-1] == "baseline: standard (real)"
    lines = {shape.name: shape.x0 for shape in interactive.layout.shapes if shape.type == "line"}
    assert lines == {"real-only": pytest.approx(0.9), "synthetic-only": pytest.approx(0.8)}


def test_pipeline_has_one_namespace_per_factor_from_one_template():
    pipeline = create_pipeline()
    names = {n.name for n in pipeline.nodes}
    assert {f"ablations.{factor}.train_students" for factor in FACTORS} <= names
    assert {"ablations.oracle.generate", "ablations.diversity.generate", "ablations.summarize"} <= names
    assert "ablations_summary" in pipeline.outputs()
    assert "synthetic_train" in pipeline.inputs()


@pytest.mark.parametrize(
    ("update", "culprit"),
    [
        ({"mixing": {"real_shares": [0.0]}}, "real_shares"),
        ({"oracle": {"strengths": [1.5]}}, "strengths"),
        ({"augmentation": {"policies": ["mixup"]}}, "policies"),
        ({"diversity": {"guidance_scales": [-1]}}, "guidance_scales"),
    ],
)
def test_bad_configuration_names_the_key(update, culprit):
    with pytest.raises(ValueError, match=culprit):
        AblationsConfig.model_validate(update)
