"""The GPU work of a whole study as tasks for ``executor.simulate``: every student the experiments' ``plan``
functions give with an environment's parameters (``conf/paper`` by default), every generated set, and the waits
the Dask runner imposes (a cell's students start once the cells it reads from have finished).

Durations follow from throughput: ResNet-50 training images per second, Stable Diffusion images per second, from
``benchmarks/bench_gpu.py``'s JSON where it exists, else the figures of ``ASSUMED`` (each estimate says which).
A student costs its planned optimizer steps times the batch, plus its evaluations (forward passes only, at
``EVALUATION_SPEEDUP`` times the training rate); frozen units are costed as if trained (an upper bound).

Only data sizes enter: the sets are stand-ins of the right number of images per class, one pixel each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.experiments import (
    ablations,
    baselines,
    data_efficiency,
    layer_swap,
    levers,
    normalization,
    stitching,
)
from mind_the_gap.experiments.ablations import AblationsConfig
from mind_the_gap.experiments.data_efficiency import DataEfficiencyConfig
from mind_the_gap.experiments.executor import Task
from mind_the_gap.experiments.layer_swap import LayerSwapConfig
from mind_the_gap.experiments.levers import LeversConfig
from mind_the_gap.experiments.normalization import NormalizationConfig
from mind_the_gap.experiments.stitching import StitchingConfig
from mind_the_gap.experiments.study import StudentJob
from mind_the_gap.generators.config import GenerationConfig
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.runners.grid import grid_cells
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import planned_steps

# Per GPU (an H100 or H200), where no measurement says otherwise.
ASSUMED = {
    "resnet50_224": 3000.0,  # training images/s, bf16, channels_last, batch 256
    "stable_diffusion_v1_4_512": 5.5,  # images/s at 25 steps with guidance
}
EVALUATION_SPEEDUP = 3.0  # a forward pass is about a third of a training step's work
UNCLIP_COST = (768 / 512) ** 2  # Stable unCLIP at 768 px against SD at 512 px, where not measured


@dataclass(frozen=True)
class Throughput:
    """Images per second on one GPU, and where each figure comes from."""

    training: float
    generation: float  # text-to-image at the configured steps, with guidance
    img2img_per_strength: float  # img2img images/s times its strength: the steps it runs scale with the strength
    unclip: float
    sources: dict[str, str]

    @classmethod
    def read(cls, path: Path | None) -> Throughput:
        """From ``bench_gpu.py``'s JSON at ``path`` where it exists, else from ``ASSUMED``."""
        measured = json.loads(path.read_text()) if path is not None and path.is_file() else {}
        sources = {}
        resnet = measured.get("resnet50_224", {})
        training = resnet.get("compiled_images_per_second") or resnet.get("eager_images_per_second")
        sources["training"] = f"measured ({path})" if training else "assumed"
        sd = measured.get("stable_diffusion_v1_4_512", {}).get("images_per_second")
        sources["generation"] = f"measured ({path})" if sd else "assumed"
        generation = sd or ASSUMED["stable_diffusion_v1_4_512"]
        img2img = measured.get("img2img_512", {})
        sources["img2img"] = f"measured ({path})" if img2img else "text-to-image's rate over the strength"
        per_strength = img2img["images_per_second"] * img2img["strength"] if img2img else generation
        unclip = measured.get("unclip_768", {}).get("images_per_second")
        sources["unclip"] = f"measured ({path})" if unclip else f"text-to-image's rate / {UNCLIP_COST:g} (768 px)"
        return cls(
            training or ASSUMED["resnet50_224"], generation, per_strength, unclip or generation / UNCLIP_COST, sources
        )

    def generation_seconds(self, config: GenerationConfig, images: int) -> float:
        """Seconds to generate ``images`` as ``config`` says; guidance 1 or less skips the unconditioned pass."""
        if config.backend == "img2img":
            rate = self.img2img_per_strength / config.strength
        elif config.backend == "unclip":
            rate = self.unclip
        else:
            rate = self.generation
        guided = config.guidance_scale is None or config.guidance_scale > 1
        return images / (rate if guided else 2 * rate)


@dataclass(frozen=True)
class StudyShape:
    """The sizes of a study's sets: training images per class, the share held out for validation, test images per
    class, and classes."""

    classes: int
    train_per_class: int
    val_share: float
    test_per_class: int

    @classmethod
    def of(cls, summary: pd.DataFrame) -> StudyShape:
        """The sizes of a study's real sets as data_processing's summary counts them, a row per class."""
        pool = summary["train"] + summary["val"]
        val_share = float(summary["val"].sum() / pool.sum())
        return cls(len(summary), round(pool.mean()), val_share, round(summary["test"].mean()))

    def real_train(self) -> ImageSet:
        return _stand_in(self.train_per_class - self.val_per_class, self.classes)

    @property
    def val_per_class(self) -> int:
        return round(self.train_per_class * self.val_share)


