"""The layer_swap pipeline: units kept from a baseline student of one source, the rest trained on the other, per
cut and seed; the summary's share of the gap each cell recovers."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
import torch

from mind_the_gap.analysis.statistics import gap_recovered, holm, mean_ci95
from mind_the_gap.experiments import layer_swap
from mind_the_gap.experiments.layer_swap import CELLS, LayerSwapConfig, cell_name, resolve_cuts, swap_ranges
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.pipelines.layer_swap.nodes import summarize_layer_swap, train_layer_swap
from mind_the_gap.pipelines.layer_swap.pipeline import create_pipeline
from mind_the_gap.training.student_cache import StudentStore

from .conftest import STUDENT, TinyExperiment

NARROW_UNITS = 10  # resnet_narrow numbered by blocks: stem, 8 blocks, classifier
CONFIG = LayerSwapConfig(seeds=[0, 1, 2], cuts=[3, 7], headline_cut=7)


def test_cuts_default_to_every_cut_and_are_sorted_once():
    assert resolve_cuts(LayerSwapConfig(cuts=None), STUDENT) == list(range(1, NARROW_UNITS))
    assert resolve_cuts(LayerSwapConfig(cuts=[7, 3, 7], headline_cut=7), STUDENT) == [3, 7]
    assert resolve_cuts(LayerSwapConfig(cuts=None), StudentConfig(arch="resnet18", units="layers"))[-1] == 17


@pytest.mark.parametrize("cut", [0, NARROW_UNITS, -1])
def test_a_cut_that_leaves_one_side_empty_names_the_valid_range(cut: int):
    with pytest.raises(ValueError, match=rf"layer_swap.cuts \[{cut}\].*units 0-9.*1-9"):
        resolve_cuts(LayerSwapConfig(cuts=[3, cut]), STUDENT)


@pytest.mark.parametrize(("cuts", "listed"), [([3, 7], r"\[3, 7\]"), (None, r"\[1, 2, .*, 9\]")])
def test_a_headline_cut_that_is_not_run_names_the_cuts(cuts: list[int] | None, listed: str):
    with pytest.raises(ValueError, match=rf"layer_swap.headline_cut 15 is not among the cuts run \({listed}\)"):
        resolve_cuts(LayerSwapConfig(cuts=cuts, headline_cut=15), STUDENT)


def test_the_default_headline_is_cut_8_the_last_block_and_the_classifier():
    config = LayerSwapConfig(cuts=[3, 7, 8])
    assert config.headline_cut == 8
    assert swap_ranges("prefix", config.headline_cut, NARROW_UNITS) == ("0-7", "8-9")


def test_only_the_arrangements_asked_for_train_and_the_headline_cut_may_have_seeds_of_its_own():
    config = LayerSwapConfig(seeds=[0, 1], cuts=[3, 8], headline_seeds=[0, 1, 2, 3], arrangements=["prefix"])
    parents = pd.DataFrame({"seed": range(4), "student_key": [f"synthetic{s}" for s in range(4)]})
    jobs = layer_swap.plan("prefix", "synthetic", parents, "real_train", STUDENT, config)
    assert [(job.columns["cut"], job.seed) for job in jobs] == [(3, 0), (3, 1), (8, 0), (8, 1), (8, 2), (8, 3)]
    assert jobs[-1].transfer.parent == "synthetic3"
    assert layer_swap.plan("suffix", "synthetic", parents, "real_train", STUDENT, config) == []
    with pytest.raises(ValueError, match=r"synthetic baseline students of seed\(s\) \[3\]"):
        layer_swap.plan("prefix", "synthetic", parents[parents["seed"] < 3], "real_train", STUDENT, config)


def test_swap_ranges_keep_the_head_for_prefixes_and_the_tail_for_suffixes():
    assert swap_ranges("prefix", 3, 10) == ("0-2", "3-9")
    assert swap_ranges("suffix", 3, 10) == ("3-9", "0-2")
    assert swap_ranges("prefix", 9, 10) == ("0-8", "9-9")


@pytest.mark.parametrize(
    ("arrangement", "source", "kept", "trained"),
    [
        ("prefix", "real", ["0-2", "0-6"], ["3-9", "7-9"]),
        ("prefix", "synthetic", ["0-2", "0-6"], ["3-9", "7-9"]),
        ("suffix", "real", ["3-9", "7-9"], ["0-2", "0-6"]),
        ("suffix", "synthetic", ["3-9", "7-9"], ["0-2", "0-6"]),
    ],
)
def test_a_cell_trains_one_tracked_student_per_cut_and_seed(
    tiny: TinyExperiment, tracking: str, arrangement: str, source: str, kept: list[str], trained: list[str]
):
    other = "synthetic" if source == "real" else "real"
    parents = tiny.real_runs if source == "real" else tiny.synthetic_runs
    other_train = tiny.synthetic_train if source == "real" else tiny.real_train
    config = LayerSwapConfig(seeds=[0, 1], cuts=[7, 3], headline_cut=7)
    runs = train_layer_swap(arrangement, source, other, parents, other_train, tiny.study, config)

    assert len(runs) == 4
    assert runs["student_key"].is_unique
    assert runs["pipeline"].eq("layer_swap").all()
    assert runs["cell"].eq(f"{arrangement}_from_{source}").all()
    assert runs[["cut", "seed"]].values.tolist() == [[3, 0], [3, 1], [7, 0], [7, 1]]
    assert runs["kept"].tolist() == [kept[0]] * 2 + [kept[1]] * 2
    assert runs["trained"].tolist() == [trained[0]] * 2 + [trained[1]] * 2
    assert runs["from"].eq(source).all()
    assert runs["trained_on"].eq(other).all()
    assert runs["real_units"].tolist() == (runs["kept"] if source == "real" else runs["trained"]).tolist()
    assert runs["test_accuracy"].between(0, 1).all()
    assert not runs["student_key"].isin(parents["student_key"]).any()

    tracked = mlflow.search_runs(experiment_names=["Default"], filter_string="tags.pipeline = 'layer_swap'")
    first = tracked.drop_duplicates("tags.student_key").set_index("tags.student_key").loc[runs["student_key"][0]]
    assert first["tags.mlflow.runName"] == f"layer_swap/kept={kept[0]} {source}/rest {other}/seed0"
    assert (first["tags.pipeline"], first["tags.cell"]) == ("layer_swap", f"{arrangement}_from_{source}")
    assert (first["tags.kept"], first["tags.from"], first["tags.trained_on"], first["tags.cut"]) == (
        kept[0],
        source,
        other,
        "3",
    )


def test_kept_units_are_the_parents_and_the_rest_is_trained_anew(tiny: TinyExperiment, tracking: str):
    config = LayerSwapConfig(seeds=[1], cuts=[3], headline_cut=3)
    runs = train_layer_swap("prefix", "real", "synthetic", tiny.real_runs, tiny.synthetic_train, tiny.study, config)
    store = StudentStore(tiny.store)
    child = store.load_model(runs["student_key"][0], STUDENT, tiny.real_train)
    parent = store.load_model(tiny.real_runs.set_index("seed").loc[1, "student_key"], STUDENT, tiny.real_train)
    parent_weights = dict(parent.named_parameters())
    same = {unit: [] for unit in range(NARROW_UNITS)}
    for name, weight in child.named_parameters():
        same[child.unit_of_parameter()[name]].append(torch.equal(weight, parent_weights[name]))
    assert all(all(same[unit]) for unit in (0, 1, 2))  # frozen, as copied from seed 1's real student
    assert not any(any(same[unit]) for unit in range(3, NARROW_UNITS))  # reinitialised and trained on synthetic


def test_a_seed_without_a_baseline_student_names_baselines_seeds(tiny: TinyExperiment, tracking: str):
    config = LayerSwapConfig(seeds=[0, 5], cuts=[3], headline_cut=3)
    with pytest.raises(ValueError, match=r"seed\(s\) \[5\].*baselines.seeds"):
        train_layer_swap("prefix", "real", "synthetic", tiny.real_runs, tiny.synthetic_train, tiny.study, config)


def test_a_same_source_control_retrains_the_rest_on_the_source_of_the_kept_units(tiny: TinyExperiment, tracking: str):
    config = LayerSwapConfig(seeds=[0], cuts=[3], headline_cut=3)
    runs = train_layer_swap("suffix", "real", "real", tiny.real_runs, tiny.real_train, tiny.study, config)
    (row,) = runs.to_dict("records")
    assert (row["cell"], row["kept"], row["from"], row["trained"], row["trained_on"]) == (
        "suffix_real_control",
        "3-9",
        "real",
        "0-2",
        "real",
    )
    assert row["real_units"] == "0-9"
    assert row["student_key"] not in set(tiny.real_runs["student_key"])
    tracked = mlflow.search_runs(experiment_names=["Default"], filter_string="tags.cell = 'suffix_real_control'")
    assert set(tracked["tags.mlflow.runName"]) == {"layer_swap/kept=3-9 real/rest real/seed0"}


def baseline_runs(cell: str, accuracies: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {"pipeline": "baselines", "cell": cell, "seed": range(len(accuracies)), "test_accuracy": accuracies}
    )


def cell_runs(
    arrangement: str, source: str, cut: int, accuracies: list[float], trained_on: str | None = None
) -> pd.DataFrame:
    trained_on = trained_on or ("synthetic" if source == "real" else "real")
    kept, trained = swap_ranges(arrangement, cut, NARROW_UNITS)
    return pd.DataFrame(
        {
            "pipeline": "layer_swap",
            "cell": cell_name(arrangement, source, trained_on),
            "arrangement": arrangement,
            "cut": cut,
            "kept": kept,
            "from": source,
            "trained": trained,
            "trained_on": trained_on,
            "real_units": kept if source == "real" else trained,
            "seed": range(len(accuracies)),
            "test_accuracy": accuracies,
        }
    )


def test_summary_places_each_cell_between_the_synthetic_and_the_real_students():
    # Seed 2 of the baselines is no layer-swap seed: left out of the reference, or the real mean would be 0.6.
    real, synthetic = baseline_runs("real", [0.9, 0.8, 0.1]), baseline_runs("synthetic", [0.5, 0.6, 0.0])
    halfway = cell_runs("prefix", "real", 3, [0.70, 0.70])
    all_the_way = cell_runs("suffix", "synthetic", 7, [0.80, 0.90])
    table, metrics, figure, interactive = summarize_layer_swap(real, synthetic, STUDENT, CONFIG, halfway, all_the_way)

    baselines = table[table["arrangement"] == "baseline"].set_index("cell")
    assert baselines.loc["real", "test_accuracy_mean"] == pytest.approx(0.85)
    assert baselines.loc["synthetic", "test_accuracy_mean"] == pytest.approx(0.55)
    assert baselines["gap_recovered"].to_dict() == {"real": 1.0, "synthetic": 0.0}
    assert baselines["from"].to_dict() == {"real": "real", "synthetic": "synthetic"}
    assert baselines.loc["real", "real_units"] == "0-9"
    assert baselines.loc["synthetic", "real_units"] == ""
    cells = table[table["arrangement"] != "baseline"].set_index("cell")
    assert cells.loc["prefix_from_real", "gap_recovered"] == pytest.approx(0.5)
    assert cells.loc["suffix_from_synthetic", "gap_recovered"] == pytest.approx(1.0)
    assert cells.loc["suffix_from_synthetic", "real_units"] == "0-6"
    assert cells["n"].eq(2).all()
    assert metrics["prefix_from_real.0-2.gap_recovered"] == {"value": pytest.approx(0.5), "step": 0}
    assert metrics["prefix_from_real.0-2.test_accuracy_mean"]["value"] == pytest.approx(0.7)
    # The PNG's figure: accuracy against cut, a line per cell through its cuts, between the baselines.
    (axes,) = figure.axes
    assert figure.get_suptitle() == "Layer swap: which units carry the gap"
    cells = {bars.get_label(): bars.lines[0] for bars in axes.containers}  # each cell's line with its error bars
    png_prefix = cells["units 0..k-1 kept from the real student, the rest trained on synthetic"]
    assert list(png_prefix.get_xdata()) == [0, 3, NARROW_UNITS]
    assert list(png_prefix.get_ydata()) == pytest.approx([0.55, 0.70, 0.85])
    assert {line.get_label() for line in axes.get_lines()} >= {"real-only", "synthetic-only"}

    # The interactive figure: each line runs from a baseline through its cell's cuts to the other baseline.
    lines = {trace.name: trace for trace in interactive.data}
    prefix = lines["units 0..k-1 kept from the real student, the rest trained on synthetic"]
    suffix = lines["units k..last kept from the synthetic student, the rest trained on real"]
    assert prefix.x == (0, 3, NARROW_UNITS)
    assert prefix.y == pytest.approx((0.55, 0.70, 0.85))
    _, ci = mean_ci95([0.80, 0.90])
    assert suffix.y == pytest.approx((0.55, 0.85, 0.85))
    assert suffix.error_y.array == pytest.approx((0, ci, 0))
    assert suffix.line.dash == "dash"
    assert prefix.line.dash == "solid"
    assert interactive.layout.xaxis.ticktext[7] == "7<br>block7"
    real_only = next(shape for shape in interactive.layout.shapes if shape.name == "real-only")
    band = next(shape for shape in interactive.layout.shapes if shape.type == "rect" and shape.y1 > 0.8)
    assert real_only.y0 == pytest.approx(0.85)
    assert (band.y0, band.y1) == pytest.approx((0.85 - ci, 0.85 + ci))


def test_summary_pairs_each_cell_with_its_parent_and_measures_the_gap_against_the_controls_too():
    real, synthetic = baseline_runs("real", [0.90, 0.86, 0.88]), baseline_runs("synthetic", [0.80, 0.78, 0.76])
    last_units_real = cell_runs("prefix", "synthetic", 7, [0.86, 0.83, 0.82])
    real_control = cell_runs("prefix", "real", 7, [0.89, 0.85, 0.86], trained_on="real")
    synthetic_control = cell_runs("prefix", "synthetic", 7, [0.79, 0.77, 0.74], trained_on="synthetic")
    table, metrics, figure, _ = summarize_layer_swap(
        real, synthetic, STUDENT, CONFIG, last_units_real, real_control, synthetic_control
    )
    cells = table[table["arrangement"] != "baseline"].set_index("cell")

    # Against the parent, the synthetic student of the same seed: 0.06, 0.05, 0.06, mean 5.667 points; sd 0.0057735,
    # half-width 4.30265 * 0.0057735 / sqrt(3) = 1.434 points.
    row = cells.loc["prefix_from_synthetic"]
    assert row["vs_parent_pp"] == pytest.approx(17 / 3)
    assert row["vs_parent_pp_ci95"] == pytest.approx(1.4342, abs=1e-4)
    assert row["vs_parent_pp_n"] == 3
    # Against the baselines: (0.06, 0.05, 0.06) over (0.10, 0.08, 0.12), seed by seed; against the controls at the
    # same arrangement and cut: (0.07, 0.06, 0.08) over (0.10, 0.08, 0.12).
    assert row["gap_recovered"] == pytest.approx(0.17 / 0.30)
    expected = gap_recovered([0.86, 0.83, 0.82], [0.80, 0.78, 0.76], [0.90, 0.86, 0.88])
    assert (row["gap_recovered_low"], row["gap_recovered_high"]) == pytest.approx((expected.low, expected.high))
    assert row["gap_recovered_method"] == expected.method
    assert row["gap_recovered_control"] == pytest.approx(0.7)
    expected = gap_recovered([0.86, 0.83, 0.82], [0.79, 0.77, 0.74], [0.89, 0.85, 0.86])
    assert row["gap_recovered_control_low"] == pytest.approx(expected.low)
    assert bool(row["headline"])
    # A control is its own reference, and its difference to its parent is what retraining costs by itself.
    control = cells.loc["prefix_real_control"]
    assert control["vs_parent_pp"] == pytest.approx(-4 / 3)
    assert control["gap_recovered_control"] == 1.0
    assert cells.loc["prefix_synthetic_control", "gap_recovered_control"] == 0.0
    assert not cells.loc[["prefix_real_control", "prefix_synthetic_control"], "headline"].any()
    # One family: the three cells' comparisons with their parents, Holm-corrected together.
    assert cells["vs_parent_pp_p_holm"].tolist() == pytest.approx(holm(cells["vs_parent_pp_p"].tolist()))
    assert metrics["prefix_from_synthetic.0-6.gap_recovered_control"]["value"] == pytest.approx(0.7)
    assert metrics["prefix_from_synthetic.0-6.vs_parent_pp"]["value"] == pytest.approx(17 / 3)
    # The controls have a panel of their own.
    top, bottom = figure.axes
    assert {bars.get_label() for bars in bottom.containers} == {
        "units 0..k-1 kept from the real student, the rest retrained on real",
        "units 0..k-1 kept from the synthetic student, the rest retrained on synthetic",
    }
    assert [bars.get_label() for bars in top.containers] == [
        "units 0..k-1 kept from the synthetic student, the rest trained on real"
    ]


def test_summary_of_cells_without_students_keeps_the_baseline_rows():
    real, synthetic = baseline_runs("real", [0.9]), baseline_runs("synthetic", [0.5])
    table, metrics, _, interactive = summarize_layer_swap(
        real, synthetic, STUDENT, CONFIG, pd.DataFrame(), pd.DataFrame()
    )
    assert table["arrangement"].tolist() == ["baseline", "baseline"]
    assert metrics == {}
    assert interactive.data == ()
    assert {shape.name for shape in interactive.layout.shapes} >= {"real-only"}


def test_every_cell_and_its_control_is_a_namespace_reading_its_parents_and_its_training_source():
    pipeline = create_pipeline()
    trainers = {node.namespace: node for node in pipeline.nodes if node.name.endswith("train_students")}
    assert set(trainers) == {
        f"layer_swap.{name}"
        for a in ("prefix", "suffix")
        for name in (f"{a}_from_real", f"{a}_from_synthetic", f"{a}_real_control", f"{a}_synthetic_control")
    }
    for cell, (_, source, trained_on) in CELLS.items():
        node = trainers[f"layer_swap.{cell}"]
        assert {f"baselines_{source}_runs", f"{trained_on}_train", "study"} <= set(node.inputs)
        if trained_on != source:
            assert f"{source}_train" not in node.inputs
        assert node.outputs == [f"layer_swap.{cell}.runs"]
    (summary,) = pipeline.only_nodes_with_outputs("layer_swap_summary").nodes
    assert {f"{namespace}.runs" for namespace in trainers} <= set(summary.inputs)
    assert "params:layer_swap" in summary.inputs
    assert set(summary.outputs) == {
        "layer_swap_summary",
        "layer_swap_metrics",
        "layer_swap_figure",
        "layer_swap_interactive",
    }
