"""Reporting: what every experiment pipeline wrote, in one report; a pipeline that has not run is named as such.

Each input is an experiment's table or interactive figure; one that is not on disk arrives as None (the reporting
pipeline's inputs are optional, see ``mind_the_gap.hooks``), so the report says which pipeline to run instead of
failing. The PNGs are read from the reporting folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mind_the_gap.results.report import render_html, render_markdown
from mind_the_gap.results.sections import study_report


def build_report(reporting_dir: Path, run_times: list[dict[str, Any]] | None, **results: Any) -> tuple[str, str]:
    """The report as self-contained HTML and as Markdown; ``results`` are the experiments' tables and figures by
    dataset name (see ``study_report``)."""
    report = study_report(reporting_dir, run_times, **results)
    return render_html(report), render_markdown(report)
