"""The `paper` environment merged over `base`, as `kedro run --env paper` loads it: every pipeline's parameters
valid, nothing of Fashion-MNIST (the base dataset) in what the paper run uses, and no silent CPU; the defaults a
practitioner would choose: layer-swap cuts at ResNet-50's stage boundaries and the paper's headline, controls trained as
their cells, ablation seeds that pair with the baselines'."""

from __future__ import annotations

import functools
import inspect
import itertools
import re
import typing
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import BaseModel
from torchvision.models import resnet

from mind_the_gap.data.sources import FASHION_MNIST_CLASSES
from mind_the_gap.experiments import layer_swap
from mind_the_gap.experiments.layer_swap import LayerSwapConfig, resolve_cuts
from mind_the_gap.experiments.stitching import StitchingConfig
from mind_the_gap.experiments.stitching import resolve_cuts as resolve_stitching_cuts
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.pipeline_registry import register_pipelines
from mind_the_gap.runners.estimate import environment_parameters
from mind_the_gap.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


# What `full` runs that `paper` does not, each for a reason the README's "base and full" gives.
NOT_IN_PAPER = {
    "baselines.seeds": "5 seeds for the headline cells: the paper reports 3, and each ResNet-50 student is GPU-hours",
    "layer_swap.headline_seeds": "as baselines.seeds",
    "layer_swap.cuts": "every cut of the narrow net; ResNet-50's are numbered otherwise (its stage boundaries)",
    "stitching.cuts": "as layer_swap.cuts",
    "levers.more_images.factors": "4x and 8x ImageNet-100 from Stable Diffusion are GPU-weeks",
}


@pytest.fixture(scope="module")
def paper() -> dict[str, typing.Any]:
    return environment_parameters(REPO / "conf", "paper")


