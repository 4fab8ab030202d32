"""The data_efficiency pipeline: each arm's learning rate chosen once on the validation set, students from scratch
on nested fractions of the real pool, the synthetic students' last units fine-tuned or re-initialised on them, every
student trained for at least ``min_steps``; the trade-off summary."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import torch

from mind_the_gap.analysis.statistics import mean_ci95
from mind_the_gap.experiments import data_efficiency
from mind_the_gap.experiments.data_efficiency import ConvergenceCheck, DataEfficiencyConfig, LearningRateChoice
from mind_the_gap.pipelines.data_efficiency.nodes import (
    summarize_data_efficiency,
    train_from_scratch,
    train_from_synthetic,
    train_learning_rate_candidates,
)
from mind_the_gap.pipelines.data_efficiency.pipeline import create_pipeline
from mind_the_gap.results.sections import study_report
from mind_the_gap.runners.estimate import environment_parameters
from mind_the_gap.training.student_cache import StudentStore

from ..conftest import striped_images
from .conftest import REPO, STUDENT, TRAINING, TinyExperiment

POOL_STEPS = 6  # 2 epochs of the 96-image real pool in batches of 32
# The recipe before learning rates were chosen: scratch and re-initialised units at the full rate, fine-tuned units
# at a tenth of it.
USUAL = {"scratch": 1.0, "last 2": 0.1, "all": 0.1, "last 2 re-initialised": 1.0}


def chosen(factors: dict[str, float]) -> pd.DataFrame:
    """A learning-rate choice's runs in which each arm's candidate at ``factors[arm]`` won."""
    rows = [
        {"arm": arm, "lr_factor": f, "fraction_label": "1/2", "seed": 0, "val_accuracy": float(f == factors[arm])}
        for arm in factors
        for f in (0.1, 1.0)
    ]
    return pd.DataFrame(rows)


def optimizer_steps(tiny: TinyExperiment, runs: pd.DataFrame) -> list[int]:
    """The steps each student of a runs table trained for, from the history the student store keeps."""
    results = [StudentStore(tiny.store).load_result(key) for key in runs["student_key"]]
    assert all(len(result.history) == 2 for result in results)  # one record per epoch, however many steps
    return [int(result.history[-1]["optimizer_steps"]) for result in results]


def test_scratch_on_the_whole_pool_is_the_real_baseline_student(tiny: TinyExperiment, tracking: str):
    config = DataEfficiencyConfig(seeds=[0, 1], fractions=[1, 0.5], convergence_check=None)
    runs = train_from_scratch(tiny.real_train, tiny.study, config, chosen(USUAL))

    assert runs[["seed", "fraction"]].values.tolist() == [[0, 1.0], [0, 0.5], [1, 1.0], [1, 0.5]]
    assert runs["pipeline"].eq("data_efficiency").all()
    assert runs["cell"].eq("scratch").all()
    assert runs["strategy"].eq("scratch").all()
    assert runs["arm"].eq("scratch").all()
    assert runs["lr_factor"].eq(1.0).all()
    assert runs["last_units"].eq("").all()
    assert runs["fraction_label"].tolist() == ["1", "1/2"] * 2
    assert runs["real_images"].tolist() == [96, 48] * 2
    whole = runs[runs["fraction"] == 1].set_index("seed")
    baseline = tiny.real_runs.set_index("seed")
    assert whole["student_key"].to_dict() == baseline["student_key"].to_dict()
    assert whole["cache_hit"].all()
    assert whole["test_accuracy"].to_dict() == baseline["test_accuracy"].to_dict()
    assert not runs.loc[runs["fraction"] == 0.5, "student_key"].isin(baseline["student_key"]).any()
    assert optimizer_steps(tiny, runs) == [POOL_STEPS] * 4  # half the pool takes as many steps as all of it

    tracked = mlflow.search_runs(experiment_names=["Default"], filter_string="tags.pipeline = 'data_efficiency'")
    half = tracked[tracked["tags.mlflow.runName"] == "data_efficiency/scratch on 1/2 real/seed0"].iloc[-1]
    assert half["tags.student_key"] == runs["student_key"][1]
    assert (
        half["tags.cell"],
        half["tags.strategy"],
        half["tags.fraction"],
        half["tags.fraction_label"],
        half["tags.real_images"],
    ) == ("scratch", "scratch", "0.5", "1/2", "48")


@pytest.mark.parametrize(("min_steps", "steps"), [("full", [POOL_STEPS] * 3), (0, [POOL_STEPS, 2, 2]), (9, [9] * 3)])
def test_every_student_trains_at_least_min_steps(tiny: TinyExperiment, tracking: str, min_steps, steps: list[int]):
    config = DataEfficiencyConfig(
        seeds=[0], fractions=[1, 0.5, 0.25], last_units=[2], min_steps=min_steps, convergence_check=None
    )
    scratch = train_from_scratch(tiny.real_train, tiny.study, config, chosen(USUAL))
    assert scratch["real_images"].tolist() == [96, 48, 24]  # 2 and 1 steps a pass over the two subsets
    assert optimizer_steps(tiny, scratch) == steps
    for reinit in (False, True):
        students = train_from_synthetic(tiny.synthetic_runs, tiny.real_train, tiny.study, config, chosen(USUAL), reinit)
        assert optimizer_steps(tiny, students) == steps


def test_finetuning_keeps_the_lower_units_of_the_synthetic_student(tiny: TinyExperiment, tracking: str):
    config = DataEfficiencyConfig(seeds=[0], fractions=[0.5], last_units=[2, "all"], convergence_check=None)
    runs = train_from_synthetic(tiny.synthetic_runs, tiny.real_train, tiny.study, config, chosen(USUAL), False)
    reinit = train_from_synthetic(tiny.synthetic_runs, tiny.real_train, tiny.study, config, chosen(USUAL), True)

    assert runs["cell"].eq("finetune").all()
    assert runs["strategy"].tolist() == ["last 2", "all"]
    assert runs["last_units"].tolist() == ["2", "all"]
    assert runs["real_images"].tolist() == [48, 48]
    store = StudentStore(tiny.store)
    parent = store.load_model(tiny.synthetic_runs.set_index("seed").loc[0, "student_key"], STUDENT, tiny.real_train)
    parent_weights = dict(parent.named_parameters())

    def units_left_as_the_parent(key: str) -> set[int]:
        child = store.load_model(key, STUDENT, tiny.real_train)
        owner = child.unit_of_parameter()
        changed = {
            owner[name] for name, weight in child.named_parameters() if not torch.equal(weight, parent_weights[name])
        }
        return set(range(10)) - changed

    assert units_left_as_the_parent(runs["student_key"][0]) == set(range(8))  # units 8-9 fine-tuned on real data
    assert units_left_as_the_parent(runs["student_key"][1]) == set()  # every unit fine-tuned
    assert reinit[["cell", "strategy", "last_units"]].values.tolist() == [["reinit", "last 2 re-initialised", "2"]]
    assert units_left_as_the_parent(reinit["student_key"][0]) == set(range(8))  # units 8-9 trained afresh
    assert reinit["student_key"][0] != runs["student_key"][0]

    tracked = mlflow.search_runs(experiment_names=["Default"], filter_string="tags.pipeline = 'data_efficiency'")
    last_two = tracked[tracked["tags.mlflow.runName"] == "data_efficiency/last 2 units on 1/2 real/seed0"].iloc[-1]
    assert (last_two["tags.strategy"], last_two["tags.last_units"], last_two["tags.cell"]) == (
        "last 2",
        "2",
        "finetune",
    )


@pytest.mark.parametrize("last_units", [0, 10])
def test_last_units_beyond_the_student_are_refused_before_training(tiny: TinyExperiment, last_units: int):
    stored = set(tiny.store.iterdir())
    config = DataEfficiencyConfig(seeds=[0], fractions=[0.5], last_units=[1, last_units])
    with pytest.raises(ValueError, match=rf"data_efficiency.last_units \[{last_units}\].*10 units.*1-9 or all"):
        train_from_synthetic(tiny.synthetic_runs, tiny.real_train, tiny.study, config, chosen(USUAL), False)
    assert set(tiny.store.iterdir()) == stored
    config = DataEfficiencyConfig(seeds=[0], fractions=[0.5], last_units=[1], reinit_last_units=[last_units])
    with pytest.raises(ValueError, match=rf"data_efficiency.reinit_last_units \[{last_units}\].*10 units.*1-9$"):
        train_learning_rate_candidates(tiny.synthetic_runs, tiny.real_train, tiny.study, config)
    assert set(tiny.store.iterdir()) == stored


def test_a_seed_without_a_synthetic_student_names_baselines_seeds(tiny: TinyExperiment):
    config = DataEfficiencyConfig(seeds=[0, 7], fractions=[0.5], last_units=[1])
    with pytest.raises(ValueError, match=r"synthetic baseline students of seed\(s\) \[7\].*baselines.seeds"):
        train_learning_rate_candidates(tiny.synthetic_runs, tiny.real_train, tiny.study, config)


@pytest.mark.parametrize("reinit", [None, False, True])
def test_the_convergence_check_trains_every_arm_again_with_more_steps(tiny: TinyExperiment, tracking: str, reinit):
    check = ConvergenceCheck(budget_factor=3, seeds=[1])
    config = DataEfficiencyConfig(seeds=[0, 1], fractions=[0.5], last_units=[2], convergence_check=check)
    if reinit is None:
        runs = train_from_scratch(tiny.real_train, tiny.study, config, chosen(USUAL))
    else:
        runs = train_from_synthetic(tiny.synthetic_runs, tiny.real_train, tiny.study, config, chosen(USUAL), reinit)
    arm = runs["arm"][0]
    assert runs[["strategy", "seed"]].values.tolist() == [[arm, 0], [arm, 1], [f"{arm} 3x steps", 1]]
    assert runs["arm"].eq(arm).all()
    assert optimizer_steps(tiny, runs) == [POOL_STEPS, POOL_STEPS, 3 * POOL_STEPS]
    longer, shorter = runs.iloc[2], runs.iloc[1]  # the same subset of the same seed, three times the steps
    assert longer["real_images"] == shorter["real_images"]
    assert longer["lr_factor"] == shorter["lr_factor"]
    assert longer["student_key"] != shorter["student_key"]
    with pytest.raises(ValueError, match=r"convergence_check.seeds \[2\] are not in data_efficiency.seeds"):
        DataEfficiencyConfig(seeds=[0, 1], convergence_check=ConvergenceCheck(seeds=[2]))
    with pytest.raises(ValueError, match=r"learning_rate.seeds \[3\] are not in data_efficiency.seeds"):
        DataEfficiencyConfig(seeds=[0, 1], learning_rate=LearningRateChoice(seeds=[3]))
    with pytest.raises(ValueError, match="grid"):
        LearningRateChoice(grid=[0.1, 3.0])  # fine-tuned units' rate is the parent's lr_scale: at most training.lr
    with pytest.raises(ValueError, match=r"learning_rate.grids \['last 3'\] name no arm.*'last 2 re-initialised'"):
        DataEfficiencyConfig(seeds=[0], last_units=[2], learning_rate=LearningRateChoice(grids={"last 3": [0.1]}))


def test_each_arm_trains_at_its_chosen_rate_at_every_fraction(tiny: TinyExperiment):
    config = DataEfficiencyConfig(
        seeds=[0], fractions=[0.5, 0.25], last_units=[2, "all"], reinit_last_units=[3], convergence_check=None
    )
    plan = data_efficiency.planner(tiny.real_train, "real_train", TRAINING, config, STUDENT, tiny.synthetic_runs)
    rates = {"scratch": 0.3, "last 2": 1.0, "all": 0.3, "last 3 re-initialised": 0.1}
    jobs = {
        (job.columns["strategy"], job.columns["fraction_label"]): job
        for reinit in (None, False, True)
        for job in data_efficiency.plan_arms(plan, rates, reinit)
    }
    assert sorted(jobs) == sorted((s, f) for s in rates for f in ("1/2", "1/4"))
    for (strategy, _), job in jobs.items():
        assert job.columns["lr_factor"] == rates[strategy]
    # Fresh units train at training.lr times the factor; units starting from the synthetic weights at lr_scale.
    assert jobs[("scratch", "1/4")].training.lr == pytest.approx(0.3 * TRAINING.lr)
    assert jobs[("scratch", "1/4")].transfer is None
    assert jobs[("last 3 re-initialised", "1/4")].training.lr == pytest.approx(0.1 * TRAINING.lr)
    assert jobs[("last 3 re-initialised", "1/4")].transfer.kept == "0-6"
    assert jobs[("last 3 re-initialised", "1/4")].transfer.config.reinit
    for strategy, kept, lower in (("last 2", "0-7", "frozen"), ("all", "0-9", "finetune")):
        job = jobs[(strategy, "1/2")]
        assert job.training.lr == TRAINING.lr
        assert (job.transfer.kept, job.transfer.config.lower) == (kept, lower)
        assert job.transfer.config.lr_scale == rates[strategy]
        assert not job.transfer.config.reinit
    with pytest.raises(ValueError, match=r"no learning rate chosen for \['all'\].*learning_rate cell"):
        data_efficiency.plan_arms(plan, {"last 2": 0.1}, reinit=False)


def test_the_learning_rate_is_chosen_once_on_the_validation_set_and_reused(tiny: TinyExperiment, tracking: str):
    choice = LearningRateChoice(fraction=0.5, grid=[0.1, 1.0], grids={"last 2": [0.3]}, seeds=[1])
    config = DataEfficiencyConfig(
        seeds=[0, 1], fractions=[1, 0.5], last_units=[2], learning_rate=choice, convergence_check=None
    )
    candidates = train_learning_rate_candidates(tiny.synthetic_runs, tiny.real_train, tiny.study, config)
    assert candidates["cell"].eq("learning_rate").all()
    assert candidates[["arm", "lr_factor"]].values.tolist() == [
        ["scratch", 0.1],
        ["scratch", 1.0],
        ["last 2", 0.3],  # its own grid
        ["last 2 re-initialised", 0.1],
        ["last 2 re-initialised", 1.0],
    ]
    assert candidates["seed"].eq(1).all()
    assert candidates["real_images"].eq(48).all()
    table = data_efficiency.learning_rate_table(candidates)
    for arm, rows in table.groupby("arm"):
        assert rows["chosen"].sum() == 1
        best = rows["val_accuracy_mean"].max()
        assert (
            rows.loc[rows["chosen"], "lr_factor"].item()
            == rows.loc[rows["val_accuracy_mean"] == best, "lr_factor"].min()
        ), arm
    rates = data_efficiency.chosen_learning_rates(candidates)
    scratch = train_from_scratch(tiny.real_train, tiny.study, config, candidates)
    assert scratch["lr_factor"].eq(rates["scratch"]).all()
    # The chosen candidate is the student at the choice's fraction and seed: trained once.
    winner = candidates[(candidates["arm"] == "scratch") & (candidates["lr_factor"] == rates["scratch"])]
    reused = scratch[(scratch["seed"] == 1) & (scratch["fraction"] == 0.5)]
    assert reused["student_key"].tolist() == winner["student_key"].tolist()
    assert reused["cache_hit"].all()
    tracked = mlflow.search_runs(experiment_names=["Default"], filter_string="tags.cell = 'learning_rate'")
    assert "data_efficiency/last 2 units re-initialised at 0.1x lr on 1/2 real/seed1" in set(
        tracked["tags.mlflow.runName"]
    )


def test_ties_go_to_the_smallest_learning_rate():
    runs = pd.DataFrame(
        {
            "arm": ["scratch"] * 4 + ["last 2"] * 2,
            "lr_factor": [1.0, 1.0, 0.3, 0.3, 1.0, 0.1],
            "fraction_label": "1/8",
            "seed": [0, 1, 0, 1, 0, 0],
            "val_accuracy": [0.5, 0.7, 0.6, 0.6, 0.4, 0.4],
        }
    )
    assert data_efficiency.chosen_learning_rates(runs) == {"scratch": 0.3, "last 2": 0.1}


def runs(strategy: str, fraction: float, label: str, accuracies: list[float], arm: str | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pipeline": "data_efficiency",
            "cell": "finetune" if "last" in strategy else "scratch",
            "strategy": strategy,
            "arm": arm or strategy,
            "lr_factor": 1.0 if (arm or strategy) == "scratch" else 0.3,
            "fraction": fraction,
            "fraction_label": label,
            "real_images": int(800 * fraction),
            "seed": range(len(accuracies)),
            "test_accuracy": accuracies,
        }
    )


def baseline(cell: str, accuracies: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {"pipeline": "baselines", "cell": cell, "seed": range(len(accuracies)), "test_accuracy": accuracies}
    )


def test_summary_gives_the_distance_to_the_real_students_and_whether_more_steps_would_help():
    scratch = pd.concat(
        [
            runs("scratch", 1.0, "1", [0.85, 0.85]),
            runs("scratch", 0.5, "1/2", [0.6, 0.7]),
            runs("scratch 2x steps", 1.0, "1", [0.855], arm="scratch"),
            runs("scratch 2x steps", 0.5, "1/2", [0.65], arm="scratch"),
        ]
    )
    finetune = pd.concat(
        [runs("last 2", 0.5, "1/2", [0.8, 0.8]), runs("last 2 2x steps", 0.5, "1/2", [0.83], arm="last 2")]
    )
    reinit = runs("last 2 re-initialised", 0.5, "1/2", [0.7, 0.75])
    candidates = chosen({"scratch": 1.0, "last 2": 0.1, "last 2 re-initialised": 0.1})
    # Seed 2 of the baselines is no data-efficiency seed: left out, or the real mean would be 0.6.
    real, synthetic = baseline("real", [0.9, 0.8, 0.1]), baseline("synthetic", [0.5, 0.5, 0.5])
    config = DataEfficiencyConfig(seeds=[0, 1], fractions=[1, 0.5])  # the check: twice the steps for seed 0
    summary, choice, metrics, figure, interactive = summarize_data_efficiency(
        real, synthetic, scratch, finetune, reinit, candidates, config
    )

    assert list(summary.columns[:4]) == ["strategy", "arm", "lr_factor", "fraction"]
    summary = summary.set_index(["strategy", "fraction_label"])
    assert summary.loc[("scratch", "1"), "below_real_pp"] == pytest.approx(0.0)
    assert summary.loc[("scratch", "1/2"), "below_real_pp"] == pytest.approx(20.0)
    assert summary.loc[("last 2", "1/2"), "below_real_pp"] == pytest.approx(5.0)
    # Seed 0 with twice the steps: half a point better on the whole pool, five points on half of it; every arm with
    # its own check (the re-initialised arm has none here).
    assert summary.loc[("scratch", "1"), "more_steps_gain_pp"] == pytest.approx(0.5)
    assert summary.loc[("scratch", "1/2"), "more_steps_gain_pp"] == pytest.approx(5.0)
    assert summary.loc[("last 2", "1/2"), "more_steps_gain_pp"] == pytest.approx(3.0)
    assert summary["converged"].dropna().to_dict() == {
        ("scratch", "1"): True,
        ("scratch", "1/2"): False,
        ("last 2", "1/2"): False,
    }
    assert pd.isna(summary.loc[("last 2 2x steps", "1/2"), "vs_scratch_pp"])  # a check is no arm to compare
    assert summary["vs_scratch_pp_p_holm"].notna().sum() == 2  # last 2 and re-initialised at 1/2
    assert summary.loc[("last 2", "1/2"), "real_images"] == 400
    assert summary.loc[("last 2", "1/2"), "lr_factor"] == 0.3
    assert summary.loc[("scratch 2x steps", "1/2"), "n"] == 1
    assert summary.loc[("scratch", "1/2"), "n"] == 2
    assert metrics["last 2.1/2.below_real_pp"] == {"value": pytest.approx(5.0), "step": 0}
    assert metrics["scratch.1/2.test_accuracy_mean"]["value"] == pytest.approx(0.65)
    assert metrics["last 2 re-initialised.lr_factor"]["value"] == pytest.approx(0.1)
    assert choice.loc[choice["chosen"], ["arm", "lr_factor"]].values.tolist() == [
        ["scratch", 1.0],
        ["last 2", 0.1],
        ["last 2 re-initialised", 0.1],
    ]
    # The PNG's figure: a line per strategy over the real images used, on a log2 axis, under the baselines.
    (axes,) = figure.axes
    assert figure.get_suptitle() == "Data efficiency: the last units on a little real data, at tuned rates"
    assert axes.get_xscale() == "log"
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert list(lines["from scratch on the subset"].get_xdata()) == [400, 800]
    assert list(lines["from scratch on the subset"].get_ydata()) == pytest.approx([0.65, 0.85])
    assert {
        "synthetic student, last 2 units fine-tuned",
        "synthetic student, last 2 units re-initialised and trained",
        "last 2 2x steps (convergence check)",
        "real-only, every real image",
    } <= set(lines)
    # The interactive figure: a line per strategy over the real images used, its CI as a band around it.
    scratch_line = next(t for t in interactive.data if t.name == "from scratch on the subset")
    _, ci = mean_ci95([0.6, 0.7])
    assert scratch_line.x == (400, 800)
    assert scratch_line.y == pytest.approx((0.65, 0.85))
    assert scratch_line.customdata == pytest.approx((ci, 0.0))  # one seed's CI, or none, shown as 0
    band = next(t for t in interactive.data if t.fill == "toself" and t.legendgroup == scratch_line.legendgroup)
    assert band.y == pytest.approx((0.65 + ci, 0.85, 0.85, 0.65 - ci))
    assert interactive.layout.xaxis.type == "log"

    stricter = config.model_copy(update={"convergence_check": ConvergenceCheck(tolerance_pp=0.4)})
    summary, *_ = summarize_data_efficiency(real, synthetic, scratch, finetune, reinit, candidates, stricter)
    assert not summary["converged"].dropna().any()  # a half-point gain no longer counts as converged


def test_the_learning_rates_are_chosen_before_every_arm_and_only_scratch_ignores_the_synthetic_students():
    pipeline = create_pipeline()
    nodes = {node.namespace: node for node in pipeline.nodes if node.name != "build_study"}
    cells = {f"data_efficiency.{cell}" for cell in ("learning_rate", "scratch", "finetune", "reinit")}
    assert set(nodes) == {*cells, "data_efficiency"}
    assert nodes["data_efficiency.learning_rate"].outputs == ["data_efficiency.learning_rate.runs"]
    assert {"baselines_synthetic_runs", "real_train"} <= set(nodes["data_efficiency.learning_rate"].inputs)
    for cell in ("scratch", "finetune", "reinit"):
        assert nodes[f"data_efficiency.{cell}"].outputs == [f"data_efficiency.{cell}.runs"]
        assert "data_efficiency.learning_rate.runs" in nodes[f"data_efficiency.{cell}"].inputs
    assert not any(name.startswith("baselines_") for name in nodes["data_efficiency.scratch"].inputs)
    for cell in ("finetune", "reinit"):
        assert {"baselines_synthetic_runs", "real_train"} <= set(nodes[f"data_efficiency.{cell}"].inputs)
    summary = nodes["data_efficiency"]
    assert {"baselines_real_runs", *(f"{cell}.runs" for cell in cells)} <= set(summary.inputs)
    assert set(summary.outputs) == {
        "data_efficiency_summary",
        "data_efficiency_learning_rate_summary",
        "data_efficiency_metrics",
        "data_efficiency_figure",
        "data_efficiency_interactive",
    }


def test_the_report_names_where_each_arm_starts_to_beat_scratch_and_shows_the_learning_rate_choice(tmp_path):
    scratch = pd.concat([runs("scratch", 0.5, "1/2", [0.8, 0.9]), runs("scratch", 0.125, "1/8", [0.5, 0.6])])
    finetune = pd.concat([runs("last 2", 0.5, "1/2", [0.7, 0.85]), runs("last 2", 0.125, "1/8", [0.6, 0.8])])
    reinit = pd.concat(
        [runs("last 2 re-initialised", f, label, [0.95, 0.95]) for f, label in ((0.5, "1/2"), (0.125, "1/8"))]
    )
    candidates = chosen({"scratch": 1.0, "last 2": 0.1, "last 2 re-initialised": 0.1})
    real, synthetic = baseline("real", [0.9, 0.9]), baseline("synthetic", [0.5, 0.5])
    config = DataEfficiencyConfig(seeds=[0, 1], fractions=[0.5, 0.125], convergence_check=None)
    summary, choice, *_ = summarize_data_efficiency(real, synthetic, scratch, finetune, reinit, candidates, config)
    gains = summary.set_index(["strategy", "fraction_label"])["beats_scratch_between"]
    # last 2: -10 and -5 points at 1/2, +10 and +20 at 1/8; re-initialised: ahead everywhere.
    assert gains[("last 2", "1/2")] == gains[("last 2", "1/8")] == "1/2 and 1/8"
    assert gains[("last 2 re-initialised", "1/8")] == "every fraction"

    report = study_report(tmp_path, data_efficiency_summary=summary, data_efficiency_learning_rate_summary=choice)
    (section,) = [s for s in report.sections if s.pipeline == "data_efficiency"]
    assert "last 2: between 1/2 (-7.5 ± 31.8) and 1/8 (15 ± 63.5)" in section.text
    assert "last 2 re-initialised: at every fraction" in section.text
    (caption, table), (choice_caption, choice_table) = section.tables
    assert "lr_factor" in table.columns
    assert choice_caption.startswith("The learning-rate choice")
    assert choice_table["chosen"].tolist() == [False, True, True, False, True, False]


@pytest.mark.parametrize(
    ("env", "cells", "distinct"),
    [
        # 2 arms x 3 learning rates at 1/8 of seed 0; 2 fractions x 3 seeds per arm; no check.
        ("base", {"learning_rate": 2 * 3, "scratch": 2 * 3, "finetune": 2 * 3, "reinit": 0}, 6 + 12 - 2),
        # 4 arms x 3 rates; 8 fractions x 3 seeds per arm, and the check's seed 0 at each fraction.
        ("full", {"learning_rate": 4 * 3, "scratch": 8 * 4, "finetune": 2 * 8 * 4, "reinit": 8 * 4}, 12 + 128 - 4),
    ],
)
def test_the_default_and_full_grids_train_each_student_once(env: str, cells: dict[str, int], distinct: int):
    config = DataEfficiencyConfig.model_validate(environment_parameters(REPO / "conf", env)["data_efficiency"])
    pool = striped_images(800, num_classes=10, size=4)  # 8,000 images of 10 classes, as the default's real pool
    synthetic = pd.DataFrame({"seed": [0, 1, 2], "student_key": ["s0", "s1", "s2"]})
    plan = data_efficiency.planner(pool, "real_train", TRAINING, config, STUDENT, synthetic)
    planned = data_efficiency.plan_cells(plan)
    assert {cell: len(jobs) for cell, jobs in planned.items()} == cells

    def student(job) -> tuple:  # what decides what a student learns
        return job.seed, tuple(job.train[0].index.tolist()), repr(job.transfer), job.training.model_dump_json()

    # Each arm's chosen candidate is its student at 1/8 of seed 0: trained once.
    assert len({student(job) for jobs in planned.values() for job in jobs}) == distinct
