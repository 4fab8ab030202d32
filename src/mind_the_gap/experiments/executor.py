"""Where a cell's students train, and in which order.

Locally (a notebook, `kedro run`), ``training.concurrent_students`` at a time in threads (``map_concurrently``). In a
cell the Dask runner started, one Dask task per student on the runner's cluster (``map_on_cluster``), each pinned to
one GPU: the runner names the scheduler in ``SCHEDULER_ENV``, and the cell hands its worker thread back to the pool
while its students train (the Dask event named after the cell's task, which the runner waits on before seceding).
Workers train the students in their own process, reading the sets as files (``SetFile``) and handing the trained
students over through the student store, as a cell's own process would; a student whose worker dies is run again
elsewhere and resumes from its last epoch (the store keeps each epoch's progress).

Which ready task runs next on a free GPU is ``Schedule``'s choice, the same for the cluster's executor and for the
fake clock of ``simulate``, which lays out a whole study's students and generations over N GPUs.
"""

from __future__ import annotations

import functools
import heapq
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, TypeVar

from mind_the_gap.data.imageset import ImageSet, load_image_set, save_image_set

Item, Result = TypeVar("Item"), TypeVar("Result")

SCHEDULER_ENV = "MIND_THE_GAP_DASK_SCHEDULER"  # set by the Dask runner in a cell's `kedro run`: its scheduler
CELL_KEY_ENV = "MIND_THE_GAP_DASK_CELL_KEY"  # the cell's Dask task: its event, and its students' keys' prefix
CELL_LOG_ENV = "MIND_THE_GAP_DASK_CELL_LOG"  # the cell's log, where its students' lines go too
WORKER_TAG = "dask.worker"  # the MLflow tag naming the worker a cell or a student ran on
GPU = "GPU"  # the worker resource that counts GPUs: `dask worker ... --resources GPU=1`
PROGRESS_TOPIC = "mind-the-gap-students"  # the Dask events by which students report their start and end


@dataclass(frozen=True)
class Task:
    """Work for one GPU: ``seconds`` long (an estimate), startable once the tasks it ``needs`` have finished."""

    name: str
    seconds: float
    needs: tuple[str, ...] = ()


class Schedule:
    """Which ready task goes to the next free GPU: the one with the longest chain of work through it (its own
    seconds plus the longest chain of tasks that need it), so tasks others wait on (parents, generations) go first
    and, among the rest, the longest; ties in the given order."""

    def __init__(self, tasks: Iterable[Task]):
        self.tasks = {task.name: task for task in tasks}
        unknown = {need for task in self.tasks.values() for need in task.needs} - set(self.tasks)
        if unknown:
            raise ValueError(f"tasks need tasks that are not scheduled: {', '.join(sorted(unknown))}")
        needed_by: dict[str, list[str]] = {name: [] for name in self.tasks}
        for task in self.tasks.values():
            for need in task.needs:
                needed_by[need].append(task.name)
        try:  # each task after every task that needs it
            order = list(TopologicalSorter(needed_by).static_order())
        except CycleError as cycle:
            raise ValueError(f"tasks need each other in a cycle: {' -> '.join(cycle.args[1])}") from None
        self.chain: dict[str, float] = {}
        for name in order:
            self.chain[name] = self.tasks[name].seconds + max((self.chain[n] for n in needed_by[name]), default=0.0)
        self._needed_by = needed_by
        self._waiting = {name: set(task.needs) for name, task in self.tasks.items() if task.needs}
        self._position = {name: i for i, name in enumerate(self.tasks)}
        self._ready = [self._entry(name) for name, task in self.tasks.items() if not task.needs]
        heapq.heapify(self._ready)

    def _entry(self, name: str) -> tuple[float, int, str]:
        return -self.chain[name], self._position[name], name

    def next(self) -> Task | None:
        """The ready task to start now (it counts as started), or None while none is ready."""
        return self.tasks[heapq.heappop(self._ready)[2]] if self._ready else None

    def finish(self, name: str) -> None:
        """``name`` finished: the tasks that waited only on it become ready."""
        for waiting in self._needed_by[name]:
            self._waiting[waiting].discard(name)
            if not self._waiting[waiting]:
                del self._waiting[waiting]
                heapq.heappush(self._ready, self._entry(waiting))


@dataclass(frozen=True)
class Simulation:
    """What ``simulate`` found: the makespan, each task's start and GPU, and how busy the GPUs were."""

    gpus: int
    makespan: float
    starts: dict[str, tuple[float, int]]  # task: (start, GPU)
    busy: float  # GPU-seconds of work

    @property
    def utilization(self) -> float:
        """The share of the GPUs' time over the whole makespan that went to tasks."""
        return self.busy / (self.gpus * self.makespan) if self.makespan else 1.0


