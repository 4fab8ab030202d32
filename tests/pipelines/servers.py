"""Start a server a user would start (kedro-viz, the MLflow server) on 127.0.0.1 and a free port, wait until it
answers, and stop it afterwards whatever happens."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A free port below 49152: kedro-viz refuses the ephemeral range the system would pick."""
    for port in random.Random().sample(range(20000, 49152), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 49151")


def get_json(url: str, body: dict[str, Any] | None = None) -> Any:
    """GET ``url`` (POST with a JSON ``body``) and parse the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


@contextmanager
def serving(command: list[str], cwd: Path, ready_url: str, timeout: float = 180) -> Iterator[None]:
    """Run ``command`` in ``cwd`` until the block ends; the block starts once ``ready_url`` answers."""
    log = cwd / f"server-{Path(command[0]).name}.log"
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{' '.join(command)} exited with {process.returncode}: {log.read_text()[-2000:]}"
                    )
                try:
                    urllib.request.urlopen(ready_url, timeout=5).close()
                    break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if time.monotonic() > deadline:
                        tail = log.read_text()[-2000:]
                        raise TimeoutError(f"{ready_url} did not answer within {timeout} s: {tail}") from None
                    time.sleep(0.5)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def mlflow_serving(folder: Path, workers: int = 1) -> Iterator[str]:
    """`mlflow server` on ``folder``'s mlflow.db, on 127.0.0.1 and a free port, until the block ends: its address."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    with serving(command, folder, f"http://127.0.0.1:{port}/health"):
        yield f"http://127.0.0.1:{port}"
