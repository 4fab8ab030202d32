"""An experiment read and run as a person would from a notebook: the library alone, no Kedro imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mind_the_gap.data.imageset import save_image_set

from ..conftest import striped_images

NOTEBOOK = """
import json, sys
import mlflow
import pandas as pd
from mind_the_gap.data.imageset import load_image_set
from mind_the_gap.experiments import baselines, layer_swap
from mind_the_gap.experiments.study import build_study, train_cell
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.training.config import TrainConfig

folder = sys.argv[1]
mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
names = ("real_train", "synthetic_train", "val", "test")
sets = {name: load_image_set(f"{folder}/{name}.safetensors") for name in names}
statistics = {"mean": [0.5], "std": [0.25]}
training = TrainConfig(epochs=1, batch_size=16, warmup_epochs=0, progress=False)
study = build_study(sets["val"], sets["test"], f"{folder}/students", statistics, StudentConfig(width=8), training)
seeds = baselines.BaselinesConfig(seeds=[0])
real = train_cell(study, "baselines", "real", baselines.plan("real", "real_train", seeds), sets)
config = layer_swap.LayerSwapConfig(seeds=[0], cuts=[8])
jobs = layer_swap.plan("prefix", "real", real, "synthetic_train", study.student, config)
swapped = train_cell(study, "layer_swap", "prefix_from_real", jobs, sets)
print(json.dumps({"kedro": sorted(m for m in sys.modules if m.split(".")[0] == "kedro"),
                  "kept": swapped["kept"].tolist(), "accuracy": swapped["test_accuracy"].tolist()}))
"""


def test_a_layer_swap_runs_from_a_notebook_without_kedro(tmp_path: Path):
    for name, seed in (("real_train", 0), ("synthetic_train", 3), ("val", 1), ("test", 2)):
        save_image_set(striped_images(8, seed=seed), tmp_path / f"{name}.safetensors")
    done = subprocess.run([sys.executable, "-c", NOTEBOOK, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kedro"] == []
    assert result["kept"] == ["0-7"]
    assert 0 <= result["accuracy"][0] <= 1
