"""Data efficiency: how little real data the last units need, each arm with its own tuned learning rate.

The arms, each trained on a fraction of the real pool: a student from scratch on the fraction alone; the synthetic
baseline students with their last ``m`` units fine-tuned from the synthetic weights, the lower units frozen
(``all``: every unit fine-tuned from the synthetic weights, "pretrain on synthetic, fine-tune on real"); and the
synthetic students with their last ``m`` units re-initialised and trained from scratch under the frozen lower units
(the layer swap's recipe). The reference is the real-only students on everything. Subsets are stratified, nested
and drawn from the seed.

Every arm's learning rate is chosen once, at one fraction, from a small grid, on the real validation set, and then
used at every fraction. Every student trains at least ``min_steps`` optimizer steps (by default as many as a student
on the whole real pool), so small subsets are not flattered by a handful of steps; whether that budget sufficed is
checked, for every arm, by training the students of some seeds again with a larger one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Annotated, Literal

import pandas as pd
import torch
from pydantic import Field, model_validator

from mind_the_gap.analysis import statistics
from mind_the_gap.analysis.statistics import by_seed, paired_columns, paired_difference, with_holm
from mind_the_gap.config import Config
from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.data.prepare import nested_subset_indices
from mind_the_gap.experiments.study import SeedsConfig, StudentJob, as_metrics, parent_keys, summarize_runs, views
from mind_the_gap.models.architectures import StudentConfig, student_unit_names
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import planned_steps
from mind_the_gap.training.transfer import Transfer, TransferConfig

LastUnits = int | Literal["all"]
LearningRateFactor = Annotated[float, Field(gt=0, le=1)]
SCRATCH = "scratch"


class LearningRateChoice(Config):
    """Each arm's learning rate, chosen once: every factor of ``grid`` (or of the arm's own in ``grids``; times
    ``training.lr``) trained at ``fraction`` on the seeds ``seeds``, the one with the best mean accuracy on the real
    validation set used at every fraction."""

    fraction: float = Field(0.125, gt=0, le=1, description="the subset the candidates train on")
    grid: list[LearningRateFactor] = Field([0.1, 0.3, 1.0], min_length=1, description="factors of training.lr")
    grids: dict[str, Annotated[list[LearningRateFactor], Field(min_length=1)]] = Field(
        {}, description="per arm (its strategy: scratch, last 2, all, last 2 re-initialised), a grid of its own"
    )
    seeds: list[int] = Field([0], min_length=1, description="each costs len(grid) students per arm")

    def grid_of(self, strategy: str) -> list[float]:
        return self.grids.get(strategy, self.grid)


class ConvergenceCheck(Config):
    """The students of some seeds, of every arm, trained again with ``budget_factor`` times the steps: if they do
    no better (by less than ``tolerance_pp``), the step budget sufficed. (A validation curve cannot tell: under a
    cosine schedule accuracy always rises as the learning rate falls to zero.)"""

    budget_factor: float = Field(2.0, gt=1)
    seeds: list[int] = Field([0], min_length=1, description="each costs budget_factor students per arm and fraction")
    tolerance_pp: float = Field(1.0, ge=0)


class DataEfficiencyConfig(SeedsConfig):
    fractions: list[float] = Field([1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125], min_length=1)
    last_units: list[LastUnits] = Field(
        [1, 2, 3, "all"], min_length=1, description="units fine-tuned from the synthetic weights; all: every unit"
    )
    reinit_last_units: list[int] = Field(
        [2],
        description="units re-initialised and trained from scratch under the synthetic student's frozen others; [] "
        "for none",
    )
    learning_rate: LearningRateChoice = LearningRateChoice()
    min_steps: int | Literal["full"] = Field("full", description="optimizer steps at least; full: those of the pool")
    convergence_check: ConvergenceCheck | None = ConvergenceCheck()

    @model_validator(mode="after")
    def _check_seeds_and_arms(self) -> DataEfficiencyConfig:
        checked = {
            "convergence_check.seeds": self.convergence_check.seeds if self.convergence_check else [],
            "learning_rate.seeds": self.learning_rate.seeds,
        }
        for setting, seeds in checked.items():
            extra = set(seeds) - set(self.seeds)
            if extra:
                raise ValueError(f"data_efficiency.{setting} {sorted(extra)} are not in data_efficiency.seeds")
        strategies = [arm.strategy for arm in arms(self)]
        unknown = sorted(set(self.learning_rate.grids) - set(strategies))
        if unknown:
            raise ValueError(f"data_efficiency.learning_rate.grids {unknown} name no arm; the arms: {strategies}")
        return self


@dataclass(frozen=True)
class Arm:
    """One way of using the real subset: from scratch (``last_units`` None), or the synthetic student's last units
    fine-tuned from its weights or, ``reinit``, trained from fresh weights under its frozen other units."""

    last_units: LastUnits | None = None
    reinit: bool = False

    @property
    def strategy(self) -> str:
        return self._name("")

    @property
    def title(self) -> str:
        """The arm in its students' run names: ``last 2 units``, ``all units``, ``last 2 units re-initialised``."""
        return self._name(" units")

    def _name(self, units: str) -> str:
        if self.last_units is None:
            return SCRATCH
        name = ("all" if self.last_units == "all" else f"last {self.last_units}") + units
        return f"{name} re-initialised" if self.reinit else name


