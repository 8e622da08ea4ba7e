"""Streamed Jinja templates on uvicorn (httptools), read with a raw HTTP/1.1 socket.

One server serves ``tests.e2e.templates_app`` for the whole module. What is checked is what a
browser would see: the page's head long before its slow rows, a failed page that never ends
cleanly, and a closed connection that closes the page's data source on the server.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from .clients import H1Connection, http1
from .servers import RunningServer, start_server
from .state import wait_for_probe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

APP = "tests.e2e.templates_app:app"
#: The issue's bound: from the request sent to the end of the head received.
HEAD_WITHIN = 0.050


@pytest.fixture(scope="module")
def templates_server() -> Iterator[RunningServer]:
    server = start_server("uvicorn-httptools", app=APP)
    try:
        # Untimed warm-up: the first request loads and compiles the template.
        warm = http1(server.port, "GET", "/page?count=1&delay_ms=0", timeout=10)
        assert warm.status == 200, warm.describe()
        yield server
    finally:
        server.stop()


def test_the_head_arrives_within_50_ms_while_the_rows_take_two_seconds(
    templates_server: RunningServer,
) -> None:
    # 10 rows, one every 200 ms: the page takes 2 s, and its head must not wait for them.
    with H1Connection(templates_server.port, timeout=10) as conn:
        conn.send_request("GET", "/page?count=10&delay_ms=200")
        sent = time.monotonic()
        head = conn.read_head()
        received = b""
        while b"</head>" not in received:
            received += conn.read_frame()
        head_at = time.monotonic() - sent
        assert head.status == 200
        assert head.chunked
        assert b"<li>" not in received
        body = received
        while frame := conn.read_frame():
            body += frame
        total = time.monotonic() - sent
    assert head_at <= HEAD_WITHIN, f"the head took {head_at * 1000:.1f} ms"
    assert body.count(b"<li>") == 10
    assert body.endswith(b"</html>")
    assert total >= 1.9


def test_an_error_after_the_head_aborts_the_connection_without_the_last_chunk(
    templates_server: RunningServer,
) -> None:
    response = http1(templates_server.port, "GET", "/page?count=5&delay_ms=20&fail_at=2", timeout=10)
    assert response.status == 200
    assert response.head.chunked
    assert b"</head>" in response.body
    assert b"<li>row 1</li>" in response.body
    assert b"row 2" not in response.body
    assert not response.terminated, response.describe()
    assert response.closed, response.describe()


def test_closing_the_connection_closes_the_async_iterable_of_the_page(
    templates_server: RunningServer,
) -> None:
    probe_id = uuid.uuid4().hex[:12]
    with H1Connection(templates_server.port, timeout=10) as conn:
        conn.send_request("GET", f"/page?count=100000&delay_ms=20&id={probe_id}")
        assert conn.read_head().status == 200
        received = b""
        while b"<li>row 2</li>" not in received:
            received += conn.read_frame()
    probe = wait_for_probe(templates_server, probe_id, "closed", timeout=5.0)
    assert "started" in probe
    assert "closed" in probe, probe


def test_closing_the_connection_stops_the_render_thread_and_runs_the_finally_of_its_rows(
    templates_server: RunningServer,
) -> None:
    probe_id = uuid.uuid4().hex[:12]
    with H1Connection(templates_server.port, timeout=10) as conn:
        conn.send_request("GET", f"/thread-page?id={probe_id}")
        assert conn.read_head().status == 200
        received = b""
        while b"<li>row 2000</li>" not in received:
            received += conn.read_frame()
    # The endless generator only ends when the render is stopped and closed.
    probe = wait_for_probe(templates_server, probe_id, "closed", timeout=5.0)
    assert "started" in probe
    assert "closed" in probe, probe
    assert probe["closed_in_loop_thread"] is False, probe
