"""Levers: each lever's students and the layer swap's headline students from them, planned without Kedro, and the
summary's paired comparisons against hand-computed cases."""

from __future__ import annotations

import pandas as pd
import pytest

from mind_the_gap.experiments import layer_swap, levers
from mind_the_gap.experiments.levers import LeversConfig, plan_distillation, plan_swaps
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.distillation import Teacher
from mind_the_gap.training.engine import planned_steps

STUDENT = StudentConfig(width=8)  # 10 units by blocks
CONFIG = LeversConfig.model_validate({"seeds": [0, 1], "distillation": {"temperatures": [1, 4]}})


def keyed(seeds: list[int], prefix: str, **columns: object) -> pd.DataFrame:
    return pd.DataFrame({**columns, "seed": seeds, "student_key": [f"{prefix}{s}" for s in seeds]})


def test_distilled_students_learn_from_the_real_student_of_their_seed():
    jobs = plan_distillation(keyed([0, 1, 2], "real"), CONFIG)
    assert [(job.columns["variant"], job.seed, job.teacher) for job in jobs] == [
        ("temperature 1", 0, Teacher("real0", 1.0)),
        ("temperature 1", 1, Teacher("real1", 1.0)),
        ("temperature 4", 0, Teacher("real0", 4.0)),
        ("temperature 4", 1, Teacher("real1", 4.0)),
    ]
    assert {job.train[0].name for job in jobs} == {"synthetic_train"}
    assert jobs[3].name == "levers/distillation/temperature 4/synthetic/seed1"
    with pytest.raises(ValueError, match=r"needs the real baseline students of seed\(s\) \[1\]"):
        plan_distillation(keyed([0], "real"), CONFIG)


def test_each_levers_student_gets_the_layer_swaps_headline_student():
    runs = pd.concat([keyed([0, 1], "t1-", variant="temperature 1"), keyed([0, 1], "t4-", variant="temperature 4")])
    jobs = plan_swaps("distillation", runs, STUDENT, CONFIG, headline_cut=8)
    assert [(job.transfer.parent, job.transfer.kept, job.train[0].name) for job in jobs] == [
        ("t1-0", "0-7", "real_train"),
        ("t1-1", "0-7", "real_train"),
        ("t4-0", "0-7", "real_train"),
        ("t4-1", "0-7", "real_train"),
    ]
    assert jobs[0].name == "levers/distillation/temperature 1/last units real/seed0"
    assert jobs[0].columns == {
        "lever": "distillation",
        "variant": "temperature 1",
        "trained_on": "last units real",
        "kept": "0-7",
    }


def test_the_baselines_headline_students_are_the_layer_swaps_own():
    synthetic = keyed([0, 1], "synthetic").assign(variant="synthetic baseline")
    ours = plan_swaps(levers.BASELINE, synthetic, STUDENT, CONFIG, headline_cut=8)
    swap = layer_swap.LayerSwapConfig(seeds=[0, 1], cuts=[8], headline_cut=8)
    theirs = layer_swap.plan("prefix", "synthetic", synthetic, "real_train", STUDENT, swap)
    # Everything that enters a student's key is the same: one student, trained once, whichever pipeline runs first.
    assert [(j.seed, j.train, j.transfer, j.training, j.teacher) for j in ours] == [
        (j.seed, j.train, j.transfer, j.training, j.teacher) for j in theirs
    ]


def rows(accuracies: list[float], **columns: object) -> pd.DataFrame:
    return pd.DataFrame({**columns, "seed": range(len(accuracies)), "test_accuracy": accuracies})


