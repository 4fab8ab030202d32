"""Bars only on a terminal: elsewhere (a log file) the generator's training and a generation log a line as each
tenth of their work is done."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from mind_the_gap.generators import class_diffusion, store
from mind_the_gap.generators.base import ImageRequest
from mind_the_gap.generators.class_diffusion import train_class_diffusion
from mind_the_gap.generators.store import generate_into, plan_requests

from .test_class_diffusion import TINY, coloured_squares

SHORT = TINY.model_copy(update={"steps": 20, "log_every": 2})


class Terminal(io.StringIO):
    """What a terminal's stderr says of itself."""

    def isatty(self) -> bool:
        return True


class Blank:
    """A backend of black images."""

    name = "blank"

    def generate(self, requests: Sequence[ImageRequest]) -> torch.Tensor:
        return torch.zeros(len(requests), 1, 4, 4, dtype=torch.uint8)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger]


@pytest.mark.parametrize(("stderr", "progress"), [(io.StringIO, True), (Terminal, True), (io.StringIO, False)])
def test_the_generators_training_draws_a_bar_on_a_terminal_and_logs_tenths_elsewhere(
    stderr: type[io.StringIO], progress: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    stream = stderr()
    monkeypatch.setattr(sys, "stderr", stream)
    with caplog.at_level(logging.INFO, class_diffusion.__name__):
        train_class_diffusion(coloured_squares(4), SHORT, progress=progress, device="cpu")
    lines = messages(caplog, class_diffusion.__name__)
    if stderr is Terminal:
        assert "class diffusion" in stream.getvalue()
        assert lines == []
    elif progress:
        assert stream.getvalue() == ""
        # Every second step is a log point: each is a tenth of the 20 steps.
        assert [line.split(":")[0] for line in lines] == [f"class diffusion step {s}/20" for s in range(2, 21, 2)]
    else:
        assert (stream.getvalue(), lines) == ("", [])


@pytest.mark.parametrize("stderr", [io.StringIO, Terminal])
def test_a_generation_draws_a_bar_on_a_terminal_and_logs_tenths_elsewhere(
    stderr: type[io.StringIO], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    stream = stderr()
    monkeypatch.setattr(sys, "stderr", stream)
    requests = plan_requests(("a", "b", "c"), 10, 0, lambda *_: "")
    with caplog.at_level(logging.INFO, store.__name__):
        generate_into(tmp_path / "run", requests, Blank(), batch_size=7)
    lines = messages(caplog, store.__name__)
    if stderr is Terminal:
        assert "generating run" in stream.getvalue()
        assert lines == []
    else:
        assert stream.getvalue() == ""
        # Batches of 7 of the 30 images: a line each time a new tenth is on disk (7 is 2 tenths, 14 is 4, ...).
        assert [line.split(",")[0] for line in lines] == [f"generating run: {n}/30 images" for n in (7, 14, 21, 28, 30)]
