"""Model stitching (Bansal et al., 2021): where synthetic features are worse, without letting any unit adapt.

At each cut, the units 0..cut-1 of one baseline student (the bottom) are joined to the units cut..last of another
(the top) through a stitching layer, a 1x1 convolution and a BatchNorm trained on the real training pool; both
students stay frozen (``training.stitching``). Four arrangements, each over the seeds and cuts:

- ``real_to_synthetic``: a real student's lower units under a synthetic student's upper units: can the synthetic
  student's last units use real features?
- ``synthetic_to_real``: the reverse: do the synthetic student's lower units carry what the real student's last units
  need? This is the direct test of "the last layers": if it stays near real-real, the synthetic features are as good
  up to the cut, and the gap is made above it;
- ``real_to_real``: two real students of different seeds, the reference: what stitching costs by itself;
- ``synthetic_to_synthetic``: two synthetic students, the same across-seeds control on the synthetic side.

Every arrangement joins seed i's bottom to seed (i+1) mod n's top (i the seed's place in ``seeds``), never a student
to itself: so real-real measures stitching across seeds, and each cross-source arrangement, paired by the bottom's
seed, shares one student with real-real at every seed (the bottom for real_to_synthetic, the top for
synthetic_to_real).
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import Field, PositiveFloat

from mind_the_gap.analysis.statistics import by_seed, paired_columns, paired_difference, with_holm
from mind_the_gap.config import Config
from mind_the_gap.experiments.study import SeedsConfig, StudentJob, as_metrics, parent_keys, summarize_runs, views
from mind_the_gap.models.architectures import SMALL_INPUT_MAX, StudentConfig, build_student
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.stitching import Stitch, module_at_cut

Source = Literal["real", "synthetic"]
# Every arrangement as (the bottom's source, the top's source); the reference first.
ARRANGEMENTS: dict[str, tuple[Source, Source]] = {
    "real_to_real": ("real", "real"),
    "real_to_synthetic": ("real", "synthetic"),
    "synthetic_to_real": ("synthetic", "real"),
    "synthetic_to_synthetic": ("synthetic", "synthetic"),
}
REFERENCE = "real_to_real"
TRAINING_SET = "real_train"  # the stored set every stitching layer trains on: the real training pool


class StitchRecipe(Config):
    """How a stitching layer trains, over the study's recipe (its optimizer, batch, augmentation, normalisation).

    A stitching layer is one linear map per position (C² weights and a BatchNorm) on fixed features: a few epochs
    fit it (Bansal et al. train theirs for a few epochs too), and no weight decay, which only pulls the identity
    start toward zero. A tenth of a from-scratch rate: the layer starts at the identity, a good first guess wherever
    the two students' features agree."""

    epochs: int = Field(3, ge=1, description="epochs over the real training pool")
    lr: PositiveFloat = Field(0.01, description="learning rate (the study's schedule: warmup, then cosine)")
    weight_decay: float = Field(0.0, ge=0, description="weight decay of the 1x1 conv's weights")
    warmup_epochs: float = Field(0.0, ge=0, description="epochs of linear warmup, below epochs")


class StitchingConfig(SeedsConfig):
    """The seeds (at least two: every stitch joins two seeds' students), the cuts, and the stitch's recipe."""

    seeds: list[int] = Field([0, 1, 2], min_length=2, description="each joins its bottom to the next seed's top")
    cuts: list[int] | None = Field(
        None,
        min_length=1,
        description="k: units 0..k-1 from the bottom student, k..last from the top; null: every cut at a block's "
        "boundary",
    )
    training: StitchRecipe = StitchRecipe()

    def recipe(self, training: TrainConfig) -> TrainConfig:
        """The study's recipe with the stitch's epochs, rate, weight decay and warmup (validated together)."""
        return TrainConfig.model_validate(training.model_dump() | self.training.model_dump())


def resolve_cuts(config: StitchingConfig, student: StudentConfig) -> list[int]:
    """The cuts to run, checked against the student's units: each must leave units on both sides and, by the
    ``layers`` numbering, fall on a block's first conv (a stitch joins whole blocks)."""
    model = build_student(student, num_classes=2, in_channels=1, image_size=SMALL_INPUT_MAX)
    n = model.num_units
    boundaries = [k for k in range(1, n) if _at_boundary(model, k)]
    cuts = config.cuts if config.cuts is not None else boundaries
    bad = [k for k in cuts if k not in boundaries]
    if bad:
        raise ValueError(
            f"stitching.cuts {bad}: a {student.arch} numbered by {student.units} has units 0-{n - 1}, and a stitch "
            f"joins whole blocks, so a cut must be one of {boundaries}"
        )
    return sorted(set(cuts))


