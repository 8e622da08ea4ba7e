"""Start and stop real ASGI servers as subprocesses for the end-to-end tests.

This module owns every process the e2e suite creates. The rule that keeps it safe: a server is
only ever stopped through the :class:`RunningServer` that started it, by its own process id
(and, as a last resort, the process group it was started in), never by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

#: The repository root: servers run here so that ``tests.e2e.app:app`` is importable.
ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
DEFAULT_APP = "tests.e2e.app:app"
#: Seconds a server may take to accept connections and answer its readiness probe.
STARTUP_TIMEOUT = 20.0
#: Seconds between SIGTERM and SIGKILL when stopping a server.
STOP_TIMEOUT = 5.0


class ServerStartError(RuntimeError):
    """A server did not start; the message carries its captured output."""


@dataclass(frozen=True)
class ServerKind:
    """One way of serving the app: the command line and what the server speaks."""

    name: str
    #: Builds the argument list after ``sys.executable``, given the app target and the port.
    argv: Callable[[str, int], list[str]]
    #: Whether the same port also accepts HTTP/2 with prior knowledge (h2c).
    h2c: bool = False


def _uvicorn(http: str) -> Callable[[str, int], list[str]]:
    def argv(app: str, port: int) -> list[str]:
        return [
            "-m",
            "uvicorn",
            app,
            "--host",
            HOST,
            "--port",
            str(port),
            "--http",
            http,
            "--loop",
            "asyncio",
            "--log-level",
            "warning",
            "--no-access-log",
            # Shut down promptly even while an endless stream is still open.
            "--timeout-graceful-shutdown",
            "1",
        ]

    return argv


def _hypercorn(app: str, port: int, worker_class: str = "asyncio") -> list[str]:
    # Hypercorn's HTTP/1.1 protocol hands a connection that opens with the HTTP/2 preface
    # ("PRI * HTTP/2.0") to its HTTP/2 protocol, so one insecure bind serves both.
    return [
        "-m",
        "hypercorn",
        app,
        "--bind",
        f"{HOST}:{port}",
        "--worker-class",
        worker_class,
        "--workers",
        "1",
        "--log-level",
        "WARNING",
        "--error-logfile",
        "-",
        "--graceful-timeout",
        "1",
    ]


def _hypercorn_trio(app: str, port: int) -> list[str]:
    return _hypercorn(app, port, "trio")


def _granian(app: str, port: int) -> list[str]:
    return [
        "-m",
        "granian",
        app,
        "--interface",
        "asgi",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "asyncio",
        "--log-level",
        "warning",
        "--no-ws",
    ]


KINDS: Mapping[str, ServerKind] = {
    "uvicorn-httptools": ServerKind("uvicorn-httptools", _uvicorn("httptools")),
    "uvicorn-h11": ServerKind("uvicorn-h11", _uvicorn("h11")),
    "hypercorn": ServerKind("hypercorn", _hypercorn, h2c=True),
    "granian": ServerKind("granian", _granian),
    # The same hypercorn on trio: no asyncio loop at all (the library is built on anyio).
    "hypercorn-trio": ServerKind("hypercorn-trio", _hypercorn_trio, h2c=True),
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunningServer:
    """A server subprocess this suite started, and everything needed to stop it."""

    kind: ServerKind
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] = field(repr=False)

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def output(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Stop the server by its pid: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        proc = self.process
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
        finally:
            # The server ran in a process group of its own (start_new_session), so its group id
            # is its pid: this reaches worker processes it forked and nothing else.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            self._log.close()
            self.log_path.unlink(missing_ok=True)
        return proc.returncode


def _probe(port: int, timeout: float, path: str = "/_state") -> bool:
    """Whether the app answers ``GET path`` with a 200 (not just whether the port is open)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n".encode("ascii"))
            head = b""
            while b"\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    return False
                head += data
            return head.startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start_server(
    kind: ServerKind | str,
    *,
    app: str = DEFAULT_APP,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = STARTUP_TIMEOUT,
    probe_path: str = "/_state",
) -> RunningServer:
    """Start ``kind`` on a free port of 127.0.0.1 and wait until the app answers.

    Raises :class:`ServerStartError` with the server's output if it exits or does not answer
    ``GET probe_path`` with a 200 within ``startup_timeout`` seconds; the process is stopped
    before raising.
    """
    if isinstance(kind, str):
        kind = KINDS[kind]
    port = free_port()
    log_fd, log_name = tempfile.mkstemp(prefix=f"e2e-{kind.name}-", suffix=".log")
    log = os.fdopen(log_fd, "w+b")
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env["PYTHONUNBUFFERED"] = "1"
    # Servers import the app from the repository root.
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), child_env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, *kind.argv(app, port)],
        cwd=ROOT,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = RunningServer(kind=kind, port=port, process=process, log_path=Path(log_name), _log=log)
    deadline = time.monotonic() + startup_timeout
    while True:
        if process.poll() is not None:
            output = server.output()
            server.stop()
            raise ServerStartError(
                f"{kind.name} exited with code {process.returncode} before accepting connections "
                f"on port {port}; its output:\n{output}"
            )
        if _probe(port, timeout=1.0, path=probe_path):
            return server
        if time.monotonic() > deadline:
            output = server.output()
            server.stop()
            raise ServerStartError(
                f"{kind.name} did not answer on {HOST}:{port} within {startup_timeout:g}s; "
                f"its output:\n{output}"
            )
        time.sleep(0.05)