def test_the_summary_pairs_by_seed_and_gives_the_share_of_the_remaining_gap():
    real, synthetic = rows([0.90, 0.92, 0.94]), rows([0.80, 0.80, 0.84])
    distilled = rows([0.85, 0.84, 0.87], lever="distillation", variant="temperature 4", trained_on="synthetic")
    swapped = rows(
        [0.88, 0.89, 0.91], lever="distillation", variant="temperature 4", trained_on=levers.SWAPPED, kept="0-7"
    )
    baseline_swaps = rows(
        [0.86, 0.87, 0.90], lever="none", variant="synthetic baseline", trained_on=levers.SWAPPED, kept="0-7"
    )
    summary, metrics = levers.summarize(real, synthetic, [baseline_swaps, pd.concat([distilled, swapped])])
    summary = summary.set_index("lever")
    assert summary.index.tolist() == ["none", "distillation"]
    lever = summary.loc["distillation"]
    assert lever["test_accuracy_mean"] == pytest.approx(0.8533333)
    assert lever["gap_pp"] == pytest.approx((5 + 8 + 7) / 3)  # below the real students, per seed
    assert lever["vs_baseline_pp"] == pytest.approx((5 + 4 + 3) / 3)  # above the synthetic ones
    assert lever["vs_baseline_pp_p_holm"] == pytest.approx(lever["vs_baseline_pp_p"])  # a family of one
    assert lever["swap_accuracy_mean"] == pytest.approx(0.8933333)
    # (swap - lever) / (real - lever): mean 4 points over mean 6.67 points.
    assert lever["remaining_recovered"] == pytest.approx(0.6)
    assert lever["remaining_recovered_low"] < 0.6 < lever["remaining_recovered_high"]
    baseline = summary.loc["none"]
    assert baseline["gap_pp"] == pytest.approx(32 / 3)
    assert baseline["remaining_recovered"] == pytest.approx((19 / 3) / (32 / 3))
    assert pd.isna(baseline["vs_baseline_pp"])
    assert metrics["distillation.temperature 4.remaining_recovered"]["value"] == pytest.approx(0.6)


def manifest(per_class: int, classes: int = 2, key: str = "gen") -> pd.DataFrame:
    """A generation's manifest: ``per_class`` images of each class, class by class."""
    return pd.DataFrame(
        {
            "run_key": key,
            "class_index": [c for c in range(classes) for _ in range(per_class)],
            "index": [i for _ in range(classes) for i in range(per_class)],
            "file": [f"{key}/{c}/{i}.png" for c in range(classes) for i in range(per_class)],
        }
    )


def test_the_pool_holds_what_the_largest_factor_and_the_smallest_share_need():
    generation = GenerationConfig(images_per_class=10)
    both = LeversConfig.model_validate({"more_images": {"factors": [2]}, "filtering": {"keep_shares": [0.8, 0.3]}})
    assert levers.pool_generation(generation, both).images_per_class == 34  # ceil(10 / 0.3) above 2 x 10
    more = LeversConfig.model_validate({"more_images": {"factors": [2, 4]}, "filtering": {"keep_shares": [0.5]}})
    assert levers.pool_generation(generation, more).images_per_class == 40
    neither = LeversConfig.model_validate({"more_images": {"factors": []}, "filtering": {"keep_shares": []}})
    assert levers.pool_generation(generation, neither) == generation
    with pytest.raises(ValueError, match="keep_shares"):
        LeversConfig.model_validate({"filtering": {"keep_shares": [1.0]}})


def test_a_pool_of_another_generation_is_refused():
    levers.check_pool(manifest(4), manifest(2))
    with pytest.raises(ValueError, match=r"pool's generation \(other\) is not the one .* \(gen\)"):
        levers.check_pool(manifest(4, key="other"), manifest(2))


def test_more_images_are_the_pools_first_images_of_each_class():
    config = LeversConfig.model_validate({"more_images": {"factors": [2, 4]}})
    sets = levers.select_more_images(manifest(8), 2, config)
    assert sets.groupby("variant", sort=False)["index"].max().to_dict() == {"2x images": 3, "4x images": 7}
    assert sets.groupby(["variant", "class_index"], sort=False).size().tolist() == [4, 4, 8, 8]