def _at_boundary(model, cut: int) -> bool:
    try:
        module_at_cut(model, cut)
    except ValueError:
        return False
    return True


def partner_seeds(seeds: list[int]) -> dict[int, int]:
    """Each seed's top: the next seed in ``seeds``, the last joined to the first."""
    return {seed: seeds[(i + 1) % len(seeds)] for i, seed in enumerate(seeds)}


def plan(
    arrangement: str,
    real_runs: pd.DataFrame,
    synthetic_runs: pd.DataFrame,
    student: StudentConfig,
    training: TrainConfig,
    config: StitchingConfig,
    training_set: str = TRAINING_SET,
) -> list[StudentJob]:
    """Every cut and seed of one arrangement: the bottom student of the seed and the top student of the next seed
    (baseline students, by their keys in ``real_runs`` and ``synthetic_runs``), joined by a stitching layer trained
    on the stored set ``training_set`` at ``config.recipe(training)``; the job's seed is the bottom's."""
    bottom_source, top_source = ARRANGEMENTS[arrangement]
    runs = {"real": real_runs, "synthetic": synthetic_runs}
    bottoms = parent_keys(runs[bottom_source], config.seeds, bottom_source, "stitching")
    tops = parent_keys(runs[top_source], config.seeds, top_source, "stitching")
    recipe = config.recipe(training)
    last = build_student(student, num_classes=2, in_channels=1, image_size=SMALL_INPUT_MAX).num_units - 1
    partners = partner_seeds(config.seeds)
    jobs = []
    for cut in resolve_cuts(config, student):
        bottom_units, top_units = f"0-{cut - 1}", f"{cut}-{last}"
        for seed in config.seeds:
            top_seed = partners[seed]
            columns = {
                "arrangement": arrangement,
                "cut": cut,
                "bottom": bottom_source,
                "top": top_source,
                "bottom_units": bottom_units,
                "top_units": top_units,
                "top_seed": top_seed,
                "bottom_key": bottoms[seed],
                "top_key": tops[top_seed],
            }
            name = f"stitching/{bottom_source} {bottom_units} + {top_source} {top_units}/seed{seed}+{top_seed}"
            stitch = Stitch(bottoms[seed], tops[top_seed], cut)
            jobs.append(StudentJob(name, seed, views(training_set), columns=columns, training=recipe, stitch=stitch))
    return jobs


SUMMARY_COLUMNS = ["arrangement", "bottom", "top", "cut", "bottom_units", "top_units"]


def summarize(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """One row per cut and arrangement (cuts in order, the reference first): test accuracy mean ± 95% CI over the
    seeds, and for every other arrangement, paired by the bottom's seed with real-real at the same cut,
    ``vs_real_real_pp``: points above real-real (negative: below), ± 95% CI, with its p-value and, over every
    comparison of the table (one family), its Holm-corrected ``vs_real_real_pp_p_holm``."""
    if not len(runs):
        return pd.DataFrame(columns=[*SUMMARY_COLUMNS, "n", "test_accuracy_mean", "test_accuracy_ci95"]), {}
    summary, metrics = summarize_runs(
        runs.assign(pipeline="stitching"), by=SUMMARY_COLUMNS, label=["arrangement", "cut"]
    )
    order = {name: i for i, name in enumerate(ARRANGEMENTS)}
    summary = summary.sort_values(["cut", "arrangement"], key=lambda c: c.map(order) if c.name == "arrangement" else c)
    summary = summary.reset_index(drop=True)
    rows = []
    for row in summary.itertuples():
        if row.arrangement == REFERENCE:
            rows.append({})
            continue
        at_cut = runs[runs["cut"] == row.cut]
        students = at_cut[at_cut["arrangement"] == row.arrangement]
        reference = at_cut[at_cut["arrangement"] == REFERENCE]
        rows.append(
            paired_columns("vs_real_real_pp", paired_difference(*by_seed(students, reference)))
            if len(reference)
            else {}
        )
    comparisons = pd.DataFrame(rows, index=summary.index)
    summary = pd.concat([summary, comparisons], axis=1)
    if "vs_real_real_pp_p" in summary:
        summary = with_holm(summary, "vs_real_real_pp")
        metrics |= as_metrics(
            {
                f"{row.arrangement}.{row.cut}.vs_real_real_pp": row.vs_real_real_pp
                for row in summary.itertuples()
                if row.arrangement != REFERENCE
            }
        )
    return summary, metrics
