"""The student store's key: everything a student depends on, and nothing that only changes how it runs."""

from __future__ import annotations

import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.devices import map_concurrently
from mind_the_gap.models.architectures import StudentConfig
from mind_the_gap.training import engine, student_cache
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.distillation import Teacher
from mind_the_gap.training.engine import Evaluation, Normalization, evaluate
from mind_the_gap.training.student_cache import (
    TRAINING_MODULES,
    StudentResult,
    StudentStore,
    code_version,
    train_student,
)
from mind_the_gap.training.transfer import Transfer, TransferConfig

from ..conftest import striped_images

STUDENT = StudentConfig(width=8)
# On the CPU wherever the tests run, so that amp resolves the same way on every machine.
FAST = TrainConfig(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0, amp="off", device="cpu", progress=False)
REAL = Normalization((0.5,), (0.25,))


@dataclass(frozen=True)
class Trainer:
    """Trains students of one store on one training and test set (64 images: two steps per epoch)."""

    store: StudentStore
    train: ImageSet
    test: ImageSet

    def __call__(
        self,
        training: TrainConfig = FAST,
        normalization: Normalization = REAL,
        transfer: Transfer | None = None,
        student: StudentConfig = STUDENT,
        seed: int = 0,
        tracker: student_cache.StudentTracker | None = None,
        teacher: Teacher | None = None,
    ) -> StudentResult:
        return train_student(
            self.store,
            student,
            training,
            self.train,
            self.test,
            seed,
            normalization,
            transfer=transfer,
            tracker=tracker,
            teacher=teacher,
        )


@pytest.fixture
def trainer(tmp_path: Path) -> Trainer:
    return Trainer(StudentStore(tmp_path / "students"), striped_images(16), striped_images(4, seed=1))


@pytest.fixture
def fresh_code_version():
    code_version.cache_clear()
    yield
    code_version.cache_clear()


def test_the_key_changes_with_the_training_code(trainer: Trainer, monkeypatch):
    first = trainer()
    assert trainer().cache_hit
    monkeypatch.setattr(student_cache, "code_version", lambda: "older training code")
    changed = trainer()
    assert not changed.cache_hit
    assert changed.key != first.key


def test_code_version_digests_the_training_source_and_torch(tmp_path: Path, monkeypatch, fresh_code_version):
    source = tmp_path / "training_code.py"
    source.write_text("STEPS = 1\n")
    module = types.ModuleType("training_code")
    module.__file__ = str(source)
    first = code_version((module,))
    assert code_version((module,)) == first
    assert len(first) == 16
    source.write_text("STEPS = 2\n")
    code_version.cache_clear()
    edited = code_version((module,))
    assert edited != first
    monkeypatch.setattr(torch, "__version__", "0.0.1")
    code_version.cache_clear()
    assert code_version((module,)) != edited
    names = {m.__name__.rsplit(".", 1)[-1] for m in TRAINING_MODULES}
    assert names == {
        "engine",
        "augment",
        "transfer",
        "distillation",
        "source_norm",
        "architectures",
        "units",
        "devices",
        "student_cache",
    }


def test_the_key_changes_with_the_normalization_that_the_test_set_is_seen_through(trainer: Trainer):
    own = Normalization.of(trainer.train)
    with_own, with_real = trainer(normalization=own), trainer(normalization=REAL)
    assert not with_real.cache_hit
    assert with_real.key != with_own.key
    # The real pool's statistics, not the training set's, are those the student is tested with.
    assert with_real.normalization == REAL
    model = trainer.store.load_model(with_real.key, STUDENT, trainer.train)
    # (to rounding: the trained model ran channels_last, the loaded one does not)
    assert evaluate(model, trainer.test, REAL, FAST).loss == pytest.approx(with_real.test.loss, rel=1e-5)
    assert evaluate(model, trainer.test, own, FAST).loss != pytest.approx(with_real.test.loss, rel=1e-3)


