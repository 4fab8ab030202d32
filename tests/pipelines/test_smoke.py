"""`kedro run --env smoke` of every registered pipeline, as a user runs them, and what lands in MLflow."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mlflow
import pandas as pd
import pytest
import torch
from kedro.framework.project import configure_project, pipelines

from mind_the_gap.devices import cpu_has_native_bf16
from mind_the_gap.hooks import MissingInputsError
from mind_the_gap.pipelines.ablations.pipeline import FACTORS as ABLATION_FACTORS
from mind_the_gap.runners.estimate import environment_parameters

from .conftest import REPO, make_project, run_pipeline, tracking_to
from .servers import free_port, get_json, mlflow_serving, serving

configure_project("mind_the_gap")
PIPELINES = sorted(name for name in pipelines if name != "__default__")
STUDENT_PIPELINES = ["baselines", "layer_swap", "data_efficiency", "normalization", "ablations", "levers", "stitching"]
# conf/smoke's data_efficiency arms (last_units: [2, all], reinit_last_units: [2]) and their convergence checks
ARMS = ["scratch", "last 2", "all", "last 2 re-initialised"]
STRATEGIES = [*ARMS, *(f"{arm} 2x steps" for arm in ARMS)]
LAYER_SWAP_CELLS = [  # the cross-source cells and their same-source controls
    "prefix_from_real",
    "prefix_from_synthetic",
    "prefix_real_control",
    "prefix_synthetic_control",
    "suffix_from_real",
    "suffix_from_synthetic",
    "suffix_real_control",
    "suffix_synthetic_control",
]
EPOCHS = 2  # training.epochs in conf/smoke
TRAIN_POOL = 160  # 16 images per class of the stand-in's 40 go to the students' real pool
# The figures drawn interactive too.
INTERACTIVE = [
    "layer_swap",
    "data_efficiency",
    "normalization",
    "ablations",
    "ablations_per_class",
    "levers",
    "stitching",
]
# The stitching arrangements (bottom_to_top), the reference first.
STITCHING = ["real_to_real", "real_to_synthetic", "synthetic_to_real", "synthetic_to_synthetic"]
# Every smoke student's learned metrics, per machine kind (the stamp: what decides the students' floating-point
# arithmetic), from the code before the library was reorganised: a refactoring must give the same students to the
# bit. A student a factor added later is in the references written since. `MIND_THE_GAP_WRITE_SMOKE_REFERENCE=1
# pytest tests/pipelines/test_smoke.py -k reference` writes this machine's anew, from a change that is meant to
# alter what students learn (or where no reference for its kind exists yet).
REFERENCE = Path(__file__).with_name("smoke_reference.json")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The one end-to-end run: the default pipeline on a fresh project, then every pipeline by name on its outputs."""
    root = make_project(tmp_path_factory.mktemp("smoke") / "project")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the raw data's path, a parameter, is relative to the project root
        run_pipeline(root)  # the default: all pipelines in dependency order
        for name in PIPELINES:
            run_pipeline(root, name)
    yield root


@pytest.fixture(scope="module")
def students(smoke: Path) -> pd.DataFrame:
    """Every student's MLflow run, with ``kedro_run`` the name of the `kedro run` it is nested in."""
    with tracking_to(f"sqlite:///{smoke / 'mlflow.db'}"):
        runs = mlflow.search_runs(experiment_names=["mind-the-gap-smoke"])
    names = runs.set_index("run_id")["tags.mlflow.runName"]
    runs["kedro_run"] = runs["tags.mlflow.parentRunId"].map(names)
    return runs[runs["tags.pipeline"].isin(STUDENT_PIPELINES)].copy()