def test_more_images_train_at_the_recipes_epochs_and_at_the_baselines_steps():
    config = LeversConfig.model_validate({"seeds": [0, 1], "more_images": {"factors": [2]}})
    training = TrainConfig(epochs=3, batch_size=4)
    sets = levers.select_more_images(manifest(8), 4, config)  # 2 classes, 4 images a class in the baselines' set
    jobs = levers.plan_more_images(sets, 4, 2, training, config)
    assert [(job.columns["variant"], job.seed, job.train[0].name) for job in jobs] == [
        ("2x images, same epochs", 0, "2x images"),
        ("2x images, same epochs", 1, "2x images"),
        ("2x images, same steps", 0, "2x images"),
        ("2x images, same steps", 1, "2x images"),
    ]
    assert jobs[0].training is None
    assert planned_steps(16, jobs[2].training) == planned_steps(8, training) == 6  # 3 epochs of 2 batches
    assert jobs[0].columns["generation_key"] == "gen"
    assert jobs[0].columns["set_digest"] == jobs[3].columns["set_digest"] != ""


def test_the_judge_keeps_the_images_it_is_most_confident_about_at_the_sets_size():
    pool = manifest(4, classes=1)
    confidence = pd.Series([0.1, 0.9, 0.5, 0.9])
    config = LeversConfig.model_validate({"filtering": {"keep_shares": [0.8, 0.5]}})
    kept = levers.select_filtered(pool, confidence, "judge-key", 2, config)
    by_share = kept.groupby("variant", sort=False)["index"].apply(list).to_dict()
    # 0.8: of the first ceil(2 / 0.8) = 3 images, the two best; 0.5: of all four, the two best (a tie, both kept).
    assert by_share == {"judge keeps 80%": [1, 2], "judge keeps 50%": [1, 3]}
    assert (kept["judge"] == "judge-key").all()
    tie = levers.select_filtered(pool, pd.Series([0.5, 0.5, 0.5, 0.5]), "k", 2, config)
    assert tie.groupby("variant")["index"].apply(list).to_dict()["judge keeps 50%"] == [0, 1]  # ties: earlier first
    jobs = levers.plan_filtering(kept, LeversConfig(seeds=[0]))
    assert [(job.columns["variant"], job.columns["judge_key"], job.train[0].name) for job in jobs] == [
        ("judge keeps 80%", "judge-key", "judge keeps 80%"),
        ("judge keeps 50%", "judge-key", "judge keeps 50%"),
    ]


def test_a_lever_without_variants_trains_nothing_and_the_summary_skips_it():
    empty = levers.train_with_swaps("more_images", None, {}, [], CONFIG, headline_cut=8)
    assert empty.empty
    real, synthetic = rows([0.90, 0.92, 0.94]), rows([0.80, 0.80, 0.84])
    baseline_swaps = rows(
        [0.86, 0.87, 0.90], lever="none", variant="synthetic baseline", trained_on=levers.SWAPPED, kept="0-7"
    )
    summary, _ = levers.summarize(real, synthetic, [baseline_swaps, empty])
    assert summary["lever"].tolist() == ["none"]


def test_the_judge_scores_only_the_images_some_share_chooses_from():
    config = LeversConfig.model_validate({"filtering": {"keep_shares": [0.8, 0.4]}})
    assert levers.filter_candidates(manifest(8), 2, config)["index"].max() == 4  # ceil(2 / 0.4) = 5 a class
    none = LeversConfig.model_validate({"filtering": {"keep_shares": []}})
    assert levers.filter_candidates(manifest(8), 2, none).empty


def test_auto_judges_with_clip_where_its_weights_are_present(tmp_path):
    absent = levers.FilteringLever(judge="auto", clip_model_id=str(tmp_path / "missing"))
    assert levers.judge_kind(absent) == "student"
    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "config.json").write_text("{}")
    assert levers.judge_kind(absent.model_copy(update={"clip_model_id": str(tmp_path / "clip")})) == "clip"
    assert levers.judge_kind(levers.FilteringLever(judge="clip", clip_model_id="not/here")) == "clip"
    assert levers.judge_kind(levers.FilteringLever(judge="student", clip_model_id=str(tmp_path / "clip"))) == "student"
