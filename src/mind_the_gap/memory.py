"""Live bytes of the image and feature tensors the library holds, per window of work (a Kedro node), and the largest
image set the window reads: what the paper-shaped test and `benchmarks/bench_memory.py` hold each node to.

Resident memory cannot show this at small scale, where the interpreter and the models swamp a few megabytes of
images; at ImageNet-100 scale the images are all that grows. So the library reports each image set it reads or
builds and each feature tensor it keeps (``track``). A tensor's storage counts once however many views share it,
and stops counting when it is freed (a weak reference on the storage, which PyTorch keeps alive exactly as long as
its memory). A window counts what was tracked in it and what it adopts (sets handed to it in memory).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WindowPeak:
    """What a window held at most (bytes of live tracked tensors) and the largest image set it read."""

    peak_bytes: int
    largest_read_bytes: int


class _Ledger:
    def __init__(self) -> None:
        self.lock = threading.RLock()  # a storage may be freed (and its finalizer run) while the lock is held
        self.window = 0
        self.entries: dict[int, list[int]] = {}  # id of a live storage -> [bytes, window it counts in]
        self.live = 0  # bytes counting in the current window
        self.peak = 0
        self.largest_read = 0

    def track(self, tensor: torch.Tensor, read: bool) -> None:
        storage = tensor.untyped_storage()
        size = storage.nbytes()
        with self.lock:
            if read:
                self.largest_read = max(self.largest_read, size)
            entry = self.entries.get(id(storage))
            if entry is None:
                self.entries[id(storage)] = [size, self.window]
                weakref.finalize(storage, self.release, id(storage))
            elif entry[1] != self.window:
                entry[1] = self.window
            else:
                return
            self.live += size
            self.peak = max(self.peak, self.live)

    def release(self, key: int) -> None:
        with self.lock:
            size, window = self.entries.pop(key)
            if window == self.window:
                self.live -= size

    def start(self) -> None:
        with self.lock:
            self.window += 1
            self.live = self.peak = self.largest_read = 0

    def result(self) -> WindowPeak:
        with self.lock:
            return WindowPeak(self.peak, self.largest_read)


_LEDGER = _Ledger()


def track(tensor: torch.Tensor, *, read: bool = False) -> torch.Tensor:
    """Count ``tensor``'s storage in the current window while it lives (``read``: an image set read as input, the
    scale the window is held to); returns ``tensor``."""
    _LEDGER.track(tensor, read)
    return tensor


def start_window() -> None:
    """From now on, count only what is tracked or adopted anew; the peak starts at zero."""
    _LEDGER.start()


def window_peak() -> WindowPeak:
    return _LEDGER.result()