def test_min_steps_enters_the_key_as_the_steps_it_gives(trainer: Trainer):
    first = trainer()  # 2 epochs of 2 steps
    for unchanged in (3, 4):
        again = trainer(FAST.model_copy(update={"min_steps": unchanged}))
        assert again.cache_hit
        assert again.key == first.key
    longer = trainer(FAST.model_copy(update={"min_steps": 5}))
    assert not longer.cache_hit
    assert longer.key != first.key
    assert [r["optimizer_steps"] for r in longer.history] == [2, 5]  # round(5 / 2) = 2, then 5


def test_amp_enters_the_key_as_the_precision_it_gives(trainer: Trainer, monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {})  # no native bf16: auto means float32
    float32 = trainer()
    assert trainer(FAST.model_copy(update={"amp": "auto"})).key == float32.key
    bf16 = trainer(FAST.model_copy(update={"amp": "bf16"}))
    assert not bf16.cache_hit
    assert bf16.key != float32.key
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})
    assert trainer(FAST.model_copy(update={"amp": "auto"})).key == bf16.key


def test_a_student_resolves_its_device_and_precision_once(trainer: Trainer, monkeypatch):
    calls = []

    def counted(name: str):
        resolve = getattr(engine, name)

        def call(*args, **kwargs):
            calls.append(name)
            return resolve(*args, **kwargs)

        return call

    for name in ("resolve_device", "resolve_precision"):
        monkeypatch.setattr(engine, name, counted(name))
    val = striped_images(4, seed=2)
    result = train_student(trainer.store, STUDENT, FAST, trainer.train, trainer.test, 0, REAL, val=val)
    assert "val_accuracy" in result.history[-1]  # fit evaluated on val after every epoch, and then on the test set
    assert calls == ["resolve_device", "resolve_precision"]


def test_the_key_changes_with_the_parent_and_what_is_kept_from_it(trainer: Trainer):
    parents = [trainer(seed=seed).key for seed in (0, 1)]
    frozen = TransferConfig()
    child = trainer(transfer=Transfer(parents[0], "0-4", frozen))
    assert not child.cache_hit
    assert child.key not in parents
    assert trainer(transfer=Transfer(parents[1], "0-4", frozen)).key != child.key
    same = trainer(transfer=Transfer(parents[0], "0,1-4", frozen))  # the kept units enter the key resolved
    assert same.cache_hit
    assert same.key == child.key
    others = [
        trainer(transfer=Transfer(parents[0], "0-3", frozen)),
        trainer(transfer=Transfer(parents[0], "0-4", TransferConfig(lower="finetune"))),
        trainer(transfer=Transfer(parents[0], "0-4", TransferConfig(reinit=False))),
        trainer(transfer=Transfer(parents[0], "0-4", frozen), student=StudentConfig(width=8, units="layers")),
    ]
    keys = [child.key, *(other.key for other in others)]
    assert len(set(keys)) == len(keys)
    assert not any(other.cache_hit for other in others)


def test_a_taught_student_learns_its_teachers_predictions_and_keys_them(trainer: Trainer):
    teacher = trainer(seed=1)
    teacher_weights = {
        k: v.clone() for k, v in trainer.store.load_model(teacher.key, STUDENT, trainer.train).state_dict().items()
    }
    labels = trainer()
    taught = trainer(teacher=Teacher(teacher.key, 4.0))
    assert not taught.cache_hit
    assert taught.key not in {labels.key, teacher.key}
    # Same seed, data and recipe: only the targets differ, so the losses (to the teacher, not the labels) do.
    assert taught.history[-1]["train_loss"] != labels.history[-1]["train_loss"]
    assert trainer(teacher=Teacher(teacher.key, 4.0)).cache_hit
    assert trainer(teacher=Teacher(teacher.key, 2.0)).key != taught.key
    after = trainer.store.load_model(teacher.key, STUDENT, trainer.train).state_dict()
    assert all(torch.equal(after[k], v) for k, v in teacher_weights.items())  # the stored teacher is untouched
    with pytest.raises(ValueError, match="the teacher missing is not in"):
        trainer(teacher=Teacher("missing", 4.0))


