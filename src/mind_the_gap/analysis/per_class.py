"""Per-class gaps: each class's real-vs-synthetic test accuracy gap, paired by seed, beside how its synthetic images
fare in the real-trained judges' features (recognisability, fidelity, coverage, Fréchet distance): which classes
the generator cannot render, and whether the judges' measures point at them."""

from __future__ import annotations

import pandas as pd

from mind_the_gap.analysis.statistics import paired_columns, paired_difference, with_holm
from mind_the_gap.experiments.study import Study

JUDGED = ("recognisability", "precision", "recall", "density", "coverage", "frechet_distance")


def per_class_accuracy(runs: pd.DataFrame, study: Study) -> pd.DataFrame:
    """One column per seed of ``runs`` (a cell's runs table), one row per class: each student's test accuracy on the
    class, from what the student store holds of it."""
    columns = {}
    for seed, key in zip(runs["seed"].astype(int), runs["student_key"].astype(str), strict=True):
        result = study.students.load_result(key)
        if result is None:
            raise ValueError(f"the student {key} of seed {seed} is not in {study.store}: run its pipeline")
        columns[seed] = result.test.per_class_accuracy
    return pd.DataFrame(columns).sort_index(axis=1)


def per_class_gaps(
    real: pd.DataFrame, synthetic: pd.DataFrame, class_names: list[str], judged: pd.DataFrame, judged_set: str
) -> pd.DataFrame:
    """One row per class, the largest gap first: the real students' lead over the synthetic ones on the class in
    points (``gap_pp``, paired by seed, ± its 95% CI, Holm-corrected over the classes), each accuracy's mean, and
    the mean over the judges of ``judged``'s measures of the set ``judged_set`` on the class.

    ``real`` and ``synthetic`` are ``per_class_accuracy`` tables; ``judged`` is ``fidelity.measure_sets``' table."""
    seeds = sorted(set(real.columns) & set(synthetic.columns))
    if not seeds:
        raise ValueError("per-class gaps need real and synthetic baseline students of a shared seed")
    rows = []
    for label, name in enumerate(class_names):
        real_accuracy, synthetic_accuracy = real.loc[label, seeds], synthetic.loc[label, seeds]
        rows.append(
            {
                "class": name,
                "real_accuracy": real_accuracy.mean(),
                "synthetic_accuracy": synthetic_accuracy.mean(),
                **paired_columns("gap_pp", paired_difference(real_accuracy, synthetic_accuracy)),
            }
        )
    table = with_holm(pd.DataFrame(rows), "gap_pp")
    measures = judged[judged["set"] == judged_set].groupby("class")[list(JUDGED)].mean()
    if measures.empty:
        raise ValueError(f"the judges measured no set named {judged_set!r}: per-class gaps need its measures")
    table = table.join(measures, on="class")
    return table.sort_values("gap_pp", ascending=False, kind="stable").reset_index(drop=True)


def rank_correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman's rank correlation over the classes between the gap and each judged measure: which of them points
    at the classes the synthetic students lose (exploratory: one class is one point, and the classes are few)."""
    return pd.DataFrame(
        [
            {"measure": measure, "spearman_with_gap": table["gap_pp"].corr(table[measure], method="spearman")}
            for measure in JUDGED
        ]
    )