def simulate(tasks: Sequence[Task], gpus: int) -> Simulation:
    """Run ``Schedule`` on a fake clock: each free GPU takes the next ready task, which takes its ``seconds``."""
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    schedule = Schedule(tasks)
    free, running, starts = list(range(gpus)), [], {}
    now = 0.0
    while True:
        while free and (task := schedule.next()) is not None:
            gpu = free.pop(0)
            starts[task.name] = (now, gpu)
            heapq.heappush(running, (now + task.seconds, gpu, task.name))
        if not running:
            break
        now, gpu, name = heapq.heappop(running)
        free.append(gpu)
        free.sort()
        schedule.finish(name)
    return Simulation(gpus, now, starts, sum(task.seconds for task in tasks))


def on_cluster() -> bool:
    """Whether this process is a cell the Dask runner started, whose students go to its cluster."""
    return SCHEDULER_ENV in os.environ


@dataclass(frozen=True)
class SetFile:
    """An image set a worker reads from a file (memory-mapped: the workers of one host share its pages), checked
    against the fingerprint of the set the cell handed over."""

    path: str
    fingerprint: str

    def load(self) -> ImageSet:
        data = load_image_set(self.path)
        if data.fingerprint() != self.fingerprint:
            raise ValueError(f"image set {self.path} changed after its cell handed it to the workers: run it again")
        return data


def set_file(data: ImageSet, folder: Path) -> SetFile:
    """The file a worker reads ``data`` from: the one it was read from (a stored set of the catalog), else one in
    ``folder`` named by its fingerprint, written once (a set built in memory, such as a generated variant's)."""
    if data.file is not None:
        return SetFile(str(data.file), data.fingerprint())
    path = folder.resolve() / f"{data.fingerprint()}.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image_set(data, path)
    return SetFile(str(path), data.fingerprint())


@functools.cache
def _client(address: str) -> Any:
    """This process's client of the runner's scheduler, as Dask's docs have a process outside the workers submit
    work: its own ``Client``."""
    from distributed import Client

    return Client(address, set_as_default=False)


def _slots(workers: Iterable[dict[str, Any]]) -> tuple[int, dict[str, float] | None]:
    """How many students may run at once, and what each asks of its worker: one GPU each where the workers declare
    GPUs, else one thread each."""
    workers = list(workers)
    gpus = sum(worker.get("resources", {}).get(GPU, 0) for worker in workers)
    if gpus:
        return int(gpus), {GPU: 1}
    return max(1, sum(worker["nthreads"] for worker in workers)), None


def map_on_cluster(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    names: Sequence[str],
    cost: Callable[[Item], float],
    on_failure: Callable[[], None] = lambda: None,
) -> list[Result]:
    """``function`` of every item, in order, each a task on the runner's cluster named ``names[i]`` under the cell's
    task, started in ``Schedule``'s order as GPUs free up (Dask places a task when it is submitted, so submitting
    all at once would queue them behind busy workers). A task that fails cancels those not finished, then
    ``on_failure`` is called and its error raised here.
    """
    from distributed import Event, as_completed

    client = _client(os.environ[SCHEDULER_ENV])
    cell = os.environ[CELL_KEY_ENV]
    Event(cell, client).set()  # the runner hands the cell's worker thread back to the pool: students need it
    slots, resources = _slots(client.scheduler_info(n_workers=-1)["workers"].values())
    schedule = Schedule(Task(str(i), cost(item)) for i, item in enumerate(items))
    on_worker = functools.partial(_on_worker, function, os.environ.get(CELL_LOG_ENV))
    results: dict[int, Result] = {}
    index: dict[str, int] = {}
    running = as_completed(loop=client.loop)  # this client's, which is no process's default

    def submit_ready() -> None:
        while running.count() < slots and (task := schedule.next()) is not None:
            i = int(task.name)
            # The same key when a cell runs again after its worker died: Dask reuses a student still running.
            future = client.submit(
                on_worker,
                items[i],
                key=f"{cell}/{names[i]}",
                priority=task.seconds,
                resources=resources,
                pure=False,
            )
            index[future.key] = i
            running.add(future)

    submit_ready()
    try:
        for future in running:
            i = index[future.key]
            results[i] = future.result()
            schedule.finish(str(i))
            submit_ready()
    except BaseException:
        client.cancel(list(running.futures))
        on_failure()
        raise
    return [results[i] for i in range(len(items))]


def _on_worker(function: Callable[[Item], Result], log: str | None, item: Item) -> Result:
    """On a worker: ``function(item)``, this thread's log lines of the project appended to the cell's log."""
    if log is None:
        return function(item)
    handler = logging.FileHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    thread = threading.get_ident()
    handler.addFilter(lambda record: record.thread == thread)
    project = logging.getLogger("mind_the_gap")
    level = project.level
    project.addHandler(handler)
    project.setLevel(logging.INFO)
    try:
        return function(item)
    finally:
        project.removeHandler(handler)
        project.setLevel(level)
        handler.close()


def report_student(cell: str, name: str, event: str) -> None:
    """On a worker: the student ``name`` of ``cell`` started, trained, was reused or failed, as an event the run's
    driver counts (``progress.report``)."""
    from distributed import get_worker

    get_worker().log_event(PROGRESS_TOPIC, {"cell": cell, "name": name, "event": event})


def worker_address() -> str:
    """The address of the Dask worker this runs on; ``local`` outside one."""
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return "local"