PAPER_SHAPE = StudyShape(classes=100, train_per_class=1300, val_share=0.05, test_per_class=50)  # ImageNet-100


def _stand_in(per_class: int, classes: int = 100) -> ImageSet:
    labels = torch.arange(classes).repeat_interleave(per_class)
    return ImageSet(torch.zeros(len(labels), 1, 1, 1, dtype=torch.uint8), labels, tuple(map(str, range(classes))))


def _manifest(per_class: int, classes: int) -> pd.DataFrame:
    """A stand-in generation manifest: ``per_class`` images of each class, in a generation's order."""
    return pd.DataFrame(
        {
            "run_key": "stand-in",
            "class_index": [c for c in range(classes) for _ in range(per_class)],
            "index": [i for _ in range(classes) for i in range(per_class)],
            "file": [f"{c}/{i}.png" for c in range(classes) for i in range(per_class)],
        }
    )


def _runs(jobs: list[StudentJob], **columns: Callable[[StudentJob], Any]) -> pd.DataFrame:
    """A cell's runs table as its next cells read it, each student's key its name."""
    return pd.DataFrame(
        [{"seed": j.seed, "student_key": j.name, **{k: f(j) for k, f in columns.items()}} for j in jobs]
    )


@dataclass(frozen=True)
class CellWork:
    """A cell's GPU work: generations first, then rounds of students, each round after the one before; and the
    students it hands to ``train_cell`` that another cell trains (the store gives them back: no GPU work)."""

    generations: dict[str, float]  # name: seconds
    rounds: list[list[tuple[StudentJob, Mapping[str, ImageSet]]]]
    reused: list[tuple[StudentJob, Mapping[str, ImageSet]]] = field(default_factory=list)


def planned_students(work: Mapping[str, CellWork], training: TrainConfig) -> dict[str, dict[str, int]]:
    """Per cell, every student it hands to ``train_cell`` (another cell's too) by name, with its planned optimizer
    steps: what a run's progress counts."""
    return {
        cell: {
            job.name: planned_steps(job.size(sets), job.training or training)
            for job, sets in [*(student for round_ in cell_work.rounds for student in round_), *cell_work.reused]
        }
        for cell, cell_work in work.items()
    }


