"""A real Redis server for the broker tests: started on a free loopback port, stopped by its pid.

This module owns every Redis process the tests start. The rules that keep it safe: each server
runs with no persistence (``--save ""``, ``--appendonly no``) in a temporary directory, listens
on 127.0.0.1 only, and is only ever signalled through the :class:`RedisServer` that started it,
by its own process id, never by name. A system Redis service is never used.

Example::

    with start_redis() as redis:
        broker = EventBroker.from_url(redis.url)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"
REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
)
#: Seconds Redis may take to answer PING after it was started.
STARTUP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def command(port: int, *args: str, timeout: float = 5.0) -> bytes:
    """Send one command to the Redis on ``port`` (RESP, a fresh connection); return the raw reply."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(b"".join(parts))
        reply = b""
        while not reply.endswith(b"\r\n") or _incomplete(reply):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        return reply


def _incomplete(reply: bytes) -> bool:
    """Whether a bulk-string reply (``$n``) is still missing bytes (enough for CLIENT LIST, INFO)."""
    if reply.startswith(b"$"):
        size, _, rest = reply.partition(b"\r\n")
        length = int(size[1:])
        return length >= 0 and len(rest) < length + 2
    return False


@dataclass
class RedisServer:
    """A redis-server process these tests started, on ``port``."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def start(self) -> None:
        """Start (or start again, after :meth:`stop`) on the same port, with no data."""
        assert REDIS_SERVER is not None, "redis-server is not installed (make system-deps installs it)"
        logfile = self.directory / "redis.log"
        settings = {
            "port": str(self.port),
            "bind": HOST,
            "save": "",
            "appendonly": "no",
            "dir": str(self.directory),
            "logfile": str(logfile),
            "daemonize": "no",
            "protected-mode": "yes",
            "maxclients": "10000",
        }
        argv = [REDIS_SERVER]
        for name, value in settings.items():
            argv += [f"--{name}", value]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.process.poll() is not None:
                text = logfile.read_text(errors="replace") if logfile.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {text}")
            with contextlib.suppress(OSError):
                if command(self.port, "PING", timeout=1.0).startswith(b"+PONG"):
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL); its data is gone."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

    def restart(self) -> None:
        """Stop and start again on the same port: a restart without persistence (data lost)."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        os.kill(self.pid, signal.SIGCONT)

    def command(self, *args: str) -> bytes:
        return command(self.port, *args)

    def get(self, key: str) -> bytes | None:
        """GET ``key``: its value, or ``None`` when there is none."""
        reply = self.command("GET", key)
        if reply.startswith(b"$-1"):
            return None
        return reply.split(b"\r\n", 1)[1][: int(reply[1 : reply.index(b"\r\n")])]

    def clients(self) -> list[dict[str, str]]:
        """CLIENT LIST, one dict per connection (this query's own connection left out)."""
        reply = self.command("CLIENT", "LIST").decode()
        lines = reply.split("\r\n", 1)[1].strip().splitlines()
        parsed = [dict(item.split("=", 1) for item in line.split(" ") if "=" in item) for line in lines]
        return [client for client in parsed if client.get("cmd") != "client|list"]


@contextlib.contextmanager
def start_redis() -> Iterator[RedisServer]:
    """A fresh Redis on a free port for the ``with`` block; stopped (by pid) and removed after."""
    directory = Path(tempfile.mkdtemp(prefix="test-redis-"))
    server = RedisServer(port=free_port(), directory=directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def require_redis() -> None:
    """Skip when redis-server is not installed (``make system-deps`` installs it)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (make system-deps installs it)")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A Redis server of this test module's own."""
    require_redis()
    with start_redis() as server:
        yield server