def _learned_metrics(students: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Each student's final metrics by run name, without timings; a student reused by later runs logs the same."""
    columns = [c for c in students.columns if c.startswith("metrics.") and "seconds" not in c and "second" not in c]
    learned: dict[str, dict[str, float]] = {}
    for name, group in students.groupby("tags.mlflow.runName"):
        rows = {json.dumps(row.dropna().to_dict(), sort_keys=True) for _, row in group[columns].iterrows()}
        assert len(rows) == 1, f"{name}: its runs logged different metrics"
        learned[name] = json.loads(rows.pop())
    return learned


def _reference_stamp() -> dict[str, Any]:
    """What decides the students' floating-point arithmetic here: the precision bf16 autocast picks, the instructions
    its matrix products run on (AMX or AVX-512 BF16: students differed between the two) and the threads."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_native_bf16(),
        "cpu_amx": bool(getattr(torch.cpu, "get_capabilities", dict)().get("amx_bf16")),
        "cuda": torch.cuda.is_available(),
    }


def test_every_student_learns_what_the_reference_code_learned(students: pd.DataFrame):
    learned, stamp = _learned_metrics(students), _reference_stamp()
    references = json.loads(REFERENCE.read_text())["references"]
    if os.environ.get("MIND_THE_GAP_WRITE_SMOKE_REFERENCE") == "1":
        references = [r for r in references if r["stamp"] != stamp] + [{"stamp": stamp, "students": learned}]
        REFERENCE.write_text(json.dumps({"references": references}, indent=1, sort_keys=True) + "\n")
    matching = [r["students"] for r in references if r["stamp"] == stamp]
    if not matching:
        pytest.skip(f"no reference was measured on a machine like this one ({stamp})")
    reference = matching[0]
    assert not set(reference) - set(learned), "students of the reference were not trained"
    different = {name: (learned[name], metrics) for name, metrics in reference.items() if learned[name] != metrics}
    assert not different, f"{len(different)} students learned differently, first: {next(iter(different.items()))}"


def _parent_metric(db: sqlite3.Connection, run_name: str, key: str) -> list[float]:
    """The metric ``key`` of every top-level (`kedro run`) run named ``run_name``, oldest first."""
    rows = db.execute(
        """SELECT m.value FROM runs r
           JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = 'mlflow.runName' AND n.value = ?
           JOIN latest_metrics m ON m.run_uuid = r.run_uuid AND m.key = ?
           WHERE r.run_uuid NOT IN (SELECT run_uuid FROM tags WHERE key = 'mlflow.parentRunId')
           ORDER BY r.start_time""",
        (run_name, key),
    )
    return [value for (value,) in rows]


def test_every_pipeline_is_registered():
    assert set(PIPELINES) == {
        "data_processing",
        "generator_training",
        "generation",
        "baselines",
        "layer_swap",
        "data_efficiency",
        "normalization",
        "ablations",
        "levers",
        "stitching",
        "reporting",
    }


def test_smoke_run_writes_the_data_and_the_baselines(smoke: Path):
    counts = pd.read_csv(smoke / "data/smoke/08_reporting/real_data_summary.csv").set_index("class")
    assert (counts[["generator_pool", "train", "val"]].sum(axis=1) == 40).all()  # 40 per class in the stand-in
    statistics = json.loads((smoke / "data/smoke/02_intermediate/real_statistics.json").read_text())
    assert len(statistics["mean"]) == len(statistics["std"]) == 1
    assert 0 < statistics["mean"][0] < 1
    manifest = pd.read_csv(smoke / "data/smoke/03_primary/synthetic_manifest.csv")
    assert len(manifest) == 10 * 24
    assert manifest.groupby("class_index").size().eq(24).all()
    assert all((smoke / "data/smoke/03_primary/synthetic" / file).is_file() for file in manifest["file"])

    summary = pd.read_csv(smoke / "data/smoke/08_reporting/baselines_summary.csv").set_index("cell")
    assert list(summary.index) == ["real", "synthetic"]
    assert (summary["n"] == 2).all()
    assert summary["test_accuracy_mean"].between(0, 1).all()
    assert summary.loc["synthetic", "gap_pp"] == pytest.approx(
        100 * (summary.loc["real", "test_accuracy_mean"] - summary.loc["synthetic", "test_accuracy_mean"])
    )
    recognisability = pd.read_csv(smoke / "data/smoke/08_reporting/synthetic_recognisability.csv")
    assert list(recognisability.columns) == ["class", "recognisability"]
    assert len(recognisability) == 10
    for figure in ("real_samples", "generator_samples", "synthetic_samples", "layer_swap", "data_efficiency"):
        assert (smoke / f"data/smoke/08_reporting/{figure}.png").stat().st_size > 0, figure


def test_smoke_run_writes_the_layer_swap_table(smoke: Path):
    for cell in LAYER_SWAP_CELLS:  # one cut (5) and two seeds per cell
        runs = pd.read_csv(smoke / f"data/smoke/07_model_output/layer_swap/{cell}_runs.csv")
        assert runs["cell"].eq(cell).all()
        assert sorted(runs["seed"]) == [0, 1]
        assert runs["cut"].eq(5).all()
    table = pd.read_csv(smoke / "data/smoke/08_reporting/layer_swap_summary.csv", keep_default_na=False, na_values=[""])
    baselines = table[table["arrangement"] == "baseline"].set_index("cell")
    assert baselines["gap_recovered"].to_dict() == {"real": 1.0, "synthetic": 0.0}
    cells = table[table["arrangement"] != "baseline"].set_index("cell")
    assert sorted(cells.index) == LAYER_SWAP_CELLS
    assert cells["n"].eq(2).all()
    assert cells["kept"].to_dict() == {cell: "0-4" if cell.startswith("prefix") else "5-9" for cell in cells.index}
    assert cells["test_accuracy_mean"].between(0, 1).all()
    assert cells["gap_recovered_control"].notna().all()
    assert cells["headline"].tolist() == [cell == "prefix_from_synthetic" for cell in cells.index]  # cut 5 in smoke


def test_smoke_run_writes_the_data_efficiency_table(smoke: Path):
    summary = pd.read_csv(smoke / "data/smoke/08_reporting/data_efficiency_summary.csv", dtype={"fraction_label": str})
    assert set(zip(summary["strategy"], summary["fraction_label"], strict=True)) == {
        (strategy, label) for strategy in STRATEGIES for label in ("1", "1/2")
    }
    assert {"real_images", "test_accuracy_mean", "below_real_pp", "more_steps_gain_pp", "lr_factor"} <= set(
        summary.columns
    )
    assert sorted(set(summary["real_images"])) == [TRAIN_POOL // 2, TRAIN_POOL]
    # Two seeds each; the convergence check trains seed 0 of every arm again with twice the steps, and says for
    # each arm whether that helped.
    checked = summary["strategy"].str.endswith("2x steps")
    assert summary.loc[checked, "n"].eq(1).all()
    assert summary.loc[~checked, "n"].eq(2).all()
    assert sorted(summary.dropna(subset=["converged"])["strategy"]) == sorted(ARMS * 2)
    arms = summary[~checked]
    assert arms["vs_scratch_pp"].notna().tolist() == (arms["strategy"] != "scratch").tolist()
    assert arms.dropna(subset=["vs_scratch_pp"])["beats_scratch_between"].notna().all()
    # Each arm's learning rate chosen once, at 1/2, on the validation set, and used at every fraction; the arms
    # the reference code trained have one candidate each, their old rate.
    choice = pd.read_csv(smoke / "data/smoke/08_reporting/data_efficiency_learning_rate_summary.csv")
    assert list(zip(choice["arm"], choice["lr_factor"], strict=True)) == [
        ("scratch", 1.0),
        ("last 2", 0.1),
        ("all", 0.1),
        ("last 2 re-initialised", 0.1),
        ("last 2 re-initialised", 1.0),
    ]
    assert choice.groupby("arm")["chosen"].sum().eq(1).all()
    rates = choice[choice["chosen"]].set_index("arm")["lr_factor"]
    assert (summary["lr_factor"] == summary["strategy"].str.removesuffix(" 2x steps").map(rates)).all()
    # The student from scratch on the whole pool is the real baseline student, trained once.
    scratch = pd.read_csv(smoke / "data/smoke/07_model_output/data_efficiency/scratch_runs.csv")
    real = pd.read_csv(smoke / "data/smoke/07_model_output/baselines/real_runs.csv").set_index("seed")
    whole = scratch[(scratch["fraction"] == 1) & (scratch["strategy"] == "scratch")].set_index("seed")
    assert whole["student_key"].to_dict() == real["student_key"].to_dict()


def test_smoke_run_writes_the_normalization_tables(smoke: Path):
    reporting = smoke / "data/smoke/08_reporting"
    inputs = pd.read_csv(reporting / "normalization_input_statistics.csv")
    assert inputs["class"].tolist()[0] == "all"
    assert len(inputs) == 1 + 10
    assert inputs[["real_mean", "synthetic_mean", "wasserstein"]].notna().all().all()
    profile = pd.read_csv(reporting / "normalization_unit_profile.csv")
    assert profile["unit"].tolist() == list(range(10))
    assert profile["name"].iloc[-1] == "classifier"
    assert profile["bn_shift_mean"].iloc[:-1].ge(0).all()
    assert pd.isna(profile["bn_shift_mean"].iloc[-1])
    for column in ("probe_real_mean", "probe_synthetic_mean"):
        assert profile[column].between(0, 1).all(), column
    for column in ("cka_real_synthetic_mean", "cka_real_real_mean"):  # the unbiased estimator may dip below 0
        assert profile[column].between(-1, 1 + 1e-9).all(), column
    assert profile["cka_real_real_n"].eq(1).all()
    assert profile["cka_real_synthetic_n"].eq(2).all()
    summary = pd.read_csv(reporting / "normalization_summary.csv").set_index("variant")
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
    for figure in ("normalization", "normalization_histograms"):
        assert (reporting / f"{figure}.png").stat().st_size > 0, figure


def test_smoke_run_writes_the_levers_table(smoke: Path):
    summary = pd.read_csv(smoke / "data/smoke/08_reporting/levers_summary.csv", keep_default_na=False, na_values=[""])
    assert list(zip(summary["lever"], summary["variant"], strict=True)) == [
        ("none", "synthetic baseline"),
        ("distillation", "temperature 4"),
        ("more_images", "2x images, same epochs"),
        ("more_images", "2x images, same steps"),
        ("filtering", "judge keeps 50%"),
    ]
    assert summary["n"].eq(2).all()
    assert summary["swap_kept"].eq("0-4").all()  # conf/smoke's headline cut, 5
    # The pool is the generation's own set topped up in its folder: its first 24 images a class are that set.
    primary = smoke / "data/smoke/03_primary"
    own, pool = pd.read_csv(primary / "synthetic_manifest.csv"), pd.read_csv(primary / "levers/pool_manifest.csv")
    assert pool.groupby("class_index").size().eq(48).all()  # conf/smoke: 24 a class, more_images at 2x
    assert pool[pool["index"] < 24]["file"].tolist() == own["file"].tolist()
    filtered = pd.read_csv(smoke / "data/smoke/07_model_output/levers/filtering_manifest.csv")
    assert filtered.groupby("class_index").size().eq(24).all()  # the set's size, kept from 48 a class
    assert filtered["judge_confidence"].between(0, 1).all()
    for _, kept in filtered.groupby("class_index"):
        dropped = pool[(pool["class_index"] == kept["class_index"].iloc[0]) & ~pool["file"].isin(kept["file"])]
        assert len(dropped) == 24
    layer_swap = pd.read_csv(smoke / "data/smoke/08_reporting/layer_swap_summary.csv")
    headline = layer_swap[layer_swap["headline"].astype(str) == "True"].iloc[0]
    # The baselines' headline students are the layer swap's own: the same accuracy, to the bit.
    assert summary.loc[0, "swap_accuracy_mean"] == headline["test_accuracy_mean"]
    # A share of the gap left where a gap is left; none where the lever's students match the real ones.
    left = summary["gap_pp"].abs() > 1e-9
    assert summary.loc[left, "remaining_recovered"].notna().all()
    assert summary.loc[~left, "remaining_recovered"].isna().all()
    assert pd.isna(summary.loc[0, "vs_baseline_pp"])
    assert pd.notna(summary.loc[1, "vs_baseline_pp"])
    assert (smoke / "data/smoke/08_reporting/levers.png").stat().st_size > 0


def test_smoke_run_writes_the_stitching_table(smoke: Path):
    for arrangement in STITCHING:  # one cut (5) and two seeds: each seed's bottom with the other seed's top
        runs = pd.read_csv(
            smoke / f"data/smoke/07_model_output/stitching/{arrangement}_runs.csv", dtype={"top_key": str}
        )
        assert runs["arrangement"].eq(arrangement).all()
        assert runs[["seed", "top_seed", "cut"]].values.tolist() == [[0, 1, 5], [1, 0, 5]]
        assert (runs["bottom"] + "_to_" + runs["top"]).eq(arrangement).all()
    summary = pd.read_csv(
        smoke / "data/smoke/08_reporting/stitching_summary.csv", keep_default_na=False, na_values=[""]
    )
    assert list(zip(summary["cut"], summary["arrangement"], strict=True)) == [(5, a) for a in STITCHING]
    assert summary[["bottom_units", "top_units"]].drop_duplicates().values.tolist() == [["0-4", "5-9"]]
    assert summary["n"].eq(2).all()
    assert summary["test_accuracy_mean"].between(0, 1).all()
    columns = [
        "vs_real_real_pp",
        "vs_real_real_pp_ci95",
        "vs_real_real_pp_n",
        "vs_real_real_pp_p",
        "vs_real_real_pp_p_holm",
    ]
    assert set(columns) <= set(summary.columns)
    assert summary.loc[0, columns].isna().all()  # real-real is the reference
    compared = summary.iloc[1:]
    assert compared["vs_real_real_pp_n"].eq(2).all()
    reference = summary.loc[0, "test_accuracy_mean"]
    assert (compared["vs_real_real_pp"] - 100 * (compared["test_accuracy_mean"] - reference)).abs().max() < 1e-9
    assert (smoke / "data/smoke/08_reporting/stitching.png").stat().st_size > 0


def test_smoke_run_writes_the_ablations_tables(smoke: Path):
    reporting = smoke / "data/smoke/08_reporting"
    summary = pd.read_csv(reporting / "ablations_summary.csv")
    rows = set(zip(summary["factor"], summary["variant"], summary["trained_on"], strict=True))
    assert rows == {  # conf/smoke's ablations
        ("baseline", "standard", "real"),
        ("baseline", "standard", "synthetic"),
        ("augmentation", "none", "synthetic"),
        ("augmentation", "trivial_augment", "synthetic"),
        ("texture_shape", "local_shuffle", "synthetic"),
        ("reconstruction", "strength 0.5", "synthetic"),
        ("diversity", "guidance 1", "synthetic"),
        ("diversity", "guidance 1", "first 2 real, rest synthetic"),
        ("diversity", "guidance 1", "last 2 real, rest synthetic"),
        ("mixing", "50% real", "real + synthetic"),
        ("mixing", "all real + all synthetic", "real + synthetic"),
        ("mixing", "50% real, BN per source", "real + synthetic"),
        ("mixing", "all real + all synthetic, BN per source", "real + synthetic"),
    }
    assert summary["n"].eq(2).all()
    per_source = summary["variant"].str.endswith(", BN per source")
    assert summary.loc[per_source, "vs_shared_bn_pp"].notna().all()
    assert summary.loc[~per_source, "vs_shared_bn_pp"].isna().all()
    assert summary["test_accuracy_mean"].between(0, 1).all()
    real = summary[(summary["factor"] == "baseline") & (summary["trained_on"] == "real")]["test_accuracy_mean"].iloc[0]
    assert (summary["gap_pp"] - 100 * (real - summary["test_accuracy_mean"])).abs().max() < 1e-9
    views = pd.read_csv(reporting / "ablations_texture_shape_views.csv")
    assert len(views) == 3 * 2
    assert views["shape_bias"].between(0, 1).all()
    mixing = pd.read_csv(smoke / "data/smoke/07_model_output/ablations/mixing_runs.csv").set_index("variant")
    assert set(mixing.loc["50% real", "train_images"]) == {TRAIN_POOL}
    assert set(mixing.loc["all real + all synthetic", "train_images"]) == {TRAIN_POOL + 10 * 24}
    diversity = pd.read_csv(reporting / "ablations_diversity.csv")
    assert diversity["set"].tolist() == ["real", "synthetic (generation)", "guidance 1"]
    assert diversity["share_of_real_mean"].iloc[0] == 1
    assert diversity["judges"].eq(2).all()  # every seed's real student judges
    assert diversity["within_class_spread_mean"].gt(0).all()
    for measure in ("recognisability", "precision", "recall", "coverage"):
        assert diversity[f"{measure}_mean"].iloc[1:].between(0, 1).all(), measure
    assert diversity["recognisability_mean"].isna().iloc[0]  # the judges trained on the real pool
    per_class = pd.read_csv(reporting / "ablations_diversity_per_class.csv")
    assert len(per_class) == 2 * 3 * 10  # judges, sets, classes
    oracle = pd.read_csv(smoke / "data/smoke/03_primary/ablations/oracle_manifest.csv")
    assert set(oracle["variant"]) == {"strength 0.5"}
    assert len(oracle) == 10 * 24
    assert (reporting / "ablations.png").stat().st_size > 0


def test_smoke_run_writes_each_interactive_figure_as_one_version_per_run(smoke: Path):
    reporting = smoke / "data/smoke/08_reporting"
    for name in INTERACTIVE:  # written by the default run, then by the experiment's own run
        versions = sorted((reporting / f"{name}.json").glob(f"*/{name}.json"))
        assert len(versions) == 2, name
        assert json.loads(versions[-1].read_text())["data"], name
    # The latest layer-swap figure carries the summary's numbers: each line passes through its cell's mean ± CI.
    figure = json.loads(sorted((reporting / "layer_swap.json").glob("*/layer_swap.json"))[-1].read_text())
    table = pd.read_csv(reporting / "layer_swap_summary.csv", keep_default_na=False, na_values=[""])
    row = table[table["cell"] == "suffix_from_real"].iloc[0]
    (line,) = [
        t
        for t in figure["data"]
        if t["name"] == "units k..last kept from the real student, the rest trained on synthetic"
    ]
    assert line["x"][1] == row["cut"]
    assert line["y"][1] == pytest.approx(row["test_accuracy_mean"])
    assert line["error_y"]["array"][1] == pytest.approx(row["test_accuracy_ci95"])


def test_smoke_run_writes_the_report_and_logs_it_with_the_kedro_run(smoke: Path):
    reporting = smoke / "data/smoke/08_reporting"
    page, markdown = (reporting / "report.html").read_text(), (reporting / "report.md").read_text()
    baselines = pd.read_csv(reporting / "baselines_summary.csv").set_index("cell")
    real = f"{100 * baselines.loc['real', 'test_accuracy_mean']:.2f} %"
    assert real in page
    assert real in markdown
    assert "87.80 %" in page
    assert "Not run" not in page
    # The experiments' results as interactive figures (plotly.js inlined once), the image grids as PNGs.
    assert page.count('class="plotly-graph-div"') == len(INTERACTIVE)
    assert page.count("<img alt=") == 4
    assert page.count("plotly.js v") == 1
    assert not re.search(r"<script[^>]*\ssrc=", page)
    assert all(
        f"![{caption}]({name}.png)" in markdown
        for name, caption in (
            ("layer_swap", "Test accuracy against cut"),
            ("ablations", "What each factor does to the gap"),
            ("ablations_per_class", "Per-class gaps"),
            ("levers", "What each lever does to the gap"),
            ("stitching", "Stitched students' accuracy against cut"),
        )
    )
    with tracking_to(f"sqlite:///{smoke / 'mlflow.db'}"):
        default = mlflow.search_runs(
            experiment_names=["mind-the-gap-smoke"], filter_string="tags.mlflow.runName = '__default__'"
        )
        artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(default["run_id"].iloc[0])}
        logged = Path(mlflow.artifacts.download_artifacts(run_id=default["run_id"].iloc[0], artifact_path="report.md"))
    assert {"report.html", "report.md"} <= artifacts
    # The default run's report times every pipeline that ran before it (the hook hands it the times); the report
    # on disk is the last run's, `kedro run --pipeline reporting` alone here.
    times = logged.read_text().split("## Wall time of this run")[1]
    timed = set(re.findall(r"^\|\s*([a-z_]+)\s*\|", times, flags=re.MULTILINE))
    assert timed >= {name for name in PIPELINES if name != "reporting"}


def test_the_report_of_a_study_in_progress_names_what_has_not_run(project: Path):
    run_pipeline(project, "data_processing")
    run_pipeline(project, "reporting")  # its inputs are optional: no missing-input error
    page = (project / "data/smoke/08_reporting/report.html").read_text()
    assert "t-shirt/top" in page  # the data section
    for pipeline in STUDENT_PIPELINES:
        assert f"Not run: <code>kedro run --pipeline {pipeline}</code>" in page, pipeline
    assert "No experiment pipeline ran in this" in page


def test_mlflow_holds_one_run_per_student_of_every_cell(smoke: Path, students: pd.DataFrame):
    default = students[students["kedro_run"] == "__default__"]
    assert default["metrics.test_accuracy"].between(0, 1).all()
    baselines = default[default["tags.pipeline"] == "baselines"]
    assert sorted(baselines["tags.cell"]) == ["real"] * 2 + ["synthetic"] * 2

    layer_swap = default[default["tags.pipeline"] == "layer_swap"]
    grid = layer_swap.groupby(["tags.cell", "tags.cut", "params.seed"]).size()
    assert len(layer_swap) == len(grid) == len(LAYER_SWAP_CELLS) * 1 * 2  # cell, cut and seed
    assert sorted(set(layer_swap["tags.cell"])) == LAYER_SWAP_CELLS
    assert set(layer_swap["tags.cut"]) == {"5"}
    named_source = layer_swap["tags.cell"].str.extract(r"^(?:prefix|suffix)_(?:from_)?(real|synthetic)")[0]
    assert (layer_swap["tags.from"] == named_source).all()
    control = layer_swap["tags.cell"].str.endswith("_control")
    assert (layer_swap["tags.trained_on"] == layer_swap["tags.from"]).eq(control).all()
    assert set(zip(layer_swap["tags.cell"].str.split("_").str[0], layer_swap["tags.kept"], strict=True)) == {
        ("prefix", "0-4"),
        ("suffix", "5-9"),
    }
    assert "layer_swap/kept=0-4 real/rest synthetic/seed0" in set(layer_swap["tags.mlflow.runName"])

    efficiency = default[default["tags.pipeline"] == "data_efficiency"]
    candidates = efficiency[efficiency["tags.cell"] == "learning_rate"]
    assert len(candidates) == 3 + 2  # one learning rate for each old arm, two for the re-initialised, seed 0 at 1/2
    efficiency = efficiency[efficiency["tags.cell"] != "learning_rate"]
    grid = efficiency.groupby(["tags.strategy", "tags.fraction", "params.seed"]).size()
    assert len(efficiency) == len(grid) == 4 * 2 * 2 + 4 * 2  # arm, fraction and seed; each arm's check's seed 0
    assert set(efficiency["tags.strategy"]) == set(STRATEGIES)
    assert set(efficiency["tags.fraction"]) == {"1.0", "0.5"}
    assert "data_efficiency/last 2 units on 1/2 real/seed0" in set(efficiency["tags.mlflow.runName"])

    normalization = default[default["tags.pipeline"] == "normalization"]
    assert sorted(normalization["tags.mlflow.runName"]) == [
        f"normalization/synthetic statistics/seed{s}" for s in (0, 1)
    ]
    ablations = default[default["tags.pipeline"] == "ablations"]
    assert set(ablations["tags.cell"]) == {"augmentation", "texture_shape", "oracle", "diversity", "mixing"}
    assert "ablations/augmentation/trivial_augment/synthetic/seed1" in set(ablations["tags.mlflow.runName"])
    assert ablations.groupby(["tags.cell", "tags.variant", "tags.trained_on"]).size().eq(2).all()  # one per seed
    levers = default[default["tags.pipeline"] == "levers"]
    assert levers.groupby(["tags.cell", "tags.variant", "tags.trained_on"]).size().to_dict() == {
        ("distillation", "temperature 4", "last units real"): 2,
        ("distillation", "temperature 4", "synthetic"): 2,
        ("filtering", "judge keeps 50%", "last units real"): 2,
        ("filtering", "judge keeps 50%", "synthetic"): 2,
        ("judge", "judge", "generator pool"): 1,
        ("more_images", "2x images, same epochs", "last units real"): 2,
        ("more_images", "2x images, same epochs", "synthetic"): 2,
        ("more_images", "2x images, same steps", "last units real"): 2,
        ("more_images", "2x images, same steps", "synthetic"): 2,
        ("none", "synthetic baseline", "last units real"): 2,
    }
    # Each student of a generated set names its generation, its images and, filtered, its judge.
    generated = levers[
        levers["tags.cell"].isin(["more_images", "filtering"]) & (levers["tags.trained_on"] == "synthetic")
    ]
    own = pd.read_csv(smoke / "data/smoke/03_primary/synthetic_manifest.csv")
    assert generated["tags.generation_key"].eq(own["run_key"].iloc[0]).all()
    assert generated.groupby("tags.variant")["tags.set_digest"].nunique().eq(1).all()
    judge = pd.read_csv(smoke / "data/smoke/07_model_output/levers/judge_runs.csv", dtype={"student_key": str})
    filtered = generated[generated["tags.cell"] == "filtering"]
    assert filtered["tags.judge_key"].eq(judge["student_key"].iloc[0]).all()
    # Each distilled student names its teacher, the real baseline student of its seed.
    distilled = levers[(levers["tags.cell"] == "distillation") & (levers["tags.trained_on"] == "synthetic")]
    distilled = distilled.set_index("params.seed")
    real = pd.read_csv(smoke / "data/smoke/07_model_output/baselines/real_runs.csv", dtype={"student_key": str})
    teachers = real.set_index(real["seed"].astype(str))["student_key"]
    assert distilled["tags.teacher"].to_dict() == teachers.to_dict()
    assert distilled["params.distillation.teacher"].to_dict() == teachers.to_dict()
    assert distilled["params.distillation.temperature"].eq("4.0").all()

    # Each stitched student names what it joins: the bottom student of its seed and the top of the other seed.
    stitched = default[default["tags.pipeline"] == "stitching"]
    assert stitched.groupby(["tags.cell", "tags.cut"]).size().to_dict() == {(a, "5"): 2 for a in STITCHING}
    keys = {
        source: pd.read_csv(
            smoke / f"data/smoke/07_model_output/baselines/{source}_runs.csv", dtype={"student_key": str}
        ).set_index("seed")["student_key"]
        for source in ("real", "synthetic")
    }
    for row in stitched.to_dict("records"):
        seed, top_seed = int(row["params.seed"]), int(row["tags.top_seed"])
        assert top_seed == 1 - seed
        assert row["tags.bottom_key"] == row["params.stitch.bottom"] == keys[row["tags.bottom"]][seed]
        assert row["tags.top_key"] == row["params.stitch.top"] == keys[row["tags.top"]][top_seed]
        assert row["params.stitch.cut"] == "5"
    assert "stitching/synthetic 0-4 + real 5-9/seed0+1" in set(stitched["tags.mlflow.runName"])

    # Each pipeline run again by name reuses every student, and tracks each once more.
    for pipeline in STUDENT_PIPELINES:
        again = students[(students["kedro_run"] == pipeline) & (students["tags.pipeline"] == pipeline)]
        assert len(again) == (default["tags.pipeline"] == pipeline).sum()
        assert again["tags.cache_hit"].eq("true").all()


@pytest.fixture(scope="module")
def viz(smoke: Path) -> Iterator[str]:
    """`kedro viz run` on the smoke project, on 127.0.0.1 and a free port: its address."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("kedro")),
        "viz",
        "run",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-browser",
        "--env",
        "smoke",
    ]
    with serving(command, smoke, f"http://127.0.0.1:{port}/api/main"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def mlflow_server(smoke: Path) -> Iterator[str]:
    """`mlflow server` on the smoke project's database, on 127.0.0.1 and a free port: its address."""
    with mlflow_serving(smoke) as address:
        yield address


def _smoke_runs(mlflow_server: str) -> tuple[str, list[dict]]:
    api = f"{mlflow_server}/api/2.0/mlflow"
    experiment = get_json(f"{api}/experiments/get-by-name?experiment_name=mind-the-gap-smoke")["experiment"]
    runs, token = [], None
    while True:
        page = get_json(
            f"{api}/runs/search",
            {
                "experiment_ids": [experiment["experiment_id"]],
                "max_results": 500,
                **({"page_token": token} if token else {}),
            },
        )
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return experiment["experiment_id"], runs


def test_kedro_viz_serves_every_pipeline_with_its_cells_and_layers(viz: str):
    graph = get_json(f"{viz}/api/main")
    ablations = get_json(f"{viz}/api/pipelines/ablations")
    assert {pipeline["id"] for pipeline in graph["pipelines"]} == {*PIPELINES, "__default__"}
    groups = {node["id"] for node in graph["nodes"] if node["type"] == "modularPipeline"}
    assert {"layer_swap.prefix_from_real", "ablations.oracle", "normalization.synthetic_statistics"} <= groups
    assert {"intermediate", "primary", "model_input", "models", "model_output", "reporting"} <= set(graph["layers"])
    tasks = [node for node in ablations["nodes"] if node["type"] == "task"]
    cells = {group for node in tasks for group in node.get("modular_pipelines") or []}
    assert {f"ablations.{factor}" for factor in ABLATION_FACTORS} <= cells
    # The side panel's preview of an interactive figure: the plotly figure itself.
    (node,) = [node for node in graph["nodes"] if node["name"] == "layer_swap_interactive"]
    metadata = get_json(f"{viz}/api/nodes/{node['id']}")
    assert metadata["preview_type"] == "PlotlyPreview"
    assert metadata["preview"]["data"]


def test_mlflow_server_answers_with_every_students_test_accuracy(mlflow_server: str, students: pd.DataFrame):
    _, runs = _smoke_runs(mlflow_server)
    accuracy = {
        run["info"]["run_id"]: {m["key"]: m["value"] for m in run["data"].get("metrics", [])}.get("test_accuracy")
        for run in runs
    }
    assert set(students["run_id"]) <= set(accuracy)
    assert all(0 <= accuracy[run_id] <= 1 for run_id in students["run_id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's package, which `make test` installs where apt works) driven by Playwright."""
    executable = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if executable is None:
        pytest.skip("no Chromium on this machine (make test installs Debian's chromium where apt-get works)")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def _screenshot(page: Any, smoke: Path, name: str) -> None:
    folder = smoke / "data/smoke/08_reporting/screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=False)


# Each plotly div of the page by id: whether plotly.js drew it, an svg with its traces in it.
PLOTLY_DRAWN = """Object.fromEntries(Array.from(document.querySelectorAll('.plotly-graph-div')).map(div => [div.id,
    div.querySelector('svg.main-svg') !== null && div.querySelector('.trace') !== null]))"""


def test_a_person_sees_the_report_with_its_numbers_and_figures(smoke: Path, browser: Any):
    reporting = smoke / "data/smoke/08_reporting"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    page.goto((reporting / "report.html").as_uri())
    headings = page.locator("h2").all_inner_texts()
    assert headings == [
        "Headline",
        "Data",
        "Generated images",
        "Baselines",
        "Layer swap: which units carry the gap",
        "Data efficiency",
        "Normalization",
        "Ablations",
        "Levers",
        "Stitching",
        "Wall time of this run",
    ]
    assert page.locator(".not-run").count() == 0  # every experiment ran
    # The headline as a person reads it: one row per figure, the paper's value beside this run's.
    rows = page.evaluate(
        "Array.from(document.querySelector('table').rows).map(r => Array.from(r.cells, c => c.innerText))"
    )
    headline = {figure: (paper, this_run) for figure, paper, this_run in rows[1:]}
    real = pd.read_csv(reporting / "baselines_summary.csv").set_index("cell").loc["real"]
    paper, this_run = headline["real-only test accuracy"]
    assert paper == "87.80 %"
    mean, ci, seeds = 100 * real["test_accuracy_mean"], 100 * real["test_accuracy_ci95"], int(real["n"])
    assert this_run == f"{mean:.2f} % ± {ci:.2f} (n={seeds} seeds)"
    images = page.evaluate("Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)")
    assert images == [True] * 4  # every image grid decoded and drawn
    # Every interactive figure drawn by the inlined plotly.js: one plot per figure, each trace of it drawn.
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    drawn = page.evaluate(PLOTLY_DRAWN)
    assert drawn == {f"figure-{name}": True for name in INTERACTIVE}
    assert page.locator(".js-plotly-plot").count() == len(INTERACTIVE)
    for name in INTERACTIVE:
        latest = sorted((reporting / f"{name}.json").glob(f"*/{name}.json"))[-1]  # the version the report read
        figure = json.loads(latest.read_text())
        assert page.locator(f"#figure-{name} .trace").count() == len(figure["data"]), name
    legend = page.locator("#figure-layer_swap .legendtext").all_text_contents()
    layer_swap = json.loads(sorted((reporting / "layer_swap.json").glob("*/layer_swap.json"))[-1].read_text())
    assert {trace["name"] for trace in layer_swap["data"] if trace.get("showlegend", True)} <= set(legend)
    assert [url for url in fetched if not url.startswith(("file:", "data:"))] == []  # it opens offline
    page.locator("#figure-layer_swap").scroll_into_view_if_needed()
    _screenshot(page, smoke, "report")


def test_a_person_sees_every_pipeline_in_kedro_viz(smoke: Path, viz: str, browser: Any):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(viz)
    page.wait_for_selector("svg .pipeline-node", timeout=60_000)
    experiments = [
        "ablations",
        "baselines",
        "data_efficiency",
        "layer_swap",
        "levers",
        "normalization",
        "reporting",
        "stitching",
    ]
    # innerText holds only what is rendered: the experiments listed as groups of cells in the sidebar.
    page.wait_for_function(
        "names => names.every(n => document.body.innerText.split('\\n').includes(n))", arg=experiments, timeout=60_000
    )
    shown = page.evaluate("document.body.innerText.split('\\n')")
    missing = [name for name in experiments if name not in shown]
    assert missing == []
    # The flowchart: a node drawn, with its name, for each experiment's group of cells at least.
    names = [name for name in page.locator("svg .pipeline-node__text").all_text_contents() if name.strip()]
    assert len(names) >= len(experiments)
    _screenshot(page, smoke, "kedro_viz")


def test_a_person_compares_student_runs_in_the_mlflow_ui(smoke: Path, mlflow_server: str, browser: Any):
    experiment, runs = _smoke_runs(mlflow_server)
    baselines = [run for run in runs if run["info"]["run_name"].startswith("baselines/")][:4]
    assert len(baselines) == 4
    ids = json.dumps([run["info"]["run_id"] for run in baselines])
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(f"{mlflow_server}/#/compare-runs?runs={quote(ids)}&experiments={quote(json.dumps([experiment]))}")
    page.get_by_text("test_accuracy").first.wait_for(timeout=60_000)
    for run in baselines:
        page.get_by_text(run["info"]["run_name"], exact=True).first.wait_for(timeout=60_000)
    text = page.locator("body").inner_text()
    shown = [run["info"]["run_name"] for run in baselines if run["info"]["run_name"] in text]
    assert shown == [run["info"]["run_name"] for run in baselines]  # every compared run named on the page
    assert "test_accuracy" in text
    _screenshot(page, smoke, "mlflow_compare")


def test_every_student_curve_has_one_point_per_epoch(smoke: Path, students: pd.DataFrame):
    with sqlite3.connect(smoke / "mlflow.db") as db:
        points = pd.read_sql_query(
            """SELECT run_uuid, key, COUNT(*) AS n, MIN(step) AS first, MAX(step) AS last FROM metrics
               WHERE key IN ('train_loss', 'val_accuracy', 'test_accuracy') GROUP BY run_uuid, key""",
            db,
        ).pivot(index="run_uuid", columns="key")
    points = points.loc[students["run_id"]]
    assert points[("n", "train_loss")].eq(EPOCHS).all()
    assert points[("first", "train_loss")].eq(1).all()
    assert points[("n", "val_accuracy")].eq(EPOCHS).all()
    # The final metrics at the last epoch's step, never at step 0.
    assert points[("n", "test_accuracy")].eq(1).all()
    assert points[("first", "test_accuracy")].eq(EPOCHS).all()


def test_kedro_runs_log_their_summary_metrics(smoke: Path):
    with sqlite3.connect(smoke / "mlflow.db") as db:
        experiment = db.execute("SELECT name FROM experiments WHERE name = 'mind-the-gap-smoke'").fetchall()
        generated = _parent_metric(db, "__default__", "generation.images")
        regenerated = _parent_metric(db, "generation", "generation.images")
        reused = _parent_metric(db, "generation", "generation.images_reused")
        recognisability = _parent_metric(db, "__default__", "synthetic_recognisability.top1")
        gap_recovered = _parent_metric(db, "__default__", "layer_swap.prefix_from_real.0-4.test_accuracy_mean")
        below_real = _parent_metric(db, "__default__", "data_efficiency.last 2.1/2.below_real_pp")
        stitched = _parent_metric(db, "__default__", "stitching.synthetic_to_real.5.vs_real_real_pp")
    assert experiment
    assert generated == [240]
    assert regenerated == [0]
    assert reused == [240]
    assert len(recognisability) == 1
    assert 0.0 <= recognisability[0] <= 1.0
    assert len(gap_recovered) == 1
    assert len(below_real) == 1
    assert len(stitched) == 1


def test_results_notebook_runs_on_what_the_pipelines_wrote(smoke: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(smoke)
    monkeypatch.setenv("KEDRO_ENV", "smoke")  # the notebook reads the environment a user names, as kedro does
    notebook = json.loads((REPO / "notebooks/results.ipynb").read_text())
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    namespace: dict = {}
    try:
        exec(compile(code, "results.ipynb", "exec"), namespace)
    finally:
        mlflow.set_tracking_uri(None)
    assert set(namespace["students"]["tags.cell"]) == {"real", "synthetic"}
    assert namespace["baselines"]["cell"].tolist() == ["real", "synthetic"]
    assert len(namespace["recognisability"]) == 10
    assert len(namespace["layer_swap"]) == 2 + len(LAYER_SWAP_CELLS)
    assert len(namespace["data_efficiency"]) == len(STRATEGIES) * 2


def test_generator_training_needs_only_data_processing(project: Path):
    run_pipeline(project, "data_processing")
    run_pipeline(project, "generator_training")  # it once needed the baselines' students, so failed here
    assert json.loads((project / "data/smoke/06_models/generator_model.json").read_text())["reused"] is False
    assert (project / "data/smoke/08_reporting/generator_samples.png").stat().st_size > 0
    assert not (project / "data/smoke/07_model_output").exists()
    assert not (project / "data/smoke/03_primary").exists()


def test_an_experiment_on_a_fresh_project_says_in_one_line_what_to_run_first(project: Path):
    with pytest.raises(MissingInputsError) as error:
        run_pipeline(project, "layer_swap")
    message = str(error.value)
    assert "\n" not in message
    assert "baselines_real_runs (written by baselines)" in message
    assert "synthetic_train (written by generation)" in message
    assert "`kedro run --pipelines data_processing,generator_training,generation,baselines` first" in message
    written = [path for path in (project / "data").rglob("*") if path.is_file()]
    assert all(path.is_relative_to(project / "data/01_raw") for path in written)
    with tracking_to(f"sqlite:///{project / 'mlflow.db'}"):
        runs = mlflow.search_runs(search_all_experiments=True)
    # The `kedro run`'s MLflow run, which kedro-mlflow opens before the check, is closed as failed.
    assert runs["tags.mlflow.runName"].tolist() == ["layer_swap"]
    assert runs["status"].tolist() == ["FAILED"]


def test_cli_rejects_a_misspelt_parameter_before_any_work(project: Path):
    result = subprocess.run(
        [str(Path(sys.executable).with_name("kedro")), "run", "--env", "smoke", "--params", "training.epochz=3"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "epochz" in result.stdout + result.stderr
    assert not (project / "data/smoke/02_intermediate/real_train.safetensors").exists()


@pytest.mark.parametrize(
    ("params", "culprit"),
    [
        ({"training": {"epochs": 0}}, "epochs"),
        ({"student": {"arch": "vgg"}}, "arch"),
        ({"dataset": {"split": {"val": 1.5}}}, "val"),
        ({"generation": {"shard": "3/2"}}, "shard"),
        ({"generator_training": {"diffusion": {"stepz": 3}}}, "stepz"),
        ({"layer_swap": {"lower": "melted"}}, "lower"),
        ({"data_efficiency": {"min_steps": "half"}}, "min_steps"),
        ({"normalization": {"analysis_images": 1}}, "analysis_images"),
        ({"ablations": {"mixing": {"real_shares": [1.0]}}}, "real_shares"),
        ({"ablations": {"augmentation": {"policies": ["mixup"]}}}, "policies"),
    ],
)
def test_bad_parameter_values_fail_naming_the_key(project: Path, params, culprit):
    with pytest.raises(Exception, match=culprit):
        run_pipeline(project, params=params)
    assert not (project / "data/smoke/02_intermediate/real_train.safetensors").exists()


def test_bad_input_data_fails_with_one_clear_line(project: Path):
    (project / "data/01_raw/fashion_mnist/train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(Exception, match="missing train-labels-idx1-ubyte"):
        run_pipeline(project, "data_processing")
    assert not any((project / "data/smoke/02_intermediate").glob("*"))


# The switches by which the default (conf/base) leaves a factor's students to conf/full.
DEFAULT_OFF = [
    ("layer_swap", "arrangements"),
    ("data_efficiency", "reinit_last_units"),
    ("data_efficiency", "convergence_check"),
    ("normalization", "synthetic_statistics"),
    ("ablations", "augmentation", "policies"),
    ("ablations", "texture_shape", "sources"),
    ("ablations", "oracle", "reconstruction_strengths"),
    ("ablations", "diversity", "guidance_scales"),
    ("ablations", "mixing", "real_shares"),
    ("ablations", "mixing", "add_synthetic"),
    ("levers", "distillation", "temperatures"),
    ("levers", "more_images", "factors"),
    ("levers", "filtering", "keep_shares"),
]


def test_the_defaults_switches_run_every_pipeline_and_the_report_with_the_factors_off(
    smoke: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Every pipeline at smoke size with conf/base's values of the switches above: the factors it leaves off train
    nothing, and their tables and the report still come out, holding the baselines and the headline cells."""
    base = environment_parameters(REPO / "conf", "base")
    switches: dict[str, Any] = {}
    for path in DEFAULT_OFF:
        value = functools.reduce(lambda tree, key: tree[key], path, base)
        functools.reduce(lambda tree, key: tree.setdefault(key, {}), path[:-1], switches)[path[-1]] = value
    root = tmp_path / "project"
    shutil.copytree(smoke, root, symlinks=True)
    mlflow_yml = root / "conf" / "base" / "mlflow.yml"  # the copy's own database (make_project's absolute path)
    mlflow_yml.write_text(mlflow_yml.read_text().replace(f"sqlite:///{smoke}/", f"sqlite:///{root}/"))
    monkeypatch.chdir(root)
    run_pipeline(root, params=switches)
    reporting, runs = root / "data/smoke/08_reporting", root / "data/smoke/07_model_output"
    assert pd.read_csv(runs / "layer_swap/suffix_from_synthetic_runs.csv").empty  # base: prefixes alone
    swap = pd.read_csv(reporting / "layer_swap_summary.csv")
    assert set(swap["arrangement"]) == {"baseline", "prefix"}
    assert pd.read_csv(runs / "normalization/synthetic_statistics_runs.csv").empty
    variants = set(pd.read_csv(reporting / "normalization_summary.csv")["variant"])
    assert {"synthetic", "adabn_all"} <= variants
    assert not variants & {"synthetic_statistics", "own_statistics"}
    ablations = pd.read_csv(reporting / "ablations_summary.csv")
    assert set(ablations["factor"]) == {"baseline"}
    assert set(pd.read_csv(reporting / "levers_summary.csv")["lever"]) == {"none"}
    strategies = set(pd.read_csv(reporting / "data_efficiency_summary.csv")["strategy"])
    assert strategies
    assert not any("re-initialised" in strategy for strategy in strategies)
    page = (reporting / "report.html").read_text()
    for section in ("Headline", "Layer swap", "Data efficiency", "Ablations", "Levers", "Stitching"):
        assert section in page
    assert "Not run:" not in page