def arms(config: DataEfficiencyConfig) -> list[Arm]:
    """Scratch, each fine-tuned arm, each re-initialised arm."""
    return [Arm(), *(Arm(m) for m in config.last_units), *(Arm(m, reinit=True) for m in config.reinit_last_units)]


def fraction_label(fraction: float) -> str:
    return str(Fraction(fraction).limit_denominator(4096))


def _more_steps(strategy: str, factor: float) -> str:
    return f"{strategy} {factor:g}x steps"


def _subsets(pool: ImageSet, seeds: list[int], fractions: list[float]) -> dict[int, dict[float, torch.Tensor]]:
    """Per seed, the indices of each fraction's subset of the pool (a fraction's subset is the same whichever
    other fractions are drawn with it)."""
    return {
        seed: nested_subset_indices(pool.labels, pool.num_classes, fractions, torch.Generator().manual_seed(seed))
        for seed in seeds
    }


@dataclass(frozen=True)
class Planner:
    """Jobs of the arms over subsets of the real pool (stored as ``pool_name``); ``parents``, the synthetic
    students' keys per seed, and ``num_units``, their units, where an arm starts from them."""

    pool: ImageSet
    pool_name: str
    training: TrainConfig
    config: DataEfficiencyConfig
    parents: dict[int, str]
    num_units: int

    def jobs(
        self, arm: Arm, lr_factor: float, seeds: list[int], fractions: list[float], budget_factor: float = 1.0
    ) -> list[StudentJob]:
        """The arm's students at ``lr_factor`` times the learning rate; with ``budget_factor`` times the steps, the
        convergence check's, named for it."""
        config = self.config
        budget = planned_steps(len(self.pool), self.training) if config.min_steps == "full" else config.min_steps
        recipe = self.training.model_copy(update={"min_steps": round(budget * budget_factor)})
        if arm.last_units is None or arm.reinit:  # the trained units start fresh: the rate is training.lr's
            recipe = recipe.model_copy(update={"lr": self.training.lr * lr_factor})
        strategy = arm.strategy if budget_factor == 1 else _more_steps(arm.strategy, budget_factor)
        title = arm.title if budget_factor == 1 else _more_steps(arm.title, budget_factor)
        return [
            StudentJob(
                f"data_efficiency/{title} on {fraction_label(f)} real/seed{seed}",
                seed,
                views(self.pool_name, index),
                self._transfer(arm, lr_factor, seed),
                self._columns(arm, strategy, lr_factor, f, len(index)),
                recipe,
            )
            for seed, subsets in _subsets(self.pool, seeds, fractions).items()
            for f, index in subsets.items()
        ]

    def arm_jobs(self, arm: Arm, lr_factor: float) -> list[StudentJob]:
        """The arm's students at every fraction, and the convergence check's."""
        jobs = self.jobs(arm, lr_factor, self.config.seeds, self.config.fractions)
        check = self.config.convergence_check
        if check is not None:
            jobs += self.jobs(arm, lr_factor, check.seeds, self.config.fractions, check.budget_factor)
        return jobs

    def candidates(self, arm: Arm) -> list[StudentJob]:
        """The arm's students at each learning-rate factor of the grid, at the choice's fraction."""
        choice = self.config.learning_rate
        return [
            replace(job, name=job.name.replace(f"/{arm.title} on ", f"/{arm.title} at {factor:g}x lr on ", 1))
            for factor in choice.grid_of(arm.strategy)
            for job in self.jobs(arm, factor, choice.seeds, [choice.fraction])
        ]

    def _transfer(self, arm: Arm, lr_factor: float, seed: int) -> Transfer | None:
        if arm.last_units is None:
            return None
        if arm.last_units == "all":  # every unit kept from the synthetic student, and fine-tuned
            return Transfer(
                self.parents[seed],
                f"0-{self.num_units - 1}",
                TransferConfig(lower="finetune", lr_scale=lr_factor, reinit=False),
            )
        kept = f"0-{self.num_units - arm.last_units - 1}"
        if arm.reinit:  # lr_scale would set the rate of the kept units, which are frozen
            return Transfer(self.parents[seed], kept, TransferConfig(lower="frozen", reinit=True))
        return Transfer(self.parents[seed], kept, TransferConfig(lower="frozen", lr_scale=lr_factor, reinit=False))

    def _columns(self, arm: Arm, strategy: str, lr_factor: float, fraction: float, size: int) -> dict[str, object]:
        return {
            "strategy": strategy,
            "arm": arm.strategy,
            "last_units": "" if arm.last_units is None else str(arm.last_units),
            "lr_factor": lr_factor,
            "fraction": fraction,
            "fraction_label": fraction_label(fraction),
            "real_images": size,
        }


