"""Fidelity and diversity of image sets in the features of real-trained students (the judges): the share of a
set's images a judge recognises as their class, their within-class spread, and k-nearest-neighbour manifolds:
precision and recall (Kynkäänniemi et al., 2019), density and coverage (Naeem et al., 2020).

Each real image's neighbourhood is the ball reaching its k-th nearest real neighbour. Precision is the share of
generated images inside some real ball (fidelity: they look like real ones); recall the share of real images inside
some generated image's ball among the generated set (diversity: the real variety is reached). Density counts how
many real balls hold each generated image, over k (about 1 for a set drawn like the real one; more where generated
images crowd a mode); coverage is the share of real images whose own ball holds a generated one (about 1 - 2^-k for
a set drawn like the real one, robust to outliers in either set, unlike recall).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from mind_the_gap.analysis import distributions, representations
from mind_the_gap.analysis.cache import cached_table
from mind_the_gap.analysis.distributions import frechet_distance, spread_sample
from mind_the_gap.analysis.representations import unit_features
from mind_the_gap.analysis.statistics import summarize
from mind_the_gap.data.imageset import ImageSet, ImageView
from mind_the_gap.devices import resolve_device
from mind_the_gap.experiments.study import Study, load_students, parent_keys
from mind_the_gap.training import engine
from mind_the_gap.training.student_cache import code_version

METRICS = ("precision", "recall", "density", "coverage")


@dataclass(frozen=True)
class Manifold:
    precision: float
    recall: float
    density: float
    coverage: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _kth_neighbour_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's distance to its k-th nearest other row."""
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # the 0 of each row to itself is the first


def manifold(real: torch.Tensor, generated: torch.Tensor, k: int = 5) -> Manifold:
    """Precision, recall, density and coverage of ``generated`` (M, D) against ``real`` (N, D) features."""
    real, generated = real.double(), generated.double()
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(
            f"manifold needs two (N, D) feature sets of one D, got {tuple(real.shape)} and {tuple(generated.shape)}"
        )
    if min(len(real), len(generated)) <= k:
        raise ValueError(f"manifold with k={k} needs more than {k} images a set, got {len(real)} and {len(generated)}")
    real_radii, generated_radii = _kth_neighbour_radii(real, k), _kth_neighbour_radii(generated, k)
    distances = torch.cdist(generated, real)  # (M, N)
    inside_real = distances <= real_radii.unsqueeze(0)
    return Manifold(
        precision=float(inside_real.any(dim=1).double().mean()),
        recall=float((distances <= generated_radii.unsqueeze(1)).any(dim=0).double().mean()),
        density=float(inside_real.double().sum() / (k * len(generated))),
        coverage=float((distances.min(dim=0).values <= real_radii).double().mean()),
    )


def class_groups(labels: torch.Tensor, classes: int, per_class: int, name: str, least: int) -> list[torch.Tensor]:
    """Per class 0..``classes``-1, the positions of at most ``per_class`` images picked at random
    (``spread_sample``); an error naming the set and the class where a class has ``least`` images or fewer."""
    groups = {int(labels[g[0]]): g for g in spread_sample(labels, per_class)}
    for label in range(classes):
        count = len(groups.get(label, ()))
        if count <= least:
            raise ValueError(
                f"the set {name!r} has {count} images of class {label}: measuring its fidelity and diversity needs "
                f"more than {least} (ablations.diversity.spread_images and neighbours)"
            )
    return [groups[label] for label in range(classes)]


