"""Progress a person can read: a line as each student starts and ends, the run's counts, and the time left from the
throughput measured so far (on a fake clock); a cell's own counts outside a run, as in a notebook."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from mind_the_gap.experiments import baselines, progress
from mind_the_gap.experiments.progress import StudentProgress, cell_progress, duration, end_run, plan_run
from mind_the_gap.experiments.study import Study, train_cell

from ..pipelines.conftest import TinyExperiment

LOGGER = progress.__name__


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(autouse=True)
def no_run_left() -> Iterator[None]:
    """Each test starts outside a run, and leaves none behind."""
    end_run()
    yield
    end_run()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


def trained(clock: FakeClock, seconds: float) -> dict[str, bool]:
    """The work of a student that trains for ``seconds``: its row says it was not reused."""
    clock.now += seconds
    return {"cache_hit": False}


def reused() -> dict[str, bool]:
    return {"cache_hit": True}


def from_store(row: dict[str, bool]) -> bool:
    return row["cache_hit"]


def test_each_student_gets_a_line_as_it_starts_and_ends_with_the_time_left_from_its_throughput(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, LOGGER)
    tracked = StudentProgress({"a": 100, "b": 100, "c": 200}, clock)
    tracked.track("baselines.real", "a", lambda: trained(clock, 20), from_store)
    tracked.track("baselines.real", "b", lambda: trained(clock, 20), from_store)
    tracked.track("layer_swap.prefix_from_real", "c", lambda: trained(clock, 40), from_store)
    # 100 steps in 20 s: the 300 steps left take 60 s; then 200 in 40 s: the 200 left take 40 s.
    assert lines(caplog) == [
        "student 1/3 started (baselines.real): a",
        "student 1/3 done (baselines.real), about 60 s left: a trained in 20 s",
        "student 2/3 started (baselines.real): b",
        "student 2/3 done (baselines.real), about 40 s left: b trained in 20 s",
        "student 3/3 started (layer_swap.prefix_from_real): c",
        "student 3/3 done (layer_swap.prefix_from_real), none left: c trained in 40 s",
    ]


def test_students_training_side_by_side_count_together_in_the_throughput(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, LOGGER)
    tracked = StudentProgress({"a": 100, "b": 100, "c": 1000}, clock)

    def a_with_b_beside_it() -> dict[str, bool]:
        clock.now += 10
        tracked.track("cell", "b", lambda: trained(clock, 20), from_store)  # from 10 s to 30 s, while a trains
        return trained(clock, 10)

    tracked.track("cell", "a", a_with_b_beside_it, from_store)
    assert lines(caplog)[:3] == [
        "student 1/3 started (cell): a",
        "student 2/3 started (cell): b",
        # b's 100 steps in the 30 s with a student in flight: the 1100 steps left (a's among them) take 330 s.
        "student 1/3 done (cell), about 6 min left: b trained in 20 s",
    ]
    # 200 steps in 40 s: c's 1000 take 200 s.
    assert lines(caplog)[3] == "student 2/3 done (cell), about 3 min left: a trained in 40 s"


def test_a_reused_student_is_done_at_once_and_the_time_left_is_unknown_until_one_has_trained(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, LOGGER)
    tracked = StudentProgress({"a": 100, "b": 100, "c": 100}, clock)
    tracked.track("cell", "a", reused, from_store)
    clock.now += 5  # between students: not counted as training time
    tracked.track("cell", "b", lambda: trained(clock, 20), from_store)
    assert lines(caplog)[1] == "student 1/3 done (cell), time left not yet known: a reused"
    # The reused student's steps are done, not trained: 100 steps in 20 s, 100 left.
    assert lines(caplog)[3] == "student 2/3 done (cell), about 20 s left: b trained in 20 s"


def test_a_failed_student_leaves_the_students_in_flight_and_a_retry_counts_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, LOGGER)
    tracked = StudentProgress({"a": 100, "b": 100}, clock)

    def fails() -> dict[str, bool]:
        clock.now += 50
        raise ValueError("broken parent")

    with pytest.raises(ValueError, match="broken parent"):
        tracked.track("cell", "a", fails, from_store)
    tracked.track("cell", "a", lambda: trained(clock, 10), from_store)
    # The failed attempt's 50 s count as time spent training: 100 steps in 60 s, 100 left.
    assert lines(caplog) == [
        "student 1/2 started (cell): a",
        "student 1/2 started (cell): a",
        "student 1/2 done (cell), about 60 s left: a trained in 10 s",
    ]


def test_students_on_workers_report_their_start_and_end_and_count_as_here(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    """On a Dask cluster the driver hears each student's start and end as events; a student whose worker died
    starts again, and one that failed is not done."""
    caplog.set_level(logging.INFO, LOGGER)
    tracked = StudentProgress({"a": 100, "b": 100, "c": 100}, clock)

    def event(name: str, what: str, seconds: float = 0) -> None:
        clock.now += seconds
        progress.report(tracked, {"cell": "layer_swap.prefix_from_real", "name": name, "event": what})

    event("a", "started")
    event("b", "started")
    event("a", "started", 5)  # a's worker died: a runs again
    event("a", "trained", 20)
    event("b", "failed")
    event("c", "started")
    event("c", "reused")
    event("b", "trained")  # a retry's end whose start was not heard: not counted
    assert [line.split(": ")[0] for line in lines(caplog)] == [
        "student 1/3 started (layer_swap.prefix_from_real)",
        "student 2/3 started (layer_swap.prefix_from_real)",
        "student 2/3 started (layer_swap.prefix_from_real)",  # a again, its first try over
        # 100 steps in the 25 s with a student in flight: b's and c's 200 take 50 s.
        "student 1/3 done (layer_swap.prefix_from_real), about 50 s left",
        "student 2/3 started (layer_swap.prefix_from_real)",  # b failed: one done, c in flight
        "student 2/3 done (layer_swap.prefix_from_real), about 25 s left",  # c reused; b's 100 steps left
    ]


def test_a_student_the_plan_did_not_name_adds_to_the_total(clock: FakeClock, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, LOGGER)
    tracked = StudentProgress({"a": 100}, clock)
    tracked.track("cell", "surprise", lambda: trained(clock, 10), from_store)
    tracked.track("cell", "a", lambda: trained(clock, 10), from_store)
    assert lines(caplog) == [
        "student 1/2 started (cell): surprise",
        "student 1/2 done (cell), time left not yet known: surprise trained in 10 s",  # its share is not known
        "student 2/2 started (cell): a",
        "student 2/2 done (cell), none left: a trained in 10 s",
    ]


def test_students_ending_in_many_threads_at_once_each_get_their_own_count(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, LOGGER)
    names = [f"s{i}" for i in range(200)]
    tracked = StudentProgress(dict.fromkeys(names, 1), clock)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: tracked.track("cell", name, reused, from_store), names))
    done = [line for line in lines(caplog) if " done " in line]
    assert sorted(int(line.split()[1].split("/")[0]) for line in done) == list(range(1, 201))
    assert done[-1].startswith("student 200/200 done (cell), none left: ")


def test_no_line_at_all_where_the_user_filtered_the_level(clock: FakeClock, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.WARNING, LOGGER)
    StudentProgress({"a": 1}, clock).track("cell", "a", lambda: trained(clock, 1), from_store)
    assert caplog.records == []


@pytest.mark.parametrize(
    ("seconds", "said"), [(0.4, "0 s"), (89, "89 s"), (90, "2 min"), (12 * 60 + 20, "12 min"), (9000, "2.5 h")]
)
def test_durations_read_as_a_person_says_them(seconds: float, said: str):
    assert duration(seconds) == said


def test_a_planned_run_counts_every_cells_students_together_and_plans_only_when_a_student_starts(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, LOGGER)
    asked: list[str] = []
    plan_run(lambda: asked.append("plan") or {"a": 1, "b": 1, "c": 1}, clock)
    assert asked == []  # a run that trains no student never plans
    first, second = cell_progress({"a": 1}), cell_progress({"b": 1, "c": 1})
    assert first is second
    assert (first.total, asked) == (3, ["plan"])
    end_run()
    assert cell_progress({"a": 1}).total == 1
    assert lines(caplog) == ["this run trains or reuses 3 students"]


def test_a_run_that_cannot_be_planned_counts_each_cell_on_its_own(clock: FakeClock):
    plan_run(lambda: None, clock)
    assert cell_progress({"a": 1, "b": 1}).total == 2
    assert cell_progress({"c": 1}).total == 1


def one_at_a_time(tiny: TinyExperiment) -> Study:
    """The tiny study, its students trained one after another, in order: its lines come in a known order."""
    return replace(tiny.study, training=tiny.study.training.model_copy(update={"concurrent_students": 1}))


def test_the_progress_of_train_cell_needs_no_kedro():
    imported = "import sys, mind_the_gap.experiments.study; print(sorted(m for m in sys.modules if 'kedro' in m))"
    done = subprocess.run([sys.executable, "-c", imported], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "[]"


def test_train_cell_outside_a_run_counts_the_cells_own_students(
    tiny: TinyExperiment, tracking: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, LOGGER)
    jobs = baselines.plan("real", "train", baselines.BaselinesConfig(seeds=[0, 1]))
    rows = train_cell(one_at_a_time(tiny), "baselines", "real", jobs, {"train": tiny.real_train})
    assert rows["cache_hit"].all()  # the baselines the fixture trained
    assert lines(caplog) == [
        "student 1/2 started (baselines.real): baselines/real/seed0",
        "student 1/2 done (baselines.real), time left not yet known: baselines/real/seed0 reused",
        "student 2/2 started (baselines.real): baselines/real/seed1",
        "student 2/2 done (baselines.real), none left: baselines/real/seed1 reused",
    ]


def test_train_cell_in_a_planned_run_counts_the_runs_students(
    tiny: TinyExperiment, tracking: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, LOGGER)
    plan_run(lambda: {"baselines/real/seed0": 10, "baselines/synthetic/seed0": 10, "layer_swap/x/seed0": 10})
    jobs = baselines.plan("real", "train", baselines.BaselinesConfig(seeds=[0]))
    train_cell(one_at_a_time(tiny), "baselines", "real", jobs, {"train": tiny.real_train})
    jobs = baselines.plan("synthetic", "train", baselines.BaselinesConfig(seeds=[0]))
    train_cell(one_at_a_time(tiny), "baselines", "synthetic", jobs, {"train": tiny.synthetic_train})
    assert lines(caplog) == [
        "this run trains or reuses 3 students",
        "student 1/3 started (baselines.real): baselines/real/seed0",
        "student 1/3 done (baselines.real), time left not yet known: baselines/real/seed0 reused",
        "student 2/3 started (baselines.synthetic): baselines/synthetic/seed0",
        "student 2/3 done (baselines.synthetic), time left not yet known: baselines/synthetic/seed0 reused",
    ]
