"""One cell's own `kedro run`, started by a Dask worker: ``python -m mind_the_gap.runners.cell_process CONFIG``.

The same `kedro run --config CONFIG` a user would type, with every Kedro and kedro-mlflow hook, plus one guard:
when the worker that started it dies (killed, out of memory), the run stops within a second instead of training on
beside the copy of the cell that Dask starts elsewhere. Students keep their progress after every epoch, so the new
copy resumes them.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


def stop_when_orphaned(parent: int, every: float = 0.5) -> None:
    """Terminate this process once ``parent`` is no longer its parent (it died; the process was handed to init)."""
    while os.getppid() == parent:
        time.sleep(every)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str]) -> None:
    """`kedro run --config CONFIG` in the current directory (the project's root); exits with its status."""
    if len(argv) != 1:
        sys.exit("usage: python -m mind_the_gap.runners.cell_process CONFIG.yml")
    threading.Thread(target=stop_when_orphaned, args=(os.getppid(),), daemon=True).start()
    from mind_the_gap.__main__ import main as kedro_run

    kedro_run(["--config", argv[0]], prog_name="run")  # the config file's section is named after the command


if __name__ == "__main__":
    main(sys.argv[1:])
