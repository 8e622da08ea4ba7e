"""Fixtures for the end-to-end tests: one subprocess per server kind for the whole session.

``server`` is parametrized over every kind that speaks HTTP/1.1; ``h2c_server`` is the server
that also speaks HTTP/2 with prior knowledge on the same port (hypercorn). Both come from one
pool, so hypercorn starts once even when both fixtures are used. ``E2E_SERVERS=a,b`` limits the
run to some kinds.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from .servers import KINDS, RunningServer, ServerStartError, start_server


def _selected_kinds() -> list[str]:
    wanted = os.environ.get("E2E_SERVERS")
    if not wanted:
        return list(KINDS)
    names = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise pytest.UsageError(f"E2E_SERVERS names unknown kinds {unknown}; known: {list(KINDS)}")
    return names


SERVER_KINDS = _selected_kinds()
H2C_KINDS = [name for name in SERVER_KINDS if KINDS[name].h2c]


class ServerPool:
    """Starts each kind on first use and stops them all at the end of the session."""

    def __init__(self) -> None:
        self.running: dict[str, RunningServer] = {}
        self.failed: dict[str, str] = {}

    def get(self, name: str) -> RunningServer:
        if name in self.failed:
            pytest.fail(self.failed[name])
        server = self.running.get(name)
        if server is None:
            try:
                server = start_server(name)
            except ServerStartError as exc:
                self.failed[name] = str(exc)
                raise
            self.running[name] = server
        elif server.process.poll() is not None:
            pytest.fail(
                f"{name} exited with code {server.process.returncode} during the session; "
                f"its output:\n{server.output()}"
            )
        return server

    def stop_all(self) -> None:
        for server in self.running.values():
            server.stop()
        self.running.clear()


@pytest.fixture(scope="session")
def server_pool() -> Iterator[ServerPool]:
    pool = ServerPool()
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="session", params=SERVER_KINDS)
def server(request: pytest.FixtureRequest, server_pool: ServerPool) -> RunningServer:
    """A running server of each kind, spoken to over HTTP/1.1."""
    name: str = request.param
    return server_pool.get(name)


@pytest.fixture(scope="session", params=H2C_KINDS)
def h2c_server(request: pytest.FixtureRequest, server_pool: ServerPool) -> RunningServer:
    """A running server that accepts h2c with prior knowledge."""
    name: str = request.param
    return server_pool.get(name)


@pytest.fixture
def probe_id() -> str:
    """A fresh id under which the app records what happened to this test's producer."""
    return uuid.uuid4().hex[:12]
