"""The one uvicorn server a benchmark run uses: started as a subprocess, stopped by its pid.

Only the process this module started is ever signalled. Its output goes to a temporary file
that the report shows, because a server-side traceback explains a failed row.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent


class ServerError(RuntimeError):
    """The benchmark server did not start, or died."""


@dataclass(frozen=True)
class Server:
    """A running server: where it listens and what it runs."""

    port: int
    pid: int
    command: tuple[str, ...]
    loop: str
    _log: IO[bytes]

    def url(self, path: str) -> str:
        """Return the absolute URL of ``path`` on this server."""
        return f"http://{HOST}:{self.port}{path}"

    def get_json(self, path: str, timeout: float = 5.0) -> Any:
        """GET ``path`` and decode its JSON body (no proxies, whatever the environment says)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url(path), timeout=timeout) as response:
            return json.loads(response.read())

    def log(self) -> str:
        """Return everything the server has written to stdout and stderr so far."""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")


def free_port() -> int:
    """Return a TCP port on ``HOST`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def uvicorn_command(app: str, port: int, loop: str) -> tuple[str, ...]:
    """Return the command line that serves ``app`` on ``port``."""
    return (
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        HOST,
        "--port",
        str(port),
        "--http",
        "httptools",
        "--loop",
        loop,
        "--no-access-log",
        "--log-level",
        "warning",
    )


@contextlib.contextmanager
def serve(app: str = "benchmarks.app:app", startup_timeout: float = 30.0) -> Iterator[Server]:
    """Run uvicorn serving ``app`` for the duration of the ``with`` block.

    >>> with serve() as server:  # doctest: +SKIP
    ...     server.get_json("/info")
    """
    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    port = free_port()
    command = uvicorn_command(app, port, loop)
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        server = Server(port=port, pid=process.pid, command=command, loop=loop, _log=log)
        try:
            _wait_until_ready(server, process, startup_timeout)
            yield server
        finally:
            _stop(process)


def _wait_until_ready(server: Server, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise ServerError(f"uvicorn exited with {process.returncode}:\n{server.log()}")
        try:
            server.get_json("/info", timeout=1.0)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise ServerError(f"uvicorn did not answer within {timeout:g}s:\n{server.log()}") from None
            time.sleep(0.05)
        else:
            return


def _stop(process: subprocess.Popen[bytes]) -> None:
    # SIGTERM lets uvicorn shut down gracefully; SIGKILL only if it will not. Both go to the pid
    # this module started, never to a process found by name.
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
