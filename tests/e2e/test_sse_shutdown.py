"""Server shutdown with open event streams: every stream ends cleanly within 1 s and the server exits.

The servers run WITHOUT ``--timeout-graceful-shutdown`` / ``--graceful-timeout``: left alone,
uvicorn and granian wait for an endless stream forever and hypercorn cuts it after its default
3 s graceful timeout, so these tests fail unless the library ends the streams by itself. Every
way of stopping a server is tried: a signal to its main pid or to its process group, with
``--workers 2`` and under ``--reload``, on uvicorn, hypercorn (asyncio, trio, in-process) and
granian.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.sse_parser import parse_stream

from .clients import ConnectionClosed, H1Connection, http1
from .servers import KINDS, RunningServer, ServerKind, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

APP = "tests.e2e.sse_app:app"
GRACE_FLAGS = {"--timeout-graceful-shutdown", "--graceful-timeout"}
STREAMS = 3
#: From the signal to the terminating chunk of every stream. Left alone, uvicorn and granian
#: never end an endless stream and hypercorn cancels it after its 3 s graceful timeout; the
#: bound stays below that (not a speed target: it tells who ended the stream), with room for a
#: loaded machine.
END_WITHIN = 2.5
#: From the signal to the process exit.
EXIT_WITHIN = 5.0


def _without_grace(argv: Callable[[str, int], list[str]]) -> Callable[[str, int], list[str]]:
    def build(app: str, port: int) -> list[str]:
        out: list[str] = []
        skip = False
        for arg in argv(app, port):
            if skip:
                skip = False
            elif arg in GRACE_FLAGS:
                skip = True
            else:
                out.append(arg)
        return out

    return build


def _with_args(argv: Callable[[str, int], list[str]], *extra: str) -> Callable[[str, int], list[str]]:
    def build(app: str, port: int) -> list[str]:
        out = argv(app, port)
        if "--workers" in extra and "--workers" in out:
            at = out.index("--workers")
            del out[at : at + 2]
        return [*out, *extra]

    return build


#: How a server is stopped: a signal to its main pid or to its whole process group (Ctrl-C in a
#: terminal, systemd's default KillMode), with several worker processes, or under the reloader.
MODES = ["pid", "group", "workers", "workers-group", "reload"]
#: The extra arguments of each mode, per server family (the "-inprocess" kind runs hypercorn's
#: app in the signalled process itself, ``--workers 0``).
EXTRA: dict[tuple[str, str], tuple[str, ...]] = {
    ("uvicorn", "workers"): ("--workers", "2"),
    ("uvicorn", "workers-group"): ("--workers", "2"),
    ("uvicorn", "reload"): ("--reload", "--reload-dir", "tests/e2e"),
    ("hypercorn", "workers"): ("--workers", "2"),
    ("hypercorn", "workers-group"): ("--workers", "2"),
    ("hypercorn", "reload"): ("--reload",),
    ("granian", "workers"): ("--workers", "2"),
    ("granian", "workers-group"): ("--workers", "2"),
    ("granian", "reload"): ("--reload", "--reload-paths", "tests/e2e"),
}
KIND_NAMES = [
    "uvicorn-httptools",
    "uvicorn-h11",
    "hypercorn",
    "hypercorn-inprocess",
    "hypercorn-trio",
    "granian",
]
CASES = [
    (kind, mode)
    for kind in KIND_NAMES
    for mode in MODES
    # --workers 0 serves in the signalled process: there are no workers and no reloader.
    if not (kind == "hypercorn-inprocess" and mode not in ("pid", "group"))
]


def _wait_for_workers(server: RunningServer, count: int, timeout: float = 15.0) -> None:
    """Wait until ``count`` worker processes answer (a signal during startup is another test)."""
    pids: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(pids) < count and time.monotonic() < deadline:
        pids.add(json.loads(http1(server.port, "GET", "/_state", {"Connection": "close"}).body)["pid"])
    assert len(pids) >= count, f"only {len(pids)} worker(s) answered within {timeout}s"


def _read_to_end(conn: H1Connection, deadline: float) -> tuple[bytes, bool, float]:
    """Body bytes, whether the zero-size chunk arrived, and when the read ended."""
    body = b""
    try:
        while True:
            frame = conn.read_frame(deadline)
            if not frame:
                return body, True, time.monotonic()
            body += frame
    except (ConnectionClosed, TimeoutError, ValueError):
        return body, False, time.monotonic()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize(("kind_name", "mode"), CASES)
def test_a_shutdown_signal_ends_every_open_stream_cleanly_and_the_server_exits(
    kind_name: str, mode: str, signum: signal.Signals
) -> None:
    base = KINDS[kind_name.removesuffix("-inprocess")]
    argv = _without_grace(base.argv)
    if kind_name.endswith("-inprocess"):
        argv = _with_args(argv, "--workers", "0")
    family = kind_name.split("-")[0]
    extra = EXTRA.get((family, mode), ())
    if extra:
        argv = _with_args(argv, *extra)
    kind = ServerKind(f"{kind_name}-{mode}-no-grace", argv)
    server = start_server(kind, app=APP)
    conns: list[H1Connection] = []
    try:
        if mode.startswith("workers"):
            _wait_for_workers(server, 2)
        for i in range(STREAMS):
            conn = H1Connection(server.port, timeout=10.0)
            conns.append(conn)
            conn.send_request("GET", f"/idle?id=shutdown-{i}&final=goodbye-{i}")
            head = conn.read_head()
            assert head.status == 200, head
            assert head.chunked, head
            assert conn.read_frame(), "no opening bytes"  # the stream is open and running
        signalled = time.monotonic()
        if mode.endswith("group"):
            os.killpg(server.process.pid, signum)  # the server runs in a process group of its own
        else:
            server.process.send_signal(signum)
        results = [_read_to_end(conn, signalled + 10.0) for conn in conns]
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(EXIT_WITHIN + 5)
        exited = server.process.poll()
        exit_delay = time.monotonic() - signalled
        output = server.output()
    finally:
        for conn in conns:
            conn.close()
        server.stop()

    for i, (body, terminated, ended) in enumerate(results):
        events = parse_stream(body)
        assert terminated, f"stream {i} was not terminated with 0\\r\\n\\r\\n: {body!r}\n{output}"
        assert ended - signalled < END_WITHIN, f"stream {i} ended {ended - signalled:.2f}s after the signal"
        assert [(e.type, e.data) for e in events] == [("bye", f"goodbye-{i}")], body
    assert exited is not None, f"{kind_name} did not exit within {EXIT_WITHIN + 5}s of {signum.name}"
    assert exit_delay < EXIT_WITHIN + 5
    assert "Traceback" not in output, output
