"""Reward servers for the tests: in a thread of the test process, or as the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from pathlib import Path


@contextmanager
def serving(server: HTTPServer) -> Iterator[str]:
    """Serve ``server`` (quietly) from a thread; yields its URL; stops and joins it on exit."""
    server.quiet = True
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/score"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def server_process(
    noiseppo, *args: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen, str]]:
    """``noiseppo reward-server ARGS`` in a subprocess, its log (stderr) written to ``log``; yields
    the process and its URL once it serves, and stops it on exit (if nothing killed it before)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    with log.open("a") as stderr:
        process = subprocess.Popen(
            noiseppo.command("reward-server", *args), stdout=subprocess.PIPE, stderr=stderr, text=True, env=environment
        )
    try:
        line = process.stdout.readline()
        assert line.startswith("serving reward "), (line, log.read_text()[-2000:])
        yield process, line.split(" at ")[1].split()[0] + "score"
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)
        process.stdout.close()


def log_lines(log: Path, count: int, timeout: float = 30.0) -> list[str]:
    """The first ``count`` lines of a server's log, once it has written them: the server logs a
    request after answering it, so a client holding its answer may be ahead of the log."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text().splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)
