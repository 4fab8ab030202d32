"""Writing files so that a killed process never leaves a half-written one under the final name, and locking a
name in a folder so that one thread of one process at a time makes what it names."""

from __future__ import annotations

import fcntl
import functools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCKS_FILE = ".locks"


def _temporary_beside(path: Path) -> Path:
    """A temporary file beside ``path`` (same file system, so os.replace is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    return Path(name)


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temp_path)``, then move the finished file into place; a crash leaves ``path`` untouched."""
    temp = _temporary_beside(path)
    try:
        write(temp)
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


@contextmanager
def exclusive(folder: Path, name: str, on_wait: Callable[[], None] = lambda: None) -> Iterator[None]:
    """Held by one thread of one process at a time for each ``name`` (a hex digest) in ``folder``: another that asks
    for the same name calls ``on_wait`` and waits. Across processes (a Dask worker, a second `kedro run`) it is a
    POSIX record lock on one byte of ``folder/.locks`` (NFS honours them), released when the process dies; within
    a process, where POSIX locks do not separate threads, a thread lock."""
    folder = folder.resolve()
    thread_lock = _thread_lock(folder, name)
    waited = not thread_lock.acquire(blocking=False)
    if waited:
        on_wait()
        thread_lock.acquire()
    try:
        descriptor, offset = _locks_file(folder), int(name[:12], 16)
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:
            if not waited:
                on_wait()
            fcntl.lockf(descriptor, fcntl.LOCK_EX, 1, offset)
        try:
            yield
        finally:
            fcntl.lockf(descriptor, fcntl.LOCK_UN, 1, offset)
    finally:
        thread_lock.release()


_thread_locks: dict[tuple[Path, str], threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(folder: Path, name: str) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault((folder, name), threading.Lock())


@functools.cache
def _locks_file(folder: Path) -> int:
    """The process's one descriptor of the folder's lock file, never closed: closing any descriptor of a file drops
    every POSIX lock the process holds on it."""
    folder.mkdir(parents=True, exist_ok=True)
    return os.open(folder / LOCKS_FILE, os.O_RDWR | os.O_CREAT, 0o644)