def measure_sets(
    real_runs: pd.DataFrame,
    seeds: Sequence[int],
    set_keys: Mapping[str, Any],
    load_sets: Callable[[], Mapping[str, ImageSet]],
    study: Study,
    analyses: Path,
    sample_images: int,
    neighbours: int,
) -> pd.DataFrame:
    """One row per judge (the real-trained student of each of ``seeds``), set of ``load_sets()`` and class: the
    share of the set's images the judge recognises as their class, their within-class spread, and their precision,
    recall, density, coverage and Fréchet distance against real training images, all in the judge's penultimate
    features (the Fréchet distance from as many images as dimensions or fewer is biased upward: it compares classes
    and sets measured alike, not other studies' FIDs).

    The first set is the real training pool: ``sample_images`` of a class form the reference, another
    ``sample_images`` are measured as the set ``real``, the level a set drawn like the real pool reaches (the judge
    trained on both halves, so their recognisability is left empty). Of each other set ``sample_images`` a class are
    measured. Cached in ``analyses`` by the judges, ``set_keys`` (the sets are loaded only when the table is not
    there) and the settings."""
    parts = {
        "analysis": "measure_sets",
        "code": code_version((distributions, representations, engine, sys.modules[__name__])),
        "sample_images": sample_images,
        "neighbours": neighbours,
        "judges": parent_keys(real_runs, seeds, "real", "ablations.diversity"),
        "sets": dict(set_keys),
    }

    def compute() -> pd.DataFrame:
        sets = load_sets()
        names = list(sets)
        real = sets[names[0]]
        judges = load_students(real_runs, seeds, "real", study, real)
        device = resolve_device(study.training.device, allow_cpu=study.training.allow_cpu)
        for judge, _ in judges.values():
            judge.to(device)
        classes = real.num_classes
        pairs = class_groups(real.labels, classes, 2 * sample_images, "real", 2 * neighbours + 1)
        reference, held = [g[0::2] for g in pairs], [g[1::2] for g in pairs]

        def judged(images: ImageSet, groups: list[torch.Tensor]) -> dict[int, list[tuple[torch.Tensor, torch.Tensor]]]:
            """Per judge, per class of ``groups``, the penultimate features and predicted classes of its images."""
            sample = ImageView(((images, torch.cat(groups)),))  # no copy
            sizes = [len(g) for g in groups]
            out = {}
            for seed, (judge, result) in judges.items():
                features, logits = unit_features(
                    judge,
                    sample,
                    result.normalization,
                    pooled=True,
                    batch_size=study.training.eval_batch_size,
                    units=[judge.num_units - 2, judge.num_units - 1],
                )
                out[seed] = list(zip(features.split(sizes), logits.argmax(1).split(sizes), strict=True))
            return out

        references = judged(real, reference)

        def measure(name: str, judgements: dict[int, list[tuple[torch.Tensor, torch.Tensor]]]) -> list[dict]:
            return [
                {
                    "judge_seed": seed,
                    "set": name,
                    "class": real.class_names[label],
                    "recognisability": math.nan if name == "real" else float((predicted == label).double().mean()),
                    "within_class_spread": float(torch.pdist(features.double()).mean()),
                    **manifold(references[seed][label][0], features, neighbours).as_dict(),
                    "frechet_distance": frechet_distance(references[seed][label][0].numpy(), features.numpy()),
                }
                for seed, classes in judgements.items()
                for label, (features, predicted) in enumerate(classes)
            ]

        rows = measure("real", judged(real, held))
        # Each set is read in turn and released once measured (no loop variable keeps it while the next is read).
        for name in names[1:]:
            groups = class_groups(sets[name].labels, classes, sample_images, name, neighbours)
            rows += measure(name, judged(sets[name], groups))
        return pd.DataFrame(rows)

    return cached_table(analyses, parts, compute)


def summarize_sets(per_class: pd.DataFrame) -> pd.DataFrame:
    """One row per set, in the table's order: each measure averaged over the classes per judge, then its mean and
    95% CI over the judges; the within-class spread also as a share of the real set's, per judge."""
    per_judge = per_class.groupby(["set", "judge_seed"], sort=False).mean(numeric_only=True).reset_index()
    real_spread = per_judge[per_judge["set"] == "real"].set_index("judge_seed")["within_class_spread"]
    per_judge["share_of_real"] = per_judge["within_class_spread"] / per_judge["judge_seed"].map(real_spread)
    measures = ["recognisability", "within_class_spread", "share_of_real", *METRICS, "frechet_distance"]
    return summarize(per_judge, ["set"], measures).rename(columns={"n": "judges"})


def summary_values(summary: pd.DataFrame) -> dict[str, float]:
    """``summarize_sets``' means of the share of the real spread and the manifold measures, named ``<set>.<measure>``
    (the `kedro run`'s summary metrics)."""
    return {
        f"{row['set']}.{measure}": row[f"{measure}_mean"]
        for row in summary.to_dict("records")
        for measure in ("share_of_real", *METRICS)
    }
