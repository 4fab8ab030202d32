"""The study's wall time as a newcomer runs it: one plain `kedro run` from empty data folders, then one cached.

Runs in a scratch copy of the project (its `conf/`, `pyproject.toml` and a link to the real data in `data/01_raw`;
the code is the installed package), so the project's own data, students and MLflow store are left alone. The
whole runs' wall seconds are the last row; the rows above split them by pipeline, with the node seconds the
project's `RunTimesHook` writes to `run_times.json` under the data root (read after each run), and one row for
the rest: Kedro's start-up and the loading and saving of data sets outside the nodes. Writes a Markdown table
(and `bench_study.csv` in the scratch folder): per pipeline, seconds fresh and cached, students trained and
reused, and the trained students' images/s (from the runs tables the fresh run wrote).
Usage:

    python benchmarks/bench_study.py [--env base|full] [--params "baselines.seeds=[0]"] [--keep /tmp/study]
        [--pipelines data_processing,generator_training,generation,baselines,normalization]

`make benchmark-study` measures the default (`base`), `make benchmark-study ENV=full` the full study.

``--pipelines`` runs a part of the study, as one `kedro run --pipelines` (each pipeline needs those it reads
from). The hook writes its file only in a run with the report, so without `reporting` the table has only the
whole run's row.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from math import nan
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = [
    "data_processing",
    "generator_training",
    "generation",
    "baselines",
    "layer_swap",
    "data_efficiency",
    "normalization",
    "ablations",
    "levers",
    "stitching",
    "reporting",
]
COLUMNS = ["pipeline", "fresh_seconds", "students_trained", "students_reused", "images_per_second", "cached_seconds"]


def scratch_project(folder: Path) -> None:
    """A project that shares the code, the configuration and the raw data, and nothing the pipelines write."""
    shutil.copytree(ROOT / "conf", folder / "conf", ignore=shutil.ignore_patterns("credentials.yml"))
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    (folder / "src").mkdir()  # kedro wants the source folder inside the project; the code comes from the install
    for layer in (ROOT / "data").iterdir():
        if layer.is_dir():
            (folder / "data" / layer.name).mkdir(parents=True)
    (folder / "data" / "01_raw").rmdir()
    (folder / "data" / "01_raw").symlink_to(ROOT / "data" / "01_raw")


def kedro_run(folder: Path, arguments: list[str]) -> float:
    """Wall seconds of one `kedro run`; its output goes to `kedro.log` in the scratch folder."""
    environment = dict(os.environ, KEDRO_DISABLE_TELEMETRY="true")
    command = [str(Path(sys.executable).with_name("kedro")), "run", *arguments]
    start = time.perf_counter()
    with (folder / "kedro.log").open("a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        done = subprocess.run(command, cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode}): see {folder / 'kedro.log'}")
    return time.perf_counter() - start


def data_root(env: str) -> str:
    """Where ``env`` writes: ``data_root`` of its globals as Kedro's config loader merges them over base's."""
    from mind_the_gap.runners.estimate import environment_config

    return environment_config(ROOT / "conf", env)["globals"]["data_root"]


def students(folder: Path, pipeline: str) -> dict[str, float]:
    """Students trained and reused by a pipeline's last run, and the trained ones' images/s, from its runs tables
    (under the scratch project's data root)."""
    tables = list((folder / "07_model_output" / pipeline).glob("*_runs.csv"))
    runs = pd.concat([pd.read_csv(table) for table in tables]) if tables else pd.DataFrame()
    if runs.empty:  # every factor of the pipeline off: tables with no rows
        return {"students_trained": 0, "students_reused": 0, "images_per_second": float("nan")}
    trained = runs[~runs["cache_hit"].astype(bool)]
    images = (trained["train_images_per_second"] * trained["train_seconds"]).sum()
    return {
        "students_trained": len(trained),
        "students_reused": len(runs) - len(trained),
        "images_per_second": images / trained["train_seconds"].sum() if len(trained) else float("nan"),
    }


def run_times(folder: Path) -> dict[str, float]:
    """Node seconds of each pipeline of the last run, as the project's `RunTimesHook` wrote them under the scratch
    project's data root."""
    rows = json.loads((folder / "08_reporting" / "run_times.json").read_text())
    return {row["pipeline"]: row["seconds"] for row in rows}


def markdown(table: pd.DataFrame) -> str:
    cells = [
        ["" if pd.isna(v) else f"{v:.0f}" if isinstance(v, float) else str(v) for v in row]
        for row in table.itertuples(index=False)
    ]
    lines = [list(table.columns), ["---"] * len(table.columns), *cells]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--params", default=None, help="extra `kedro run --params`")
    parser.add_argument("--keep", type=Path, default=None, help="scratch folder to use and keep (must not exist)")
    parser.add_argument("--pipelines", default=",".join(PIPELINES), help="a comma list: part of the study")
    args = parser.parse_args()
    chosen = args.pipelines.split(",")
    unknown = sorted(set(chosen) - set(PIPELINES))
    if unknown:
        parser.error(f"unknown pipeline(s) {', '.join(unknown)}; the study's: {', '.join(PIPELINES)}")
    pipelines = [p for p in PIPELINES if p in chosen]

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_study_"))
    if args.keep:
        folder.mkdir(parents=True)
    scratch_project(folder)
    part = [] if pipelines == PIPELINES else ["--pipelines", ",".join(pipelines)]
    arguments = [*part, "--env", args.env, *(["--params", args.params] if args.params else [])]
    written = folder / data_root(args.env)
    timed = "reporting" in pipelines  # the hook writes its file only in a run with a node reading it: the report
    fresh = kedro_run(folder, arguments)
    fresh_times = run_times(written) if timed else {}
    counts = {p: students(written, p) for p in pipelines}
    print(f"fresh: {fresh:.0f} s", flush=True)
    cached = kedro_run(folder, arguments)
    cached_times = run_times(written) if timed else {}
    rows = [
        {"pipeline": p, "fresh_seconds": fresh_times[p], **counts[p], "cached_seconds": cached_times.get(p, nan)}
        for p in pipelines
        if p in fresh_times
    ]
    if timed:
        outside = {
            "fresh_seconds": fresh - sum(fresh_times.values()),
            "cached_seconds": cached - sum(cached_times.values()),
        }
        rows.append({"pipeline": "outside nodes (start-up, loading and saving)", **outside})
    else:
        print("per-pipeline rows need the reporting pipeline in the run (its RunTimesHook writes them)")
    rows.append(
        {
            "pipeline": "all (one kedro run)",
            "fresh_seconds": fresh,
            "students_trained": sum(c["students_trained"] for c in counts.values()),
            "students_reused": sum(c["students_reused"] for c in counts.values()),
            "cached_seconds": cached,
        }
    )
    table = pd.DataFrame(rows, columns=COLUMNS).astype({"students_trained": "Int64", "students_reused": "Int64"})
    table.to_csv(folder / "bench_study.csv", index=False)
    print(markdown(table))
    if args.keep is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
