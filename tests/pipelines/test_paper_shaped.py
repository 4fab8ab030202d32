"""`kedro run --env paper` end to end at a size a CPU runs in minutes: `conf/paper` with only its sizes changed.

The environment `paper_shaped` (see ``paper_shaped.size_overlay``) is every file of `conf/paper` with these settings
changed, and nothing else:
- data: an ImageNet-layout folder (`train/`, `val/`) of 20 + 6 JPEGs a class of 4 of the paper's class ids, and
  one class folder outside ImageNet-100 that must be skipped; RGB, CMYK, grey and EXIF-rotated JPEGs of about
  112 x 104 px; `dataset.path` that folder, `dataset.classes` the 4 ids, `dataset.image_size: 96` (above 64 px, so
  the students have the ImageNet stem, not the small-image one);
- students: `resnet50` numbered by `blocks` (18 units), as in `conf/paper` (ResNet-50 has no width setting:
  `student.width` only narrows `resnet_narrow`); `training.epochs: 1`, `warmup_epochs: 0`, `batch_size: 16`
  with `lr: 0.00625` (`conf/paper`'s 0.1 for batches of 256, scaled with the batch: at 0.1, 16-image batches make
  ResNet-50's logits diverge within the epoch, test losses of 1e9 to 1e13), `eval_batch_size: 32`,
  `training.device` the device under test, `training.allow_cpu: true`;
- seeds `[0, 1]` for the baselines, the normalisation study (which compares students of two seeds) and stitching
  (which joins students of two seeds: 4 arrangements at cut 15, each stitched student storing its stitching layer
  alone), `[0]` for the layer swap, data efficiency, ablations and levers, so the run trains 55 students: at
  ResNet-50's 94 MB a student, about 3.5 GB of disk;
- one or two cells a factor: layer-swap cut 15 (the paper's last three units) with its same-source controls; data
  efficiency on half the real pool, `last_units: [1, all]` beside `conf/paper`'s re-initialised last 2, each arm's
  rate from a grid of one value at 1/2 (no extra candidate students), the convergence check for every arm;
  normalisation on 16 analysis and 16 probe images, CKA minibatches of 8; ablations
  with TrivialAugment and local shuffles on synthetic students, oracle img2img at strength 0.5 and Stable unCLIP
  (`oracle.unclip: true`, as in `conf/paper`), guidance scales 1, 2 and 4 (2 is the generation's own), 8 images a
  class for the spread, mixing at 50 % real (BatchNorm statistics shared and per source, as `conf/paper`); 4
  synthetic images a class in the baselines' sample grid; the levers at `conf/paper`'s settings (distillation at
  its temperature, more images at 2x at the same epochs and at the same steps, the CLIP judge keeping 80 % and
  50 %, each with the headline swap from its student; the synthetic baseline's headline swap is the layer swap's
  own);
- generation: tiny random-weight Stable Diffusion (also img2img's) and Stable unCLIP pipelines, saved as local
  folders and loaded by `model_id` through `from_pretrained` with `HF_HUB_OFFLINE=1`; 12 images a class in batches
  of 8, 4 steps, at 128 px (`generation.height`/`width`, `unclip_height`/`unclip_width`: the tiny models' native
  size) resized to 96; `generation.device` the device under test, `generation.allow_cpu: true`; a tiny
  random-weight CLIP saved as a folder, `levers.filtering.clip_model_id`, which `judge: auto` finds and uses.

The runs, each a `kedro run --env paper_shaped` in a throw-away project: the generation, the ablations' oracle
and diversity sets and the levers' pool generated in two shards, each stopping after its images:
`generation.shard=0/2`, then shard 1 of 2 as a launcher starts it (`RANK=1`, `WORLD_SIZE=2`), killed (SIGKILL) once
it has written an image and started again; then the default run (every pipeline), whose generation packs the
shards' images, with each node's memory logged (``MIND_THE_GAP_MEMORY_LOG``); then the default run again, which
trains and generates nothing. The same test runs on a GPU machine with `-m gpu`, on `cuda`.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors import safe_open

from mind_the_gap.data.imageset import load_image_set
from mind_the_gap.models.architectures import SMALL_INPUT_MAX, StudentConfig
from mind_the_gap.runners.estimate import environment_parameters

from .paper_shaped import (
    CLASSES,
    ENV,
    EXTRA_CLASS,
    kedro_run,
    kedro_run_killed,
    make_paper_shaped_project,
    save_tiny_models,
    size_overlay,
    write_imagenet_folder,
)

pytestmark = pytest.mark.slow

TRAIN_PER_CLASS, VAL_PER_CLASS = 20, 6  # the folder's; conf/paper's 5 % validation split takes 1 a class
IMAGES_PER_CLASS = 12  # generated, per set
# The sets generated: the generation's own (also the diversity factor's guidance 2), the oracle's two, and the
# diversity factor's other two guidance scales; the levers' pool tops up the generation's own to twice its images.
GENERATED_SETS = 5
POOL_EXTRA = IMAGES_PER_CLASS  # conf/paper's levers.more_images at 2x
STUDENTS = 55  # the overlay's grid (see the module docstring); each reused student is trained once
UNITS = 18  # ResNet-50 numbered by blocks: stem, 16 bottlenecks, classifier
# What a node may hold at most, in live image and feature tensors, as a multiple of the largest image set it reads:
# the set, a part of it or of another one being built, the study's validation and test sets, and features.
MEMORY_MULTIPLE = 3
SHARD_NODES = (
    "generate_synthetic_images,ablations.oracle.generate,ablations.diversity.generate,levers.pool.generate_images"
)
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(
                not torch.cuda.is_available(), reason="CUDA is not available on this machine: run it on a GPU machine"
            ),
        ],
    ),
]


def _pngs(data: Path) -> set[Path]:
    return set((data / "03_primary").rglob("*.png"))


def _files(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


@dataclass(frozen=True)
class PaperShapedRun:
    """The project, and what the shards, the default run and its repetition left behind."""

    project: Path
    memory: pd.DataFrame  # one row per node run: see mind_the_gap.hooks.MemoryHook
    pngs_per_shard: list[set[Path]]  # after shard 0/2, when shard 1/2 was killed, after it resumed
    packed_after_shards: bool
    pngs_after_run: set[Path]
    students_after_run: set[Path]
    pngs_after_rerun: set[Path]
    students_after_rerun: set[Path]

    @property
    def data(self) -> Path:
        return self.project / "data" / "paper"

    @property
    def reporting(self) -> Path:
        return self.data / "08_reporting"


@pytest.fixture(scope="module", params=DEVICES)
def paper_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaperShapedRun]:
    root = tmp_path_factory.mktemp("paper_shaped")
    dataset = write_imagenet_folder(root / "imagenet", TRAIN_PER_CLASS, VAL_PER_CLASS)
    stable_diffusion, unclip, clip = save_tiny_models(root / "models")
    overlay = size_overlay(dataset, stable_diffusion, unclip, clip, request.param)
    project = make_paper_shaped_project(root / "project", overlay)
    memory_log = root / "memory.jsonl"
    run = functools.partial(kedro_run, project, hf_home=root / "hf", memory_log=memory_log)
    data = project / "data" / "paper"

    run(
        "--pipelines",
        "data_processing,generator_training,generation,ablations,levers",
        *("--to-nodes", SHARD_NODES, "--params", "generation.shard=0/2"),
    )
    first_shard = _pngs(data)
    # The second shard as a launcher starts it (RANK 1 of WORLD_SIZE 2), killed once it has written an image, then
    # started again: it makes the images it had not made.
    launcher = {"RANK": "1", "WORLD_SIZE": "2"}
    second_shard = ("--pipelines", "generation,ablations,levers", "--to-nodes", SHARD_NODES)
    killed = functools.partial(kedro_run_killed, project, *second_shard, hf_home=root / "hf", environment=launcher)
    killed(when=lambda: len(_pngs(data)) > len(first_shard))
    pngs_when_killed = _pngs(data)
    run(*second_shard, environment=launcher)
    pngs_per_shard = [first_shard, pngs_when_killed, _pngs(data)]
    packed_after_shards = (data / "05_model_input" / "synthetic_train.safetensors").exists()
    run()
    pngs_after_run, students_after_run = _pngs(data), _files(data / "06_models" / "students")
    run()
    memory = pd.read_json(memory_log, lines=True)
    yield PaperShapedRun(
        project,
        memory,
        pngs_per_shard,
        packed_after_shards,
        pngs_after_run,
        students_after_run,
        _pngs(data),
        _files(data / "06_models" / "students"),
    )
    shutil.rmtree(root)  # 2.5 GB, nearly all of it students: pytest would keep three runs' worth


def test_the_environment_is_conf_paper_with_only_the_overlay_changed(tmp_path: Path):
    overlay = size_overlay(tmp_path / "imagenet", tmp_path / "sd", tmp_path / "unclip", tmp_path / "clip", "cpu")
    project = make_paper_shaped_project(tmp_path / "project", overlay)

    paper, shaped = environment_parameters(project / "conf", "paper"), environment_parameters(project / "conf", ENV)
    assert shaped.keys() == paper.keys()
    changed = {
        (section, key)
        for section in paper
        for key in paper[section] | shaped[section]
        if paper[section].get(key) != shaped[section].get(key)
    }
    assert changed == {(section, key) for section, settings_ in overlay.items() for key in settings_}
    assert shaped["student"] == paper["student"]
    assert StudentConfig(**shaped["student"]) == StudentConfig(arch="resnet50", units="blocks")
    assert shaped["ablations"]["oracle"]["unclip"] is True
    assert shaped["generation"]["backend"] == "stable_diffusion"
    assert shaped["generation"]["prompts"]["mode"] == "fitymi"


def test_the_real_data_is_the_four_paper_classes_at_96_px_the_extra_folder_skipped(paper_run: PaperShapedRun):
    summary = pd.read_csv(paper_run.reporting / "real_data_summary.csv").set_index("class")
    assert summary.index.tolist() == CLASSES
    assert EXTRA_CLASS not in summary.index
    assert (summary["train"] + summary["val"]).eq(TRAIN_PER_CLASS).all()
    assert summary["test"].eq(VAL_PER_CLASS).all()
    for split in ("train", "val", "test"):
        images = load_image_set(paper_run.data / "02_intermediate" / f"real_{split}.safetensors")
        assert images.class_names == tuple(CLASSES)
        assert images.channels == 3
        assert images.image_size == (96, 96)
    assert 96 > SMALL_INPUT_MAX  # so the students have the ImageNet stem


def test_the_students_are_resnet50_with_the_imagenet_stem(paper_run: PaperShapedRun):
    # The largest checkpoint is a whole student's (a stitched student's holds its stitching layer alone).
    checkpoints = [path for path in paper_run.students_after_run if path.suffix == ".safetensors"]
    checkpoint = max(checkpoints, key=lambda path: path.stat().st_size)
    with safe_open(checkpoint, "pt") as weights:
        stem = weights.get_tensor("0.0.weight")
        classifier = weights.get_tensor(f"{UNITS - 1}.2.weight")
    assert stem.shape == (64, 3, 7, 7)  # the ImageNet stem's 7x7 convolution, stride 2
    assert classifier.shape == (len(CLASSES), 2048)
    profile = pd.read_csv(paper_run.reporting / "normalization_unit_profile.csv")
    assert profile["unit"].tolist() == list(range(UNITS))
    assert profile["name"].tolist() == ["stem", *(f"block{i}" for i in range(1, UNITS - 1)), "classifier"]


def test_each_shard_generates_its_half_a_killed_one_resumes_and_the_unsharded_run_only_packs(
    paper_run: PaperShapedRun,
):
    first, killed, both = paper_run.pngs_per_shard
    total = (GENERATED_SETS * IMAGES_PER_CLASS + POOL_EXTRA) * len(CLASSES)
    assert len(first) == total // 2
    assert first < killed < both  # killed part-way, by RANK's shard
    assert len(both) == total
    assert not paper_run.packed_after_shards  # each shard stopped after its images
    assert paper_run.pngs_after_run == both  # the default run generated nothing: the shards made every image
    manifest = pd.read_csv(paper_run.data / "03_primary" / "synthetic_manifest.csv")
    assert len(manifest) == len(CLASSES) * IMAGES_PER_CLASS
    packed = load_image_set(paper_run.data / "05_model_input" / "synthetic_train.safetensors")
    assert packed.image_size == (96, 96)
    assert packed.class_counts().tolist() == [IMAGES_PER_CLASS] * len(CLASSES)


def test_every_experiment_summary_has_its_rows(paper_run: PaperShapedRun):
    reporting = paper_run.reporting
    baselines = pd.read_csv(reporting / "baselines_summary.csv").set_index("cell")
    assert baselines.index.tolist() == ["real", "synthetic"]
    assert baselines["n"].eq(2).all()

    layer_swap = pd.read_csv(reporting / "layer_swap_summary.csv", keep_default_na=False, na_values=[""])
    cells = layer_swap[layer_swap["arrangement"] != "baseline"].set_index("cell")
    assert cells["kept"].to_dict() == {
        "prefix_from_real": "0-14",
        "prefix_from_synthetic": "0-14",
        "suffix_from_real": "15-17",
        "suffix_from_synthetic": "15-17",
        "prefix_real_control": "0-14",
        "prefix_synthetic_control": "0-14",
        "suffix_real_control": "15-17",
        "suffix_synthetic_control": "15-17",
    }

    efficiency = pd.read_csv(reporting / "data_efficiency_summary.csv", dtype={"fraction_label": str})
    rows = set(zip(efficiency["strategy"], efficiency["fraction_label"], strict=True))
    arms = ["scratch", "last 1", "all", "last 2 re-initialised"]
    assert rows == {(strategy, "1/2") for arm in arms for strategy in (arm, f"{arm} 2x steps")}

    normalization = pd.read_csv(reporting / "normalization_summary.csv").set_index("variant")
    assert set(normalization.index) == {
        "real",
        "synthetic",
        "adabn_all",
        "adabn_15-17",
        "synthetic_statistics",
        "own_statistics",
    }
    profile = pd.read_csv(reporting / "normalization_unit_profile.csv")
    columns = ["cka_real_synthetic_mean", "cka_real_real_mean", "probe_real_mean", "probe_synthetic_mean"]
    assert profile[columns].notna().all().all()

    ablations = pd.read_csv(reporting / "ablations_summary.csv")
    rows = set(zip(ablations["factor"], ablations["variant"], ablations["trained_on"], strict=True))
    assert rows == {
        ("baseline", "standard", "real"),
        ("baseline", "standard", "synthetic"),
        ("augmentation", "trivial_augment", "synthetic"),
        ("texture_shape", "local_shuffle", "synthetic"),
        ("reconstruction", "strength 0.5", "synthetic"),
        ("oracle", "unclip", "synthetic"),
        ("mixing", "50% real", "real + synthetic"),
        ("mixing", "all real + all synthetic", "real + synthetic"),
        ("mixing", "50% real, BN per source", "real + synthetic"),
        ("mixing", "all real + all synthetic, BN per source", "real + synthetic"),
    } | {
        ("diversity", f"guidance {scale}", trained_on)
        for scale in (1, 2, 4)
        for trained_on in ("synthetic", "first 3 real, rest synthetic", "last 3 real, rest synthetic")
    }
    assert ablations["test_accuracy_mean"].between(0, 1).all()
    diversity = pd.read_csv(reporting / "ablations_diversity.csv")
    assert diversity["set"].tolist() == ["real", "synthetic (generation)", "guidance 1", "guidance 2", "guidance 4"]
    per_class = pd.read_csv(reporting / "ablations_diversity_per_class.csv")
    assert len(per_class) == 5 * len(CLASSES)  # one judge (the ablations' seed), five sets
    assert per_class[["precision", "recall", "density", "coverage"]].notna().all().all()


def test_the_levers_ask_the_layer_swaps_question_of_each_lever(paper_run: PaperShapedRun):
    summary = pd.read_csv(paper_run.reporting / "levers_summary.csv", keep_default_na=False, na_values=[""])
    assert list(zip(summary["lever"], summary["variant"], strict=True)) == [
        ("none", "synthetic baseline"),
        ("distillation", "temperature 4"),
        ("more_images", "2x images, same epochs"),
        ("more_images", "2x images, same steps"),
        ("filtering", "judge keeps 80%"),
        ("filtering", "judge keeps 50%"),
    ]
    filtered = pd.read_csv(paper_run.data / "07_model_output" / "levers" / "filtering_manifest.csv")
    assert filtered["judge"].str.startswith("clip ").all()  # auto found the CLIP weights
    assert filtered.groupby(["variant", "class_index"]).size().eq(IMAGES_PER_CLASS).all()
    assert summary["swap_kept"].eq(f"0-{15 - 1}").all()  # conf/paper's headline cut: ResNet-50's units 15-17 on real
    assert summary["swap_accuracy_mean"].between(0, 1).all()


def test_the_report_names_no_pipeline_as_not_run(paper_run: PaperShapedRun):
    page, markdown = (paper_run.reporting / "report.html").read_text(), (paper_run.reporting / "report.md").read_text()
    assert "Not run" not in page
    assert "Not run" not in markdown
    assert "n02869837" in page  # the data section lists the paper's classes


def test_the_grid_trains_about_30_students(paper_run: PaperShapedRun):
    trained = {path for path in paper_run.students_after_run if path.suffix == ".json"}
    assert len(trained) == STUDENTS
    assert not any(path.name.endswith(".progress.pt") for path in paper_run.students_after_run)


def test_a_second_run_trains_and_generates_nothing(paper_run: PaperShapedRun):
    tables = sorted((paper_run.data / "07_model_output").rglob("*_runs.csv"))
    assert len(tables) >= 5
    for table in tables:
        runs = pd.read_csv(table)
        assert runs.empty or runs["cache_hit"].all(), table  # empty: the judge where CLIP judges
    assert paper_run.students_after_rerun == paper_run.students_after_run
    assert paper_run.pngs_after_rerun == paper_run.pngs_after_run


def test_no_node_holds_more_than_three_times_the_largest_image_set_it_reads(paper_run: PaperShapedRun):
    memory = paper_run.memory.set_index("node")
    reads = memory[memory["largest_read_bytes"] > 0]
    ratio = (reads["peak_bytes"] / reads["largest_read_bytes"]).sort_values()
    assert ratio.max() <= MEMORY_MULTIPLE, f"peak bytes of live image and feature tensors per node:\n{ratio}"
    assert memory.loc[memory["largest_read_bytes"] == 0, "peak_bytes"].eq(0).all()  # what reads no set holds none
    assert {"prepare_real_data", "pack_synthetic_images", "normalization.profile_units"} <= set(reads.index)
    assert memory["peak_rss_bytes"].gt(0).all()