def leaves(tree: typing.Any, path: tuple[str, ...] = ()) -> typing.Iterator[tuple[tuple[str, ...], typing.Any]]:
    """Every value of a parameter tree that is not a mapping, with its path."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, (*path, key))
    else:
        yield path, tree


def parameter_models() -> dict[str, type[BaseModel]]:
    """Each `params:` input of every node, with the pydantic model its node function declares for it."""
    models = {}
    for node in register_pipelines()["__default__"].nodes:
        hints = typing.get_type_hints(node.func)
        for dataset, argument in zip(node.inputs, inspect.signature(node.func).parameters, strict=False):
            model = hints.get(argument)
            if dataset.startswith("params:") and inspect.isclass(model) and issubclass(model, BaseModel):
                models[dataset.removeprefix("params:")] = model
    return models


def test_every_pipelines_parameters_are_valid(paper: dict[str, typing.Any]):
    models = parameter_models()
    assert {"dataset", "student", "training", "generation", "layer_swap", "data_efficiency"} <= models.keys()
    for name, model in models.items():
        model.model_validate(paper[name])


@pytest.mark.parametrize("env", ["base", "full"])
def test_the_default_and_the_full_study_have_valid_parameters(env: str):
    parameters = environment_parameters(REPO / "conf", env)
    for name, model in parameter_models().items():
        model.model_validate(parameters[name])


def test_paper_has_every_factor_and_cell_of_full_unless_the_readme_says_why_not(paper: dict[str, typing.Any]):
    """Every list `full` sets (seeds, cuts, fractions, arms, variants) is within paper's, every switch `full` turns
    on is on in paper, and every setting block `full` fills (the convergence check) paper fills too."""
    overrides = dict(leaves(yaml.safe_load((REPO / "conf" / "full" / "parameters.yml").read_text())))
    assert set(NOT_IN_PAPER) <= {".".join(path) for path in overrides}  # no stale exception
    missing = []
    for path, value in overrides.items():
        name = ".".join(path)
        if name in NOT_IN_PAPER:
            continue
        theirs = functools.reduce(lambda tree, key: None if tree is None else tree.get(key), path[:-1], paper)
        assert theirs is not None, f"paper has no {'.'.join(path[:-1])}, which full sets"
        theirs = theirs.get(path[-1])
        if isinstance(value, list) and not set(map(str, value)) <= set(map(str, theirs or [])):
            missing.append(f"{name}: full {value}, paper {theirs}")
        elif value is True and theirs is not True:
            missing.append(f"{name}: full on, paper {theirs}")
    assert not missing, missing
    readme = (REPO / "README.md").read_text()
    assert [name for name in NOT_IN_PAPER if f"`{name}`" not in readme] == []


def test_the_paper_run_uses_imagenet100_and_nothing_of_fashion_mnist(paper: dict[str, typing.Any]):
    wnids = paper["dataset"]["classes"]
    assert len(set(wnids)) == 100
    assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in wnids)
    assert paper["dataset"]["source"] == "imagefolder"
    assert paper["dataset"]["image_size"] == 224
    prompts = GenerationConfig.model_validate(paper["generation"]).prompts.resolve(wnids)
    assert set(prompts.hypernyms) == set(prompts.names) == set(wnids)  # every class named, no other class
    assert not set(FASHION_MNIST_CLASSES) & (set(prompts.hypernyms) | set(prompts.names))


def test_the_paper_run_refuses_the_cpu_and_runs_each_model_at_its_native_resolution(paper: dict[str, typing.Any]):
    assert TrainConfig.model_validate(paper["training"]).allow_cpu is False
    generation = GenerationConfig.model_validate(paper["generation"])
    assert generation.allow_cpu is False
    assert (generation.height, generation.width) == (512, 512)  # Stable Diffusion v1.4
    assert (generation.unclip_height, generation.unclip_width) == (768, 768)  # Stable unCLIP 2.1


def test_the_layer_swap_cuts_are_resnet50s_stage_boundaries_and_the_papers_headline(paper: dict[str, typing.Any]):
    net = resnet.resnet50()
    blocks = [len(stage) for stage in (net.layer1, net.layer2, net.layer3, net.layer4)]
    boundaries = list(itertools.accumulate(blocks, initial=1))  # each stage's first unit, then the classifier
    assert boundaries == [1, 4, 8, 14, 17]
    config = LayerSwapConfig.model_validate(paper["layer_swap"])
    assert resolve_cuts(config, StudentConfig.model_validate(paper["student"])) == sorted({*boundaries, 15})
    assert config.headline_cut == 15  # units 15-17: the last two bottleneck blocks and the classifier


def test_at_every_cut_the_same_source_controls_train_as_their_cells(paper: dict[str, typing.Any]):
    student = StudentConfig.model_validate(paper["student"])
    training = TrainConfig.model_validate(paper["training"])
    config = LayerSwapConfig.model_validate(paper["layer_swap"])
    parents = pd.DataFrame({"seed": config.seeds, "student_key": [f"baseline{seed}" for seed in config.seeds]})
    recipes: dict[int, set[str]] = {}
    for arrangement, source, trained_on in layer_swap.CELLS.values():
        for job in layer_swap.plan(arrangement, source, parents, "train", student, config, trained_on):
            recipes.setdefault(job.columns["cut"], set()).add((job.training or training).model_dump_json())
    assert recipes.keys() == set(config.cuts)
    assert all(len(at_cut) == 1 for at_cut in recipes.values())


def test_every_ablation_seed_pairs_with_a_baseline_student_and_gives_a_paired_interval(paper: dict[str, typing.Any]):
    seeds = paper["ablations"]["seeds"]
    assert set(seeds) <= set(paper["baselines"]["seeds"])
    assert len(set(seeds)) >= 3
    assert paper["ablations"]["diversity"]["spread_images"] <= paper["generation"]["images_per_class"]


def test_stitching_joins_paper_baseline_students_at_resnet50_cuts_including_the_headline(paper: dict[str, typing.Any]):
    config = StitchingConfig.model_validate(paper["stitching"])
    cuts = resolve_stitching_cuts(config, StudentConfig.model_validate(paper["student"]))
    assert 15 in cuts  # the layer swap's headline: units 15-17 from the top student
    assert set(cuts) <= set(range(1, 18))
    assert set(config.seeds) <= set(paper["baselines"]["seeds"])  # each stitch joins two baseline students
