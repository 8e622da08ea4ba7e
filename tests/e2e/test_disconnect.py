"""Disconnect: the producer is closed promptly and nothing is left running on the server."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .clients import H1Connection, H2Connection
from .servers import RunningServer
from .state import server_state, wait_for_probe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

STYLES = ["async", "sync", "writer"]
#: From the client closing its socket to the producer's ``finally`` running on the server.
PROMPT = 0.1


def _open_endless(server: RunningServer, probe_id: str, style: str) -> H1Connection:
    conn = H1Connection(server.port, timeout=5.0)
    try:
        conn.send_request("GET", f"/endless?id={probe_id}&style={style}")
        head = conn.read_head()
        assert head.status == 200, head
        assert conn.read_frame().startswith(b"tick-0"), "the endless stream did not start"
    except BaseException:
        conn.close()
        raise
    return conn


def _disconnect_and_wait(server: RunningServer, probe_id: str, style: str, *, reset: bool) -> dict[str, Any]:
    conn = _open_endless(server, probe_id, style)
    closed_at = time.monotonic()
    conn.close(reset=reset)
    probe = wait_for_probe(server, probe_id, "finally_at", "outcome")
    probe["delay"] = probe["finally_at"] - closed_at if "finally_at" in probe else None
    return probe


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("style", STYLES)
def test_closing_the_connection_mid_stream_runs_the_producers_finally_promptly(
    server: RunningServer, probe_id: str, style: str, how: str
) -> None:
    probe = _disconnect_and_wait(server, probe_id, style, reset=how == "rst")

    assert "finally_at" in probe, f"the producer's finally never ran: {probe}"
    assert probe["delay"] < PROMPT, f"finally ran {probe['delay']:.3f}s after the disconnect: {probe}"
    assert probe["outcome"]["outcome"] == "disconnected", probe
    assert probe["outcomes"] == 1, probe


def _settled(server: RunningServer, baseline: dict[str, Any], timeout: float = 3.0) -> dict[str, Any]:
    """Poll until tasks and threads are back to the baseline (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    while True:
        state = server_state(server)
        if (
            state["tasks"] <= baseline["tasks"]
            and state["threads"] <= baseline["threads"]
            and not state["active"]
        ) or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


@pytest.mark.timeout(90)
def test_fifty_disconnects_leave_no_task_or_thread_behind(server: RunningServer, probe_id: str) -> None:
    # Warm up first: the worker-thread pool of sync producers is created on first use and
    # kept, which is not a leak.
    for i in range(3):
        _disconnect_and_wait(server, f"{probe_id}-warm-{i}", STYLES[i % 3], reset=False)
    baseline = _settled(server, server_state(server), timeout=0.5)

    delays = []
    for i in range(50):
        probe = _disconnect_and_wait(server, f"{probe_id}-{i}", STYLES[i % 3], reset=i % 2 == 1)
        assert "finally_at" in probe, f"disconnect {i}: the producer's finally never ran: {probe}"
        assert probe["outcome"]["outcome"] == "disconnected", f"disconnect {i}: {probe}"
        delays.append(probe["delay"])

    state = _settled(server, baseline)
    assert not state["active"], f"producers still running: {state['active']}"
    assert state["tasks"] <= baseline["tasks"], f"tasks {baseline['tasks']} -> {state['tasks']}"
    assert state["threads"] <= baseline["threads"], (
        f"threads {baseline['threads']} -> {state['threads']}: {state['thread_names']}"
    )
    late = [(i, round(d, 3)) for i, d in enumerate(delays) if d >= PROMPT]
    assert not late, f"finally ran later than {PROMPT}s after these disconnects: {late}"


@pytest.mark.parametrize("style", STYLES)
def test_resetting_an_h2c_stream_runs_the_producers_finally_and_keeps_the_connection(
    h2c_server: RunningServer, probe_id: str, style: str
) -> None:
    with H2Connection(h2c_server.port) as conn:
        stream_id = conn.request("GET", f"/endless?id={probe_id}&style={style}")
        assert conn.wait(stream_id, lambda s: b"tick-1" in s.data), conn.streams[stream_id].describe()
        reset_at = time.monotonic()
        conn.reset(stream_id)
        probe = wait_for_probe(h2c_server, probe_id, "finally_at", "outcome")

        assert "finally_at" in probe, f"the producer's finally never ran: {probe}"
        assert probe["finally_at"] - reset_at < PROMPT, probe
        assert probe["outcome"]["outcome"] == "disconnected", probe

        # The connection itself is still good for the next request.
        again = conn.request("GET", "/numbered?n=2")
        response = conn.response(again)
        assert response.status == 200, response.describe()
        assert response.data == b"chunk-0\nchunk-1\n", response.describe()


def test_closing_an_h2c_connection_runs_the_producers_finally_promptly(
    h2c_server: RunningServer, probe_id: str
) -> None:
    conn = H2Connection(h2c_server.port)
    stream_id = conn.request("GET", f"/endless?id={probe_id}")
    assert conn.wait(stream_id, lambda s: b"tick-1" in s.data), conn.streams[stream_id].describe()
    closed_at = time.monotonic()
    conn.close()
    probe = wait_for_probe(h2c_server, probe_id, "finally_at", "outcome")

    assert "finally_at" in probe, f"the producer's finally never ran: {probe}"
    assert probe["finally_at"] - closed_at < PROMPT, probe
    assert probe["outcome"]["outcome"] == "disconnected", probe