def study_work(parameters: Mapping[str, Any], shape: StudyShape, throughput: Throughput) -> dict[str, CellWork]:
    """Per cell of the study's pipelines that uses a GPU, its generations and students, from the experiments' plans
    with ``parameters`` (an environment's, as Kedro merges them)."""
    student = StudentConfig.model_validate(parameters["student"])
    training = TrainConfig.model_validate(parameters["training"])
    generation = GenerationConfig.model_validate(parameters["generation"])
    real = shape.real_train()
    synthetic = _stand_in(generation.images_per_class, shape.classes)
    generated = shape.classes * generation.images_per_class
    pools = {"real": real, "synthetic": synthetic}
    cells: dict[str, CellWork] = {
        "generate_synthetic_images": CellWork({"synthetic": throughput.generation_seconds(generation, generated)}, [])
    }
    baseline = baselines.BaselinesConfig.model_validate(parameters["baselines"])
    baseline_jobs = {source: baselines.plan(source, "train", baseline) for source in pools}
    for source, jobs in baseline_jobs.items():
        cells[f"baselines.{source}"] = CellWork({}, [[(job, {"train": pools[source]}) for job in jobs]])

    swap = LayerSwapConfig.model_validate(parameters["layer_swap"])
    for cell, (arrangement, source, trained_on) in layer_swap.CELLS.items():
        parents = _runs(baseline_jobs[source])
        jobs = layer_swap.plan(arrangement, source, parents, "train_set", student, swap, trained_on)
        cells[f"layer_swap.{cell}"] = CellWork({}, [[(job, {"train_set": pools[trained_on]}) for job in jobs]])

    # Stitching: per arrangement, every cut and seed's stitching layer over two baseline students, on the real pool.
    stitch = StitchingConfig.model_validate(parameters["stitching"])
    real_runs, synthetic_runs = _runs(baseline_jobs["real"]), _runs(baseline_jobs["synthetic"])
    for arrangement in stitching.ARRANGEMENTS:
        jobs = stitching.plan(arrangement, real_runs, synthetic_runs, student, training, stitch)
        cells[f"stitching.{arrangement}"] = CellWork({}, [[(job, {stitching.TRAINING_SET: real}) for job in jobs]])

    efficiency = DataEfficiencyConfig.model_validate(parameters["data_efficiency"])
    sets = {"real_train": real}
    parents = _runs(baseline_jobs["synthetic"])
    planner = data_efficiency.planner(real, "real_train", training, efficiency, student, parents)
    for cell, jobs in data_efficiency.plan_cells(planner).items():
        cells[f"data_efficiency.{cell}"] = CellWork({}, [[(job, sets) for job in jobs]])

    statistics = NormalizationConfig.model_validate(parameters["normalization"])
    jobs = normalization.plan(statistics, training)
    cells["normalization.synthetic_statistics"] = CellWork(
        {}, [[(job, {"synthetic_train": synthetic}) for job in jobs]]
    )

    factors = AblationsConfig.model_validate(parameters["ablations"])
    sets = ablations.pools(real, synthetic)
    for factor in ("augmentation", "texture_shape", "mixing"):
        jobs = ablations.plan_on_pools(factor, sets, training, factors)
        cells[f"ablations.{factor}"] = CellWork({}, [[(job, sets) for job in jobs]])
    oracle = ablations.variant_generations("oracle", generation, factors)
    variants = {variant: _stand_in(generation.images_per_class, shape.classes) for variant in oracle}
    cells["ablations.oracle"] = CellWork(
        {v: throughput.generation_seconds(g, generated) for v, g in oracle.items()},
        [[(job, variants) for job in ablations.plan_oracle(variants, factors)]],
    )
    diversity = ablations.variant_generations("diversity", generation, factors)
    own = {v for v, g in diversity.items() if g.guidance_scale == generation.guidance_scale}  # reused images
    variants = {v: synthetic if v in own else _stand_in(generation.images_per_class, shape.classes) for v in diversity}
    first = ablations.plan_diversity(variants, student, factors)
    runs = _runs(first, variant=lambda job: job.columns["variant"])
    sets = {**variants, "real_train": real}
    swaps = ablations.plan_diversity_swaps(runs, variants, sets, student, factors)
    reused = {job.name for job in first if job.columns["variant"] in own}  # the synthetic baselines' students
    cells["ablations.diversity"] = CellWork(
        {v: throughput.generation_seconds(g, generated) for v, g in diversity.items() if v not in own},
        [[(job, variants) for job in first if job.name not in reused], [(job, sets) for job in swaps]],
        [(job, variants) for job in first if job.name in reused],
    )

    # A lever's students, then the headline swap from each; the synthetic baselines' swaps are the layer swap's own.
    # The generated-set levers draw on one pool, the generation topped up; the judge trains on a stand-in of the
    # real pool's size (the generator pool's own size is not in the shape).
    lever_config = LeversConfig.model_validate(parameters["levers"])
    pools = {levers.SETS[source]: data for source, data in pools.items()}

    def lever_work(lever: str, jobs: list[StudentJob], sets: Mapping[str, ImageSet]) -> CellWork:
        runs = _runs(jobs, variant=lambda job: job.columns["variant"])
        swaps = levers.plan_swaps(lever, runs, student, lever_config, swap.headline_cut) if jobs else []
        return CellWork({}, [[(job, sets) for job in jobs], [(job, sets) for job in swaps]])

    synthetic_runs = _runs(baseline_jobs["synthetic"]).assign(variant="synthetic baseline")
    headline = levers.plan_swaps(levers.BASELINE, synthetic_runs, student, lever_config, swap.headline_cut)
    cells["levers.none"] = CellWork({}, [], reused=[(job, pools) for job in headline])  # the layer swap trains them
    cells["levers.distillation"] = lever_work(
        "distillation", levers.plan_distillation(_runs(baseline_jobs["real"]), lever_config), pools
    )
    pool = levers.pool_generation(generation, lever_config)
    added = (pool.images_per_class - generation.images_per_class) * shape.classes
    cells["levers.pool"] = CellWork({"pool": throughput.generation_seconds(generation, added)}, [])
    per_class = generation.images_per_class
    manifest = _manifest(pool.images_per_class, shape.classes)
    chosen = levers.select_more_images(manifest, per_class, lever_config)
    sets = {name: _stand_in(len(rows) // shape.classes, shape.classes) for name, rows in chosen.groupby("variant")}
    jobs = levers.plan_more_images(chosen, per_class, shape.classes, training, lever_config)
    cells["levers.more_images"] = lever_work("more_images", jobs, sets | pools)
    judge = [levers.judge_job(lever_config)] if lever_config.filtering.keep_shares else []
    cells["levers.judge"] = CellWork({}, [[(job, {levers.GENERATOR_POOL: real}) for job in judge]])
    confidence = pd.Series(0.0, index=manifest.index)
    kept = levers.select_filtered(manifest, confidence, "judge", per_class, lever_config)
    sets = {name: _stand_in(per_class, shape.classes) for name in kept["variant"].unique()}
    cells["levers.filtering"] = lever_work("filtering", levers.plan_filtering(kept, lever_config), sets | pools)
    return cells


def student_seconds(
    job: StudentJob, sets: Mapping[str, ImageSet], training: TrainConfig, shape: StudyShape, rate: float
):
    """Seconds to train and evaluate a student at ``rate`` training images per second."""
    recipe = job.training or training
    trained = planned_steps(job.size(sets), recipe) * recipe.batch_size
    evaluated = recipe.epochs * shape.val_per_class * shape.classes + shape.test_per_class * shape.classes
    return trained / rate + evaluated / (EVALUATION_SPEEDUP * rate)


def cell_tasks(
    upstream: Mapping[str, tuple[str, ...]],
    work: Mapping[str, CellWork],
    training: TrainConfig,
    shape: StudyShape,
    throughput: Throughput,
    per_student: bool = True,
) -> list[Task]:
    """The tasks of every cell in ``work``: with ``per_student``, one per generation and per student, as the Dask
    runner's per-student executor runs them; else one per cell (its generations and students one after another),
    as a runner with one task per cell does. Each waits for the cells it reads from (``upstream``, the pipeline's
    graph of cells; cells without GPU work pass their waits on)."""
    missing = sorted(set(work) - set(upstream))
    if missing:
        raise ValueError(f"cells with GPU work are not in the pipeline: {', '.join(missing)}")
    tasks: dict[str, list[Task]] = {}

    def ends(cell: str) -> tuple[str, ...]:
        """The tasks whose end lets a cell reading ``cell`` start."""
        if cell in tasks:
            return tuple(t.name for t in tasks[cell])
        return tuple(dict.fromkeys(name for up in upstream[cell] for name in ends(up)))

    for cell in upstream:  # in an order where each comes after its upstream cells
        if cell not in work:
            continue
        needs = tuple(dict.fromkeys(name for up in upstream[cell] for name in ends(up)))
        cell_work = work[cell]
        costs = [
            [(job.name, student_seconds(job, sets, training, shape, throughput.training)) for job, sets in students]
            for students in cell_work.rounds
        ]
        if not per_student:
            seconds = sum(cell_work.generations.values()) + sum(s for round_ in costs for _, s in round_)
            tasks[cell] = [Task(cell, seconds, needs)]
            continue
        cell_tasks_: list[Task] = [Task(f"{cell}/generate {v}", s, needs) for v, s in cell_work.generations.items()]
        before = tuple(t.name for t in cell_tasks_) or needs
        for students in costs:
            round_ = [Task(f"{cell}/{name}", seconds, before) for name, seconds in students]
            cell_tasks_ += round_
            before = tuple(t.name for t in round_)
        tasks[cell] = cell_tasks_
    return [task for cell_tasks_ in tasks.values() for task in cell_tasks_]


def environment_config(conf_source: Path, env: str) -> Any:
    """The project's config loader for ``env``: its parameters, globals and catalog as `kedro run --env` merges them
    over ``base``."""
    from mind_the_gap import settings

    return settings.CONFIG_LOADER_CLASS(conf_source=str(conf_source), env=env, **settings.CONFIG_LOADER_ARGS)


def environment_parameters(conf_source: Path, env: str) -> dict[str, Any]:
    """The parameters of ``env`` as `kedro run --env` merges them over ``base``."""
    return environment_config(conf_source, env)["parameters"]


def pipeline_cells() -> dict[str, tuple[str, ...]]:
    """Every cell of the project's default pipeline and the cells it reads from, each after those."""
    from kedro.framework.project import configure_project, pipelines

    configure_project("mind_the_gap")
    return {cell.name: cell.upstream for cell in grid_cells(pipelines["__default__"])}


def study_tasks(
    conf_source: Path, env: str, throughput: Throughput, shape: StudyShape = PAPER_SHAPE, per_student: bool = True
) -> list[Task]:
    """The tasks of the study ``env``'s parameters describe (see ``cell_tasks``)."""
    parameters = environment_parameters(conf_source, env)
    work = study_work(parameters, shape, throughput)
    training = TrainConfig.model_validate(parameters["training"])
    return cell_tasks(pipeline_cells(), work, training, shape, throughput, per_student)
