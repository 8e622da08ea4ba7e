"""Server-sent events on real servers: headers at once, pings, disconnects, errors, resume, HEAD."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.sse_parser import parse_stream

from .clients import CURL_PARTIAL_FILE, H1Connection, curl, h2c, http1
from .servers import KINDS, RunningServer, start_server
from .state import wait_for_probe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

APP = "tests.e2e.sse_app:app"


@pytest.fixture(scope="module", params=list(KINDS))
def sse_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    server = start_server(request.param, app=APP)
    try:
        yield server
    finally:
        server.stop()


def _open(server: RunningServer, path: str, headers: dict[str, str] | None = None) -> H1Connection:
    conn = H1Connection(server.port, timeout=5.0)
    conn.send_request("GET", path, headers)
    return conn


def test_headers_arrive_before_the_first_event_with_the_event_stream_fields(
    sse_server: RunningServer,
) -> None:
    sent = time.monotonic()
    with _open(sse_server, "/slow-first?delay=3") as conn:
        head = conn.read_head()
        arrived = time.monotonic() - sent
    assert head.status == 200
    assert arrived < 1.0, f"headers took {arrived:.2f}s while the generator slept 3 s"
    assert head.header("content-type") == "text/event-stream; charset=utf-8"
    assert head.header("cache-control") == "no-cache"
    assert head.header("x-accel-buffering") == "no"
    assert head.header("connection") is None, head.headers


def test_a_ping_comment_arrives_during_silence(sse_server: RunningServer) -> None:
    with _open(sse_server, "/idle?ping=0.2") as conn:
        conn.read_head()
        data = conn.read_available(time.monotonic() + 1.0)
    assert b": ping\n\n" in data, data


def test_closing_an_idle_stream_runs_the_generators_finally_within_100_ms(sse_server: RunningServer) -> None:
    probe_id = f"idle-{time.monotonic_ns()}"
    conn = _open(sse_server, f"/idle?id={probe_id}")
    conn.read_head()
    wait_for_probe(sse_server, probe_id, "started_at")
    closed_at = time.monotonic()
    conn.close()
    probe = wait_for_probe(sse_server, probe_id, "finally_at", "outcome")
    assert "finally_at" in probe, probe
    assert probe["finally_at"] - closed_at < 0.1, probe["finally_at"] - closed_at
    assert probe["outcome"] == "disconnected", probe


def test_a_mid_stream_error_sends_an_error_event_and_never_looks_complete(sse_server: RunningServer) -> None:
    result = curl(sse_server.port, "/error?n=2")
    assert result.exit_code == CURL_PARTIAL_FILE, result.describe()
    events = parse_stream(result.body)
    assert [(e.type, e.data) for e in events] == [
        ("message", "event 1"),
        ("message", "event 2"),
        ("error", "stream failed"),
    ]
    assert b"secret" not in result.body
    raw = http1(sse_server.port, "GET", "/error?n=1")
    assert not raw.terminated, raw.describe()


def test_a_reconnect_with_last_event_id_resumes_after_it(sse_server: RunningServer) -> None:
    response = http1(sse_server.port, "GET", "/counter?limit=3&interval=0", {"Last-Event-ID": "41"})
    assert response.terminated, response.describe()
    events = parse_stream(response.body)
    assert [(e.data, e.last_event_id) for e in events] == [
        ("event 42", "42"),
        ("event 43", "43"),
        ("event 44", "44"),
    ]


def test_head_answers_headers_only(sse_server: RunningServer) -> None:
    response = http1(sse_server.port, "HEAD", "/counter", check_extra=0.3)
    assert response.status == 200
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    assert response.body == b""
    assert response.extra == b""


def test_sync_generators_and_fastapi_generator_endpoints_stream_events(sse_server: RunningServer) -> None:
    sync = parse_stream(http1(sse_server.port, "GET", "/sync?n=50").body)
    assert [json.loads(e.data)["n"] for e in sync] == list(range(1, 51))
    assert {e.type for e in sync} == {"sync"}
    response = http1(sse_server.port, "GET", "/fastapi/events?n=3")
    assert response.header("content-type") == "text/event-stream; charset=utf-8"
    assert [json.loads(e.data) for e in parse_stream(response.body)] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_a_client_that_stops_reading_is_dropped_after_send_timeout(sse_server: RunningServer) -> None:
    if sse_server.name.endswith("-trio"):
        # hypercorn's trio worker shields its socket writes: send_timeout is refused when the
        # response is built, so the endpoint answers 500 instead of failing mid-stream.
        refused = http1(sse_server.port, "GET", "/flood?send_timeout=0.5")
        assert refused.status == 500, refused.describe()
        deadline = time.monotonic() + 5  # the server logs the error after answering
        while "send_timeout cannot work on trio" not in sse_server.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "send_timeout cannot work on trio" in sse_server.output()
        return
    probe_id = f"flood-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", sse_server.port))
    try:
        sock.sendall(f"GET /flood?id={probe_id}&send_timeout=0.5 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        probe = wait_for_probe(sse_server, probe_id, "finally_at", "outcome", timeout=10.0)
    finally:
        sock.close()
    assert "finally_at" in probe, f"the generator was never closed: {probe}"
    assert probe["outcome"] == "timeout", probe


def test_broker_replays_after_last_event_id_then_sends_live_events_without_duplicates(
    sse_server: RunningServer,
) -> None:
    def publish(text: str) -> str:
        response = http1(sse_server.port, "POST", "/broker/publish", body=text.encode())
        assert response.status == 200, response.describe()
        event_id: str = json.loads(response.body)["id"]
        return event_id

    first = publish("first")
    publish("second")
    conn = _open(sse_server, "/broker", {"Last-Event-ID": first})
    data = b""
    try:
        conn.read_head()
        for attempt in range(20):
            publish(f"live-{attempt}")
            data += conn.read_available(time.monotonic() + 0.2)
            if b"live-" in data:
                break
    finally:
        conn.close()
    texts = [e.data for e in parse_stream(data)]
    assert texts[0] == "second", texts
    assert len(texts) == len(set(texts)), texts
    assert texts[1:], "no live event arrived"
    assert all(text.startswith("live-") for text in texts[1:]), texts


def test_over_h2c_a_mid_stream_error_reaches_trailers_after_the_error_event() -> None:
    server = start_server("hypercorn", app=APP)
    try:
        response = h2c(server.port, "GET", "/error?n=1", {"TE": "trailers"})
    finally:
        server.stop()
    assert [e.type for e in parse_stream(response.data)] == ["message", "error"], response.describe()
    assert response.trailers or response.reset is not None, response.describe()
    assert response.header("connection") is None


@pytest.mark.parametrize("style", ["async", "sync"])
def test_an_http_exception_before_the_first_event_is_a_real_404(
    sse_server: RunningServer, style: str
) -> None:
    response = http1(sse_server.port, "GET", f"/missing?style={style}")
    assert response.status == 404, response.describe()
    assert response.terminated, response.describe()
    assert b"unknown model" in response.body, response.describe()
