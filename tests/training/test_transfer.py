"""Students that start from a stored parent student: kept units, re-initialised or inherited others, frozen or not."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mind_the_gap.data.imageset import ImageSet
from mind_the_gap.models.architectures import StudentConfig, UnitNet, build_student
from mind_the_gap.models.units import frozen_units
from mind_the_gap.training import student_cache
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import Normalization, seed_everything
from mind_the_gap.training.student_cache import StudentResult, StudentStore, train_student
from mind_the_gap.training.transfer import Transfer, TransferConfig, start_from_parent

from ..conftest import striped_images

BLOCKS = StudentConfig(width=8)
LAYERS = StudentConfig(width=8, units="layers")
FAST = TrainConfig(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0, amp="off", progress=False)
SEED = 0  # parent and child share their seed, as in the experiments: a fresh unit of the child is the parent's at init
State = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Family:
    """A store with one trained parent student, and the data and normalisation its children train with."""

    store: StudentStore
    train: ImageSet
    test: ImageSet
    normalization: Normalization
    parent: str

    def child(self, transfer: Transfer, student: StudentConfig = BLOCKS) -> StudentResult:
        return train_student(
            self.store, student, FAST, self.train, self.test, SEED, self.normalization, transfer=transfer
        )

    def state(self, key: str, student: StudentConfig = BLOCKS) -> State:
        return self.store.load_model(key, student, self.train).state_dict()

    def fresh(self, student: StudentConfig = BLOCKS) -> UnitNet:
        """The student train_student builds before any transfer: seeded with the child's seed."""
        seed_everything(SEED)
        return build_student(student, self.train.num_classes, self.train.channels, self.train.image_size[0])

    def start(self, transfer: Transfer, student: StudentConfig = BLOCKS) -> tuple[UnitNet, dict[str, float]]:
        """The child as its training starts, and the learning-rate scales it trains with."""
        model = self.fresh(student)
        scales = start_from_parent(model, self.store.load_model(self.parent, student, self.train), transfer)
        return model, scales


@pytest.fixture
def family(tmp_path: Path) -> Family:
    store = StudentStore(tmp_path)
    train, test = striped_images(16), striped_images(4, seed=1)
    normalization = Normalization.of(train)
    parent = train_student(store, BLOCKS, FAST, train, test, SEED, normalization)
    return Family(store, train, test, normalization, parent.key)


def _copy(model: UnitNet) -> State:
    return {key: value.clone() for key, value in model.state_dict().items()}


def _block_unit(key: str) -> int:
    return int(key.split(".")[0])


def _is_parameter(key: str) -> bool:
    return key.endswith(("weight", "bias"))


def test_a_frozen_child_keeps_its_parents_units_to_the_bit(family: Family):
    transfer = Transfer(family.parent, "0-4", TransferConfig())
    child = family.child(transfer)
    parent, trained = family.state(family.parent), family.state(child.key)
    initial, fresh = _copy(family.start(transfer)[0]), _copy(family.fresh())
    kept = [key for key in parent if _block_unit(key) <= 4]
    others = [key for key in parent if _block_unit(key) > 4]
    # Weights, BatchNorm running statistics and batch counters alike: a frozen unit's BatchNorm stays in eval mode.
    assert all(torch.equal(trained[key], parent[key]) for key in kept)
    # The other units start fresh (the classifier is not the parent's) and all of their weights train.
    assert all(torch.equal(initial[key], fresh[key]) for key in others)
    assert not torch.equal(initial["9.2.weight"], parent["9.2.weight"])
    assert all(not torch.equal(trained[key], initial[key]) for key in others if _is_parameter(key))
    assert not torch.equal(trained["8.bn2.running_mean"], initial["8.bn2.running_mean"])


def test_without_reinit_every_unit_starts_from_the_parent(family: Family):
    transfer = Transfer(family.parent, "0-4", TransferConfig(reinit=False, lr_scale=0.2))
    model, scales = family.start(transfer)
    parent = family.state(family.parent)
    assert all(torch.equal(value, parent[key]) for key, value in model.state_dict().items())
    assert frozen_units(model) == [0, 1, 2, 3, 4]
    assert scales == {name: 0.2 for name, _ in model.named_parameters()}
    trained = family.state(family.child(transfer).key)
    for key in parent:
        if _block_unit(key) <= 4:
            assert torch.equal(trained[key], parent[key]), key
        elif _is_parameter(key):
            assert not torch.equal(trained[key], parent[key]), key


def test_a_finetuned_child_trains_its_kept_units_at_the_scaled_rate(family: Family, monkeypatch):
    transfer = Transfer(family.parent, "0-4", TransferConfig(lower="finetune", lr_scale=0.1))
    model, scales = family.start(transfer)
    assert frozen_units(model) == []
    assert all(p.requires_grad for p in model.parameters())
    assert scales == {name: 0.1 for name, unit in model.unit_of_parameter().items() if unit <= 4}
    fit, used_scales = student_cache.fit, []

    def recording_fit(*args, **kwargs):
        used_scales.append(kwargs["lr_scales"])
        return fit(*args, **kwargs)

    monkeypatch.setattr(student_cache, "fit", recording_fit)
    trained, parent = family.state(family.child(transfer).key), family.state(family.parent)
    assert used_scales == [scales]
    assert all(not torch.equal(trained[key], parent[key]) for key in parent if _is_parameter(key)), "all trained"


def test_layers_numbering_keeps_a_range_that_ends_inside_a_block(family: Family):
    # Units 0-5 by layers: the stem, blocks 1 and 2, and block 3's first conv; block 3's second conv and its
    # shortcut projection train.
    transfer = Transfer(family.parent, "0-5", TransferConfig())
    child = family.child(transfer, LAYERS)
    parent, trained = family.state(family.parent, LAYERS), family.state(child.key, LAYERS)
    initial = _copy(family.start(transfer, LAYERS)[0])
    kept_prefixes = ("0.", "1.", "2.", "3.conv1.", "3.bn1.")
    kept = [key for key in parent if key.startswith(kept_prefixes)]
    others = [key for key in parent if not key.startswith(kept_prefixes)]
    assert {key for key in others if key.startswith("3.")} >= {
        "3.conv2.weight",
        "3.bn2.weight",
        "3.downsample.0.weight",
    }
    assert all(torch.equal(trained[key], parent[key]) for key in kept)
    assert all(not torch.equal(trained[key], initial[key]) for key in others if _is_parameter(key))
    assert not torch.equal(trained["3.bn2.running_var"], initial["3.bn2.running_var"])
    assert not torch.equal(initial["3.conv2.weight"], parent["3.conv2.weight"])
    assert not torch.equal(initial["9.2.weight"], parent["9.2.weight"])


def test_a_missing_parent_or_an_empty_kept_range_is_a_clear_error(family: Family):
    with pytest.raises(ValueError, match=r"student nope is not in .*train it first"):
        family.child(Transfer("nope", "0-4", TransferConfig()))
    with pytest.raises(ValueError, match="'3-1' is empty"):
        family.child(Transfer(family.parent, "3-1", TransferConfig()))
