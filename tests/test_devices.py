"""Where models run: ``auto`` and the CPU, once logged; the precision a setting gives and its autocast; models
trained at once in threads, every result in order, the longest first, and the CPU's threads shared; cuDNN's fastest
convolutions on CUDA."""

from __future__ import annotations

import threading

import pytest
import torch

from mind_the_gap import devices
from mind_the_gap.devices import (
    autocast,
    concurrent_workers,
    cpu_has_native_bf16,
    map_concurrently,
    precision_name,
    resolve_device,
    resolve_precision,
)
from mind_the_gap.training.config import TrainConfig
from mind_the_gap.training.student_cache import _NOT_IN_KEY


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine without CUDA or MPS, on which nothing has been logged yet."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_ANNOUNCED", set())


def test_auto_without_a_gpu_is_the_cpu_only_where_the_cpu_is_allowed(no_gpu):
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="generation.device auto found no GPU") as error:
        resolve_device("auto", "generation.device", allow_cpu=False)
    assert "this environment sets generation.allow_cpu: false" in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"^training.device auto found no GPU \(CUDA or MPS\); .* training.allow_cpu"):
        resolve_device("auto", allow_cpu=False)
    assert resolve_device("cpu", allow_cpu=False) == torch.device("cpu")  # asked for by name: no surprise


def test_a_setting_and_its_device_are_logged_once_a_process(no_gpu, caplog):
    with caplog.at_level("INFO", logger="mind_the_gap.devices"):
        for _ in range(3):  # as every student of a grid resolves it
            resolve_device("auto")
        resolve_device("auto", "generation.device")
        resolve_device(torch.device("cpu"), "device")  # resolved before, by whoever passes it on
    assert caplog.messages == [
        "training.device auto: running on cpu",
        "generation.device auto: running on cpu",
    ]


def test_where_a_student_runs_is_not_part_of_its_key():
    def key_settings(training: TrainConfig) -> dict:
        return training.model_dump(mode="json", exclude=_NOT_IN_KEY)

    assert key_settings(TrainConfig(allow_cpu=False)) == key_settings(TrainConfig(allow_cpu=True))


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_items_run_in_rounds_longest_first_and_the_leftover_gets_every_thread(two_threads):
    seen = []
    lock = threading.Lock()

    def work(item: int) -> int:
        with lock:
            seen.append((item, torch.get_num_threads(), threading.current_thread() is threading.main_thread()))
        return item * 10

    assert map_concurrently(work, [1, 5, 3], workers=2, cost=float) == [10, 50, 30]
    by_item = {item: (threads, main) for item, threads, main in seen}
    assert by_item[5] == by_item[3] == (1, False)  # the round of two: a thread each, one core each
    assert by_item[1] == (2, True)
    assert seen[-1][0] == 1
    assert torch.get_num_threads() == 2


def test_one_worker_runs_everything_in_order_with_every_thread(two_threads):
    seen = []
    map_concurrently(lambda item: seen.append((item, torch.get_num_threads())), [1, 2, 3], workers=1, cost=float)
    assert seen == [(3, 2), (2, 2), (1, 2)]


def test_a_failure_asks_the_running_items_to_stop_and_gives_the_threads_back(two_threads):
    stop, started, seen_stop = threading.Event(), [], []

    def work(item: int) -> int:
        started.append(item)
        if item == 3:
            raise ValueError("student 3 diverged")
        seen_stop.append(stop.wait(timeout=30))  # a long student: runs until asked to stop
        return item

    with pytest.raises(ValueError, match="student 3 diverged"):
        map_concurrently(work, [4, 3, 2, 1], workers=2, cost=float, on_failure=stop.set)
    # 4 was told to stop (and 2, if the freed thread took it before the failure was seen); 1 never started.
    assert {3, 4} <= set(started)
    assert 1 not in started
    assert all(seen_stop)
    assert torch.get_num_threads() == 2


def test_auto_trains_two_at_once_on_a_multicore_cpu_only(two_threads):
    assert concurrent_workers("auto", torch.device("cpu")) == 2
    assert concurrent_workers("auto", torch.device("cuda")) == 1
    assert concurrent_workers(3, torch.device("cuda")) == 3
    torch.set_num_threads(1)
    assert concurrent_workers("auto", torch.device("cpu")) == 1


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [
        ({}, torch.float32),
        ({"avx512_bf16": True}, torch.bfloat16),
        ({"amx_bf16": True}, torch.bfloat16),
        ({"avx512_bf16": False, "amx_bf16": False, "avx512_fp16": True}, torch.float32),
    ],
)
def test_cpu_precision_follows_native_bf16(monkeypatch, capabilities: dict[str, bool], expected: torch.dtype):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    cpu = torch.device("cpu")
    assert cpu_has_native_bf16() == (expected == torch.bfloat16)
    assert resolve_precision("auto", cpu) == expected
    assert resolve_precision("auto", cpu, allow_float16=True) == expected
    assert resolve_precision("off", cpu) == resolve_precision("float32", cpu) == torch.float32
    assert resolve_precision("bf16", cpu) == resolve_precision("bfloat16", cpu) == torch.bfloat16
    assert resolve_precision("fp16", cpu) == torch.float16


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_precision_prefers_bf16_and_takes_fp16_only_where_allowed(monkeypatch, bf16: bool, expected: torch.dtype):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    cuda = torch.device("cuda")
    assert resolve_precision("auto", cuda, allow_float16=True) == expected
    assert resolve_precision("auto", cuda) == (torch.bfloat16 if bf16 else torch.float32)  # no gradient scaler
    assert resolve_precision("off", cuda, allow_float16=True) == torch.float32
    assert resolve_precision("auto", torch.device("mps"), allow_float16=True) == torch.float32


def test_precision_names_are_those_of_the_student_keys():
    assert [precision_name(d) for d in (torch.float32, torch.bfloat16, torch.float16)] == ["fp32", "bf16", "fp16"]


def test_autocast_only_below_float32():
    cpu = torch.device("cpu")
    with autocast(cpu, torch.float32):
        assert not torch.is_autocast_enabled("cpu")
    with autocast(cpu, torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_cudnn_picks_the_fastest_convolutions_on_cuda_and_nothing_changes_elsewhere(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)  # restored after the test
    devices.use_fastest_convolutions(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    devices.use_fastest_convolutions(torch.device("cuda", 1))  # a device name: no GPU needed to set the flag
    assert torch.backends.cudnn.benchmark is True
