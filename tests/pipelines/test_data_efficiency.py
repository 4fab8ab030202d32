"""The data_efficiency pipeline: students from scratch on nested fractions of the real pool, the synthetic students'
last units fine-tuned on them, every student trained for at least ``min_steps``; the trade-off summary."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import torch

from mind_the_gap.analysis.statistics import mean_ci95
from mind_the_gap.experiments.data_efficiency import ConvergenceCheck, DataEfficiencyConfig
from mind_the_gap.pipelines.data_efficiency.nodes import summarize_data_efficiency, train_finetuned, train_from_scratch
from mind_the_gap.pipelines.data_efficiency.pipeline import create_pipeline
from mind_the_gap.training.student_cache import StudentStore

from .conftest import STUDENT, TinyExperiment

POOL_STEPS = 6  # 2 epochs of the 96-image real pool in batches of 32


def optimizer_steps(tiny: TinyExperiment, runs: pd.DataFrame) -> list[int]:
    """The steps each student of a runs table trained for, from the history the student store keeps."""
    results = [StudentStore(tiny.store).load_result(key) for key in runs["student_key"]]
    assert all(len(result.history) == 2 for result in results)  # one record per epoch, however many steps
    return [int(result.history[-1]["optimizer_steps"]) for result in results]


def test_scratch_on_the_whole_pool_is_the_real_baseline_student(tiny: TinyExperiment, tracking: str):
    config = DataEfficiencyConfig(seeds=[0, 1], fractions=[1, 0.5], convergence_check=None)
    runs = train_from_scratch(tiny.real_train, tiny.study, config)

    assert runs[["seed", "fraction"]].values.tolist() == [[0, 1.0], [0, 0.5], [1, 1.0], [1, 0.5]]
    assert runs["pipeline"].eq("data_efficiency").all()
    assert runs["cell"].eq("scratch").all()
    assert runs["strategy"].eq("scratch").all()
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
    scratch = train_from_scratch(tiny.real_train, tiny.study, config)
    assert scratch["real_images"].tolist() == [96, 48, 24]  # 2 and 1 steps a pass over the two subsets
    assert optimizer_steps(tiny, scratch) == steps
    finetuned = train_finetuned(tiny.synthetic_runs, tiny.real_train, tiny.study, config)
    assert optimizer_steps(tiny, finetuned) == steps


def test_finetuning_keeps_the_lower_units_of_the_synthetic_student(tiny: TinyExperiment, tracking: str):
    config = DataEfficiencyConfig(seeds=[0], fractions=[0.5], last_units=[2, "all"])
    runs = train_finetuned(tiny.synthetic_runs, tiny.real_train, tiny.study, config)

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
        train_finetuned(tiny.synthetic_runs, tiny.real_train, tiny.study, config)
    assert set(tiny.store.iterdir()) == stored


def test_a_seed_without_a_synthetic_student_names_baselines_seeds(tiny: TinyExperiment):
    config = DataEfficiencyConfig(seeds=[0, 7], fractions=[0.5], last_units=[1])
    with pytest.raises(ValueError, match=r"synthetic baseline students of seed\(s\) \[7\].*baselines.seeds"):
        train_finetuned(tiny.synthetic_runs, tiny.real_train, tiny.study, config)


def test_the_convergence_check_trains_scratch_students_again_with_more_steps(tiny: TinyExperiment, tracking: str):
    check = ConvergenceCheck(budget_factor=3, seeds=[1])
    config = DataEfficiencyConfig(seeds=[0, 1], fractions=[0.5], convergence_check=check)
    runs = train_from_scratch(tiny.real_train, tiny.study, config)
    assert runs[["strategy", "seed"]].values.tolist() == [["scratch", 0], ["scratch", 1], ["scratch 3x steps", 1]]
    assert optimizer_steps(tiny, runs) == [POOL_STEPS, POOL_STEPS, 3 * POOL_STEPS]
    longer, shorter = runs.iloc[2], runs.iloc[1]  # the same subset of the same seed, three times the steps
    assert longer["real_images"] == shorter["real_images"]
    assert longer["student_key"] != shorter["student_key"]
    with pytest.raises(ValueError, match=r"convergence_check.seeds \[2\] are not in data_efficiency.seeds"):
        DataEfficiencyConfig(seeds=[0, 1], convergence_check=ConvergenceCheck(seeds=[2]))


def runs(strategy: str, fraction: float, label: str, accuracies: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pipeline": "data_efficiency",
            "cell": "finetune" if "last" in strategy else "scratch",
            "strategy": strategy,
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
            runs("scratch 2x steps", 1.0, "1", [0.855]),
            runs("scratch 2x steps", 0.5, "1/2", [0.65]),
        ]
    )
    finetune = runs("last 2", 0.5, "1/2", [0.8, 0.8])
    # Seed 2 of the baselines is no data-efficiency seed: left out, or the real mean would be 0.6.
    real, synthetic = baseline("real", [0.9, 0.8, 0.1]), baseline("synthetic", [0.5, 0.5, 0.5])
    config = DataEfficiencyConfig(seeds=[0, 1], fractions=[1, 0.5])  # the check: twice the steps for seed 0
    summary, metrics, figure, interactive = summarize_data_efficiency(real, synthetic, scratch, finetune, config)

    assert list(summary.columns[:4]) == ["strategy", "fraction", "fraction_label", "real_images"]
    summary = summary.set_index(["strategy", "fraction_label"])
    assert summary.loc[("scratch", "1"), "below_real_pp"] == pytest.approx(0.0)
    assert summary.loc[("scratch", "1/2"), "below_real_pp"] == pytest.approx(20.0)
    assert summary.loc[("last 2", "1/2"), "below_real_pp"] == pytest.approx(5.0)
    # Seed 0 with twice the steps: half a point better on the whole pool, five points on half of it.
    assert summary.loc[("scratch", "1"), "more_steps_gain_pp"] == pytest.approx(0.5)
    assert summary.loc[("scratch", "1/2"), "more_steps_gain_pp"] == pytest.approx(5.0)
    assert summary["converged"].dropna().to_dict() == {("scratch", "1"): True, ("scratch", "1/2"): False}
    assert summary.loc[("last 2", "1/2"), "real_images"] == 400
    assert summary.loc[("scratch 2x steps", "1/2"), "n"] == 1
    assert summary.loc[("scratch", "1/2"), "n"] == 2
    assert metrics["last 2.1/2.below_real_pp"] == {"value": pytest.approx(5.0), "step": 0}
    assert metrics["scratch.1/2.test_accuracy_mean"]["value"] == pytest.approx(0.65)
    # The PNG's figure: a line per strategy over the real images used, on a log2 axis, under the baselines.
    (axes,) = figure.axes
    assert axes.get_title() == "Data efficiency: fine-tuning the last units on a little real data"
    assert axes.get_xscale() == "log"
    lines = {line.get_label(): line for line in axes.get_lines()}
    assert list(lines["from scratch on the subset"].get_xdata()) == [400, 800]
    assert list(lines["from scratch on the subset"].get_ydata()) == pytest.approx([0.65, 0.85])
    assert {"synthetic student, last 2 units fine-tuned", "real-only, every real image"} <= set(lines)
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
    summary, _, _, _ = summarize_data_efficiency(real, synthetic, scratch, finetune, stricter)
    assert not summary["converged"].dropna().any()  # a half-point gain no longer counts as converged


def test_both_strategies_are_namespaces_and_only_finetuning_reads_the_synthetic_students():
    pipeline = create_pipeline()
    nodes = {node.namespace: node for node in pipeline.nodes if node.name != "build_study"}
    assert set(nodes) == {"data_efficiency.scratch", "data_efficiency.finetune", "data_efficiency"}
    assert nodes["data_efficiency.scratch"].outputs == ["data_efficiency.scratch.runs"]
    assert not any(name.startswith("baselines_") for name in nodes["data_efficiency.scratch"].inputs)
    assert nodes["data_efficiency.finetune"].outputs == ["data_efficiency.finetune.runs"]
    assert {"baselines_synthetic_runs", "real_train"} <= set(nodes["data_efficiency.finetune"].inputs)
    summary = nodes["data_efficiency"]
    assert {"baselines_real_runs", "data_efficiency.scratch.runs", "data_efficiency.finetune.runs"} <= set(
        summary.inputs
    )
    assert set(summary.outputs) == {
        "data_efficiency_summary",
        "data_efficiency_metrics",
        "data_efficiency_figure",
        "data_efficiency_interactive",
    }