def test_the_numbering_alone_does_not_change_a_fresh_students_key(trainer: Trainer):
    blocks = trainer()
    layers = trainer(student=StudentConfig(width=8, units="layers"))
    assert layers.cache_hit
    assert layers.key == blocks.key


class EpochRecorder:
    def __init__(self) -> None:
        self.records: list[dict[str, float]] = []

    def log_epoch(self, record: dict[str, float]) -> None:
        self.records.append(record)


def test_a_cached_child_is_reused_and_replays_its_curves(trainer: Trainer):
    transfer = Transfer(trainer().key, "0-4", TransferConfig())
    first, recorder = trainer(transfer=transfer), EpochRecorder()
    again = trainer(transfer=transfer, tracker=recorder)
    assert not first.cache_hit
    assert again.cache_hit
    assert again.key == first.key
    assert again.history == first.history == recorder.records
    assert again.test.top1 == first.test.top1
    assert np.array_equal(again.test.confusion, first.test.confusion)
    assert again.normalization == first.normalization == REAL


def test_a_result_survives_its_json_round_trip():
    history = [
        {"epoch": float(i + 1), "train_loss": 1.0, "train_accuracy": 0.5, "val_loss": 1.0, "val_accuracy": v}
        for i, v in enumerate([0.2, 0.5, 0.6])
    ]
    test = Evaluation(loss=1.0, top1=0.5, top5=1.0, per_class_accuracy=[0.5, 0.5], confusion=np.eye(2, dtype=np.int64))
    result = StudentResult("key", 0, history, test, REAL, 1.0, 100.0, 10)
    again = StudentResult.from_json(result.to_json())
    assert again.metrics() == result.metrics()
    assert again.normalization == REAL
    assert result.metrics()["val_accuracy"] == 0.6
    assert result.metrics()["train_images_per_second"] == 100.0


def test_a_student_two_threads_ask_for_at_once_is_trained_once(trainer: Trainer):
    """Two cells may need one student: the second waits for the first's, then reuses it."""
    first, second = map_concurrently(lambda _: trainer(), [0, 1], workers=2, cost=lambda _: 0)
    assert first.key == second.key
    assert sorted([first.cache_hit, second.cache_hit]) == [False, True]
    assert first.test.loss == second.test.loss


@pytest.mark.parametrize("from_parent", [False, True], ids=["fresh", "from a parent"])
def test_students_trained_at_once_equal_those_trained_one_by_one(tmp_path: Path, from_parent: bool):
    """Initial weights come from the global generator: concurrent students must not draw each other's, nor move
    them while loading their parent."""
    train, test = striped_images(16), striped_images(4, seed=1)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # both ways run each student on one thread, so their arithmetic is the same
    try:
        seeds = [0, 1, 2, 3]
        serial = Trainer(StudentStore(tmp_path / "serial"), train, test)
        parallel = Trainer(StudentStore(tmp_path / "parallel"), train, test)
        transfer = None
        if from_parent:
            parent = serial(seed=9)
            assert parallel(seed=9).key == parent.key
            transfer = Transfer(parent.key, "0-2", TransferConfig())
        one_by_one = [serial(seed=s, transfer=transfer) for s in seeds]
        at_once = map_concurrently(lambda s: parallel(seed=s, transfer=transfer), seeds, workers=2, cost=lambda s: 0)
    finally:
        torch.set_num_threads(previous)

    def learned(result: StudentResult) -> list[dict[str, float]]:  # the history without its timings
        return [{k: v for k, v in r.items() if k not in ("epoch_seconds", "images_per_second")} for r in result.history]

    for alone, together in zip(one_by_one, at_once, strict=True):
        assert together.key == alone.key
        assert learned(together) == learned(alone)
        assert together.test.loss == alone.test.loss
    assert learned(one_by_one[0]) != learned(one_by_one[1])
