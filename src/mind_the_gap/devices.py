"""Where models run, in which precision, and how many run at once: shared by the students' engine, the experiments
and the generators."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

import torch

Item, Result = TypeVar("Item"), TypeVar("Result")

# torch's global generator is one per process: while models train side by side in threads, whoever seeds it or
# draws from it (building a model, a policy's random operations) holds this lock, so no thread's draws move
# another's and every model is the same as when trained alone.
GLOBAL_RNG = threading.Lock()

log = logging.getLogger(__name__)
# (setting, device) pairs already logged: one line a process, however many students resolve the setting.
_ANNOUNCED: set[tuple[str, torch.device]] = set()
_ANNOUNCED_LOCK = threading.Lock()


def resolve_device(
    name: str | torch.device, setting: str = "training.device", *, allow_cpu: bool = True
) -> torch.device:
    """``auto``: CUDA, else Apple's MPS, else the CPU (refused unless ``allow_cpu``); any other name must be a torch
    device this machine has. The first time a setting's value resolves to a device in this process, one line logs
    both (a ``torch.device`` was resolved before, by whoever passes it on)."""
    allow_setting = f"{setting.rpartition('.')[0]}.allow_cpu".lstrip(".")
    if str(name) == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda")
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = torch.device("mps")
        elif allow_cpu:
            device = torch.device("cpu")
        else:
            raise ValueError(
                f"{setting} auto found no GPU (CUDA or MPS); this environment sets {allow_setting}: false, so "
                f"paper-scale work does not start on the CPU: run on a GPU machine or set {allow_setting}: true"
            )
    else:
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ValueError(f"{setting} {name!r} is not a torch device (use auto, cpu, cuda, cuda:1, ...)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"{setting} {name!r} asked for, but CUDA is not available on this machine")
    if not isinstance(name, torch.device):
        with _ANNOUNCED_LOCK:
            first = (setting, device) not in _ANNOUNCED
            _ANNOUNCED.add((setting, device))
        if first:
            log.info("%s %s: running on %s", setting, name, device)
    return device


def use_fastest_convolutions(device: torch.device) -> None:
    """On CUDA, cuDNN times its convolution algorithms for each new input shape and keeps the fastest (a setting of
    the whole process): a training run repeats one shape step after step, so the first step's timing pays for itself.
    Off CUDA nothing changes."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matrix instructions, so bf16 autocast speeds training up instead of down."""
    capabilities = getattr(torch.cpu, "get_capabilities", dict)()
    return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))


def has_fast_bf16(device: torch.device) -> bool:
    """Whether bfloat16 autocast is faster than float32 on ``device``: GPUs that support it, CPUs with native bf16."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


# The dtype each precision setting names: the students' ``training.amp`` and the diffusion model's ``precision``.
PRECISION_DTYPES = {
    "off": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
}


def resolve_precision(setting: str, device: torch.device, *, allow_float16: bool = False) -> torch.dtype:
    """The autocast dtype that a precision setting gives on ``device``; float32 means no autocast.

    ``auto``: bfloat16 where it is faster than float32 (GPUs that have it, CPUs with native bf16), else float16 on
    other CUDA GPUs when ``allow_float16`` (the caller scales its gradients for it), else float32.
    """
    if setting == "auto":
        if has_fast_bf16(device):
            return torch.bfloat16
        return torch.float16 if allow_float16 and device.type == "cuda" else torch.float32
    return PRECISION_DTYPES[setting]


def precision_name(dtype: torch.dtype) -> str:
    """The short name of an autocast dtype, as a student's cache key holds it."""
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Autocast to ``dtype`` on ``device``; float32 runs as it is, without autocast."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def concurrent_workers(setting: str | int, device: torch.device) -> int:
    """How many models to train at once: ``auto`` is 2 on a CPU with 2 threads or more (a small model leaves 2 cores
    partly idle), else 1 (a GPU, or one core)."""
    if setting != "auto":
        return int(setting)
    return 2 if device.type == "cpu" and torch.get_num_threads() >= 2 else 1


def map_concurrently(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int,
    cost: Callable[[Item], float],
    on_failure: Callable[[], None] = lambda: None,
) -> list[Result]:
    """``function`` of every item, in order, ``workers`` items at a time in threads that split the CPU's threads.

    Longest (by ``cost``) first; the items left over by the last full round run one by one with every thread, so no
    core idles at the end. PyTorch releases the GIL inside its operators, so threads train side by side. When an
    item fails or the run is interrupted (Ctrl-C), items not started are dropped and ``on_failure`` is called, so
    that running ones can stop early, before the error is raised.
    """
    results: dict[int, Result] = {}
    order = sorted(range(len(items)), key=lambda i: -cost(items[i]))
    together = len(items) - len(items) % workers if workers > 1 else 0
    threads = torch.get_num_threads()
    if together:
        torch.set_num_threads(max(1, threads // workers))
        try:
            with ThreadPoolExecutor(workers) as pool:
                futures = {pool.submit(function, items[i]): i for i in order[:together]}
                try:
                    for future in as_completed(futures):  # the first failure is seen at once
                        results[futures[future]] = future.result()
                except BaseException:
                    pool.shutdown(wait=False, cancel_futures=True)  # nothing new starts, then the running stop
                    on_failure()
                    raise
        finally:
            torch.set_num_threads(threads)
    results |= {i: function(items[i]) for i in order[together:]}
    return [results[i] for i in range(len(items))]
