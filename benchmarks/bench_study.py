"""The whole study's wall time: every pipeline from empty data folders, then again with everything cached.

Runs in a scratch copy of the project (its `conf/`, `pyproject.toml` and a link to the real data in `data/01_raw`;
the code is the installed package), so the project's own data, students and MLflow store are left alone. Each
pipeline is its own `kedro run --pipeline <name>`, in the order they depend on each other, first from empty
folders, then again with everything cached; the last row's cached time is one plain `kedro run`, as a user
re-runs the study (its fresh time sums the pipelines'). Writes a Markdown table (and `bench_study.csv` in the
scratch folder): per pipeline, wall seconds fresh and cached, students trained and reused, and the trained
students' images/s.
Usage:

    python benchmarks/bench_study.py [--env base|full] [--params "baselines.seeds=[0]"] [--keep /tmp/study]
        [--pipelines data_processing,generator_training,generation,baselines,normalization]

`make benchmark-study` measures the default (`base`), `make benchmark-study ENV=full` the full study.

``--pipelines`` runs a part of the study (in dependency order; each needs those it reads from); the last row's
cached run is then one `kedro run --pipelines` of that part.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def markdown(table: pd.DataFrame) -> str:
    cells = [[f"{v:.0f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)]
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
    options = ["--env", args.env, *(["--params", args.params] if args.params else [])]
    written = data_root(args.env)
    rows = []
    for pipeline in pipelines:
        seconds = kedro_run(folder, ["--pipeline", pipeline, *options])
        rows.append({"pipeline": pipeline, "fresh_seconds": seconds, **students(folder / written, pipeline)})
        print(f"{pipeline}: {seconds:.0f} s", flush=True)
    for row in rows:
        row["cached_seconds"] = kedro_run(folder, ["--pipeline", row["pipeline"], *options])
    table = pd.DataFrame(rows)
    everything = options if pipelines == PIPELINES else ["--pipelines", ",".join(pipelines), *options]
    table.loc[len(table)] = {
        "pipeline": "all (one kedro run)",
        "fresh_seconds": table["fresh_seconds"].sum(),
        "students_trained": table["students_trained"].sum(),
        "students_reused": table["students_reused"].sum(),
        "cached_seconds": kedro_run(folder, everything),
    }
    table.to_csv(folder / "bench_study.csv", index=False)
    print(markdown(table))
    if args.keep is None:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
