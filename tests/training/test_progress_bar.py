"""A student's progress bar is drawn only on a terminal: in a log file its epochs' lines say how it goes."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from mind_the_gap.models.architectures import StudentConfig, build_student
from mind_the_gap.training import engine
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.engine import Normalization, fit

from ..conftest import striped_images

SHOWN = TrainConfig(epochs=2, batch_size=16, warmup_epochs=0, progress=True)


class Terminal(io.StringIO):
    """What a terminal's stderr says of itself."""

    def isatty(self) -> bool:
        return True


def fit_writing_to(stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", stream)
    fit(build_student(StudentConfig(width=8), 4, 1, 16), striped_images(8), SHOWN, 0, Normalization((0.5,), (0.25,)))


def test_the_bar_is_drawn_on_a_terminal(monkeypatch: pytest.MonkeyPatch):
    terminal = Terminal()
    fit_writing_to(terminal, monkeypatch)
    assert "train epoch 1/2" in terminal.getvalue()


def test_elsewhere_no_bar_but_a_line_per_epoch(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    log_file = io.StringIO()
    with caplog.at_level(logging.INFO, engine.__name__):
        fit_writing_to(log_file, monkeypatch)
    assert log_file.getvalue() == ""
    epochs = [r.getMessage() for r in caplog.records if r.name == engine.__name__ and " epoch " in r.getMessage()]
    assert [line.split(":")[0] for line in epochs] == ["train epoch 1/2", "train epoch 2/2"]
