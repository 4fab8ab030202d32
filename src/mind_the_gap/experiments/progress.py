"""Progress a person can read: one log line as each student starts and one as it ends, saying how many of the
run's students are done and about how long the rest will take.

A run (``plan_run``: a `kedro run`'s hook starts one) counts its students together, each named by its planner with
its planned optimizer steps when the run's first student starts; ``train_cell`` reports every student it trains or
reuses through ``cell_progress``. Outside a run (a notebook), each ``train_cell`` call counts its own students. A
student reused from the store is done at once. The time left is the planned steps of the students not done over the
steps per second measured on the students trained so far, in wall time while any student is in flight (students
training side by side count together); until a trained student ends it is not yet known. A starting student's
number counts the students done or in flight, so a student that failed and starts again counts once. On a Dask
cluster each student's task reports its start and end to the run's driver (``report``), which counts them so.

    student 15/40 started (layer_swap.prefix_from_synthetic): layer_swap/prefix_from_synthetic/cut8/seed0
    student 14/40 done (layer_swap.prefix_from_synthetic), about 12 min left: layer_swap/.../seed2 trained in 3 min
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

Result = TypeVar("Result")

log = logging.getLogger(__name__)


class StudentProgress:
    """The students of a run, or of one ``train_cell`` call: how many are done and how fast they train. The threads
    that train a cell's students side by side share it."""

    def __init__(self, planned: Mapping[str, float], clock: Callable[[], float] = time.monotonic):
        self._left = dict(planned)  # the planned students not done yet, with their planned steps
        self._planned = len(self._left)
        self._unplanned = 0  # students begun that the plan did not name: the total grows by them
        self._done = 0
        self._in_flight = 0
        self._trained_steps = 0.0
        self._busy_seconds = 0.0  # wall time with a student in flight, up to ``_busy_since``
        self._busy_since = 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self._elsewhere: dict[tuple[str, str], tuple[bool, float]] = {}  # started on a worker: (planned, began)

    @property
    def total(self) -> int:
        return self._planned + self._unplanned

    def track(self, cell: str, name: str, work: Callable[[], Result], reused: Callable[[Result], bool]) -> Result:
        """``work()``, which trains or reuses the student ``name`` of ``cell``, between the lines of its start and
        its end; ``reused(result)`` tells whether the store gave it back."""
        planned, began = self._begin(cell, name)
        try:
            result = work()
        except BaseException:
            self._abandon(planned)
            raise
        self._end(cell, name, began, reused(result))
        return result

    def started(self, cell: str, name: str) -> None:
        """The student ``name`` of ``cell`` started elsewhere (a task on a Dask worker); ``ended`` follows. A student
        started again (its worker died) ends its first try unfinished."""
        previous = self._elsewhere.pop((cell, name), None)
        if previous is not None:
            self._abandon(previous[0])
        self._elsewhere[(cell, name)] = self._begin(cell, name)

    def ended(self, cell: str, name: str, reused: bool | None) -> None:
        """The student ``started`` elsewhere ended: reused from the store, trained, or (None) failed."""
        begun = self._elsewhere.pop((cell, name), None)
        if begun is None:  # its start was not seen
            return
        planned, began = begun
        if reused is None:
            self._abandon(planned)
        else:
            self._end(cell, name, began, reused)

    def _begin(self, cell: str, name: str) -> tuple[bool, float]:
        with self._lock:
            now = self._clock()
            planned = name in self._left
            if not planned:
                self._unplanned += 1
            self._enter(now)
            log.info("student %d/%d started (%s): %s", self._done + self._in_flight, self.total, cell, name)
            return planned, now

    def _end(self, cell: str, name: str, began: float, reused: bool) -> None:
        with self._lock:
            now = self._clock()
            steps = self._left.pop(name, 0.0)  # an unplanned student's share of the work is not known
            if not reused:
                self._trained_steps += steps
            self._done += 1
            self._leave(now)
            how = "reused" if reused else f"trained in {duration(now - began)}"
            log.info(
                "student %d/%d done (%s), %s: %s %s", self._done, self.total, cell, self._time_left(now), name, how
            )

    def _abandon(self, planned: bool) -> None:
        with self._lock:
            if not planned:
                self._unplanned -= 1
            self._leave(self._clock())

    def _enter(self, now: float) -> None:
        if not self._in_flight:
            self._busy_since = now
        self._in_flight += 1

    def _leave(self, now: float) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._busy_seconds += now - self._busy_since

    def _time_left(self, now: float) -> str:
        if self._done >= self.total:
            return "none left"
        busy = self._busy_seconds + (now - self._busy_since if self._in_flight else 0.0)
        if self._trained_steps <= 0 or busy <= 0:
            return "time left not yet known"
        return f"about {duration(sum(self._left.values()) * busy / self._trained_steps)} left"


def report(progress: StudentProgress, event: Mapping[str, Any]) -> None:
    """A student's start or end as its worker reports it (``executor.report_student``): ``cell``, ``name`` and
    ``event``, one of started, trained, reused, failed."""
    cell, name, what = event["cell"], event["name"], event["event"]
    if what == "started":
        progress.started(cell, name)
    else:
        progress.ended(cell, name, {"trained": False, "reused": True, "failed": None}[what])


def duration(seconds: float) -> str:
    """Seconds as a person reads them: 40 s, 12 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


_run_lock = threading.Lock()
_planner: Callable[[], StudentProgress | None] | None = None  # the run's, until its first student asks
_run: StudentProgress | None = None


def plan_run(planner: Callable[[], Mapping[str, float] | None], clock: Callable[[], float] = time.monotonic) -> None:
    """A run starts: its students count together, as ``planner`` names them with their planned optimizer steps (only
    their ratios matter: the time left is measured in the same steps). It is asked when the run's first student
    starts, so that a run, or a process, that trains none never pays for planning; where it gives None, each
    ``train_cell`` call counts its own students."""
    global _planner, _run
    with _run_lock:
        _planner, _run = partial(_counting, planner, clock), None


def end_run() -> None:
    """The run has ended: ``train_cell`` calls count their own students again."""
    global _planner, _run
    with _run_lock:
        _planner, _run = None, None


def cell_progress(students: Mapping[str, float]) -> StudentProgress:
    """The planned run's progress; else one that counts ``students`` (by name, with their planned steps) alone."""
    global _planner, _run
    with _run_lock:
        if _planner is not None:
            _planner, _run = None, _planner()
        return _run if _run is not None else StudentProgress(students)


def _counting(planner: Callable[[], Mapping[str, float] | None], clock: Callable[[], float]) -> StudentProgress | None:
    planned = planner()
    if planned is None:
        return None
    log.info("this run trains or reuses %d students", len(planned))
    return StudentProgress(planned, clock)
