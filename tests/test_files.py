"""A name locked in a folder: one thread of one process at a time, the others wait."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from mind_the_gap.files import exclusive

NAME = "00977388f9a93f3ad2ed"
OTHER = "0379a417aa7e397154f4"


def _never() -> None:
    raise AssertionError("waited for a name no one holds")


def _holder(folder: Path, name: str) -> subprocess.Popen:
    """Another process that holds ``name`` until ``folder/release`` appears; ``folder/held`` says it holds it."""
    code = f"""
        import time
        from pathlib import Path
        from mind_the_gap.files import exclusive
        folder = Path({str(folder)!r})
        with exclusive(folder, {name!r}):
            (folder / "held").touch()
            while not (folder / "release").exists():
                time.sleep(0.01)
    """
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)])
    deadline = time.monotonic() + 60
    while not (folder / "held").exists():
        assert process.poll() is None, "the holding process ended without taking the lock"
        assert time.monotonic() < deadline, "the holding process did not take the lock"
        time.sleep(0.01)
    return process


def test_a_name_another_process_holds_waits_until_it_is_released(tmp_path: Path):
    holder = _holder(tmp_path, NAME)
    waited, acquired = threading.Event(), threading.Event()

    def take() -> None:
        with exclusive(tmp_path, NAME, on_wait=waited.set):
            acquired.set()

    taker = threading.Thread(target=take)
    taker.start()
    try:
        assert waited.wait(30), "the lock was not seen as held by the other process"
        assert not acquired.is_set()
        with exclusive(tmp_path, OTHER, on_wait=_never):
            pass  # another name is free meanwhile
    finally:
        (tmp_path / "release").touch()
        taker.join(60)
        holder.wait(60)
    assert acquired.is_set()


def test_a_process_that_dies_releases_its_names(tmp_path: Path):
    holder = _holder(tmp_path, NAME)
    holder.kill()
    holder.wait(60)
    with exclusive(tmp_path, NAME, on_wait=_never):
        pass


def test_threads_of_one_process_take_a_name_in_turn(tmp_path: Path):
    inside, overlaps, waits = [], [], []

    def take() -> None:
        with exclusive(tmp_path, NAME, on_wait=lambda: waits.append(1)):
            inside.append(1)
            overlaps.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert overlaps == [1, 1, 1, 1]
    assert waits  # at least one thread found it taken