def planner(
    pool: ImageSet,
    pool_name: str,
    training: TrainConfig,
    config: DataEfficiencyConfig,
    student: StudentConfig | None = None,
    parent_runs: pd.DataFrame | None = None,
) -> Planner:
    """The planner of the arms; ``parent_runs`` (the synthetic students) and ``student`` where an arm starts from
    the synthetic students: the last units every such arm names are checked against the student's."""
    if parent_runs is None or student is None:
        return Planner(pool, pool_name, training, config, {}, 0)
    num_units = len(student_unit_names(student))
    bad = [m for m in config.last_units if m != "all" and not 0 < m < num_units]
    bad_reinit = [m for m in config.reinit_last_units if not 0 < m < num_units]
    for setting, values, allowed in (("last_units", bad, " or all"), ("reinit_last_units", bad_reinit, "")):
        if values:
            raise ValueError(
                f"data_efficiency.{setting} {values}: the student has {num_units} units, so use 1-{num_units - 1}"
                + allowed
            )
    parents = parent_keys(parent_runs, config.seeds, "synthetic", "data_efficiency")
    return Planner(pool, pool_name, training, config, parents, num_units)


def plan_learning_rates(planner: Planner) -> list[StudentJob]:
    """Every arm's candidates: its students at each factor of the grid, at the choice's fraction."""
    return [job for arm in arms(planner.config) for job in planner.candidates(arm)]


def chosen_learning_rates(candidate_runs: pd.DataFrame) -> dict[str, float]:
    """Each arm's learning-rate factor: the candidate with the best mean validation accuracy (the smallest factor on
    a tie)."""
    choice = learning_rate_table(candidate_runs)
    return dict(zip(choice.loc[choice["chosen"], "arm"], choice.loc[choice["chosen"], "lr_factor"], strict=True))


def learning_rate_table(candidate_runs: pd.DataFrame) -> pd.DataFrame:
    """Per arm and learning-rate factor: the candidates' validation accuracy (mean ± 95% CI over the choice's
    seeds) and whether it is the arm's choice."""
    table = statistics.summarize(candidate_runs, by=["arm", "lr_factor", "fraction_label"], metrics=["val_accuracy"])
    arm_order = {arm: i for i, arm in enumerate(table["arm"].unique())}
    table = table.sort_values(["arm", "lr_factor"], key=lambda c: c.map(arm_order) if c.name == "arm" else c)
    best = table.groupby("arm", sort=False)["val_accuracy_mean"].transform("max")
    smallest_best = table[table["val_accuracy_mean"] == best].groupby("arm", sort=False).head(1).index
    return table.assign(chosen=table.index.isin(smallest_best)).reset_index(drop=True)


def plan_arms(planner: Planner, learning_rates: dict[str, float], reinit: bool | None = None) -> list[StudentJob]:
    """The students of every arm at its chosen learning rate (``reinit`` None: scratch alone; False: the fine-tuned
    arms; True: the re-initialised ones) over every fraction, and the convergence check's."""
    chosen = [arm for arm in arms(planner.config) if (None if arm.last_units is None else arm.reinit) is reinit]
    missing = [arm.strategy for arm in chosen if arm.strategy not in learning_rates]
    if missing:
        raise ValueError(
            f"data_efficiency: no learning rate chosen for {missing}: run the data_efficiency pipeline whole, so that "
            "its learning_rate cell trains their candidates"
        )
    return [job for arm in chosen for job in planner.arm_jobs(arm, learning_rates[arm.strategy])]


def plan_cells(planner: Planner, learning_rates: dict[str, float] | None = None) -> dict[str, list[StudentJob]]:
    """Every cell's students: the learning-rate candidates, then scratch, the fine-tuned and the re-initialised arms
    at ``learning_rates`` (None: each arm's first candidate, as a plan made before the choice may assume, since a
    student's cost does not depend on its rate)."""
    rates = learning_rates or {
        arm.strategy: planner.config.learning_rate.grid_of(arm.strategy)[0] for arm in arms(planner.config)
    }
    return {
        "learning_rate": plan_learning_rates(planner),
        "scratch": plan_arms(planner, rates),
        "finetune": plan_arms(planner, rates, reinit=False),
        "reinit": plan_arms(planner, rates, reinit=True),
    }


def summarize(
    baselines: pd.DataFrame, runs: pd.DataFrame, config: DataEfficiencyConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float]]]:
    """Mean ± 95% CI per strategy and fraction, its comparisons, whether the students converged and where each arm
    starts to beat scratch; and the baselines' summary (the chart's reference levels).

    Comparisons are paired by seed (a seed's students share its subsets): ``below_real_pp``, the points below the
    real-only student of the same seed on everything; ``vs_scratch_pp``, the points an arm gains over the
    from-scratch student of the same seed and subset, each ± 95% CI with its p-value, and ``vs_scratch_pp_p_holm``
    over every arm and fraction of the table (one family). ``beats_scratch_between``: per arm, the pair of
    fractions between which its mean gain over scratch turns positive as the real data shrinks.
    """
    baselines = baselines[baselines["seed"].isin(set(config.seeds))]
    reference, _ = summarize_runs(baselines, by=["cell"])
    reference = reference.set_index("cell")
    summary, metrics = summarize_runs(
        runs,
        by=["strategy", "arm", "lr_factor", "fraction", "fraction_label", "real_images"],
        label=["strategy", "fraction_label"],
    )
    real = baselines[baselines["cell"] == "real"]
    comparisons = []
    for row in summary.itertuples():
        students = runs[(runs["strategy"] == row.strategy) & (runs["fraction"] == row.fraction)]
        scratch = runs[(runs["strategy"] == SCRATCH) & (runs["fraction"] == row.fraction)]
        below = paired_difference(*by_seed(real, students)) if len(real) else None
        columns = paired_columns("below_real_pp", below) if below else {"below_real_pp": math.nan}
        if row.strategy == row.arm != SCRATCH:  # neither scratch nor a convergence check
            columns |= paired_columns("vs_scratch_pp", paired_difference(*by_seed(students, scratch)))
        comparisons.append(columns)
    summary = pd.concat([summary, pd.DataFrame(comparisons, index=summary.index)], axis=1)
    if "vs_scratch_pp_p" in summary:
        summary = with_holm(summary, "vs_scratch_pp")
        crossing = {arm: beats_scratch_between(rows) for arm, rows in summary.groupby("strategy", sort=False)}
        summary["beats_scratch_between"] = summary["strategy"].map(crossing).where(summary["vs_scratch_pp"].notna())
    for name in ("below_real_pp", "vs_scratch_pp"):
        if name in summary:
            metrics |= as_metrics(
                {f"{row.strategy}.{row.fraction_label}.{name}": getattr(row, name) for row in summary.itertuples()}
            )
    check = config.convergence_check
    if check is not None:
        summary = summary.merge(_convergence(runs, check), on=["strategy", "fraction"], how="left")
    return summary, reference, metrics


def beats_scratch_between(rows: pd.DataFrame) -> str:
    """Where an arm's mean gain over scratch turns positive as the real data shrinks: ``1/8 and 1/32`` (it loses,
    or ties, at 1/8 and wins at 1/32 and every smaller fraction), ``every fraction`` or ``no fraction``."""
    rows = rows.sort_values("fraction", ascending=False)
    wins = (rows["vs_scratch_pp"] > 0).tolist()
    labels = rows["fraction_label"].astype(str).tolist()
    if all(wins):
        return "every fraction"
    last_loss = max(i for i, win in enumerate(wins) if not win)
    if last_loss == len(wins) - 1:
        return "no fraction"
    return f"{labels[last_loss]} and {labels[last_loss + 1]}"


def _convergence(runs: pd.DataFrame, check: ConvergenceCheck) -> pd.DataFrame:
    """Per arm and fraction, how many points its students gained with the larger budget (same seeds, same subsets),
    and whether that stays below the tolerance."""
    accuracy = runs.pivot_table(index=["fraction", "seed"], columns="strategy", values="test_accuracy")
    rows = []
    for arm in runs["arm"].unique():
        longer = _more_steps(arm, check.budget_factor)
        if longer not in accuracy or arm not in accuracy:
            continue
        gain = (100 * (accuracy[longer] - accuracy[arm])).dropna().groupby("fraction").mean()
        rows.append(
            pd.DataFrame(
                {
                    "strategy": arm,
                    "fraction": gain.index,
                    "more_steps_gain_pp": gain.to_numpy(),
                    "converged": gain.to_numpy() < check.tolerance_pp,
                }
            )
        )
    columns = ["strategy", "fraction", "more_steps_gain_pp", "converged"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)
