"""Errors after the start never look like success: abort on HTTP/1.1, trailers on h2c."""

from __future__ import annotations

import pytest

from .clients import CURL_PARTIAL_FILE, H2Connection, curl, h2c, http1
from .servers import RunningServer
from .state import wait_for_probe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

STYLES = ["async", "sync", "writer"]
TE_TRAILERS = {"te": "trailers"}


@pytest.mark.parametrize("style", STYLES)
def test_an_error_after_the_first_chunk_leaves_the_chunked_body_unterminated(
    server: RunningServer, probe_id: str, style: str
) -> None:
    response = http1(server.port, "GET", f"/fail-after?style={style}&id={probe_id}")

    assert response.status == 200, response.describe()
    assert response.head.chunked, response.describe()
    assert response.body == b"first\nsecond\n", response.describe()
    assert not response.terminated, response.describe()
    assert response.closed, response.describe()

    probe = wait_for_probe(server, probe_id, "outcome")
    assert probe["outcome"]["outcome"] == "error", probe
    assert probe["outcome"]["error"] == "RuntimeError", probe
    assert probe["outcome"]["bytes_sent"] == len(b"first\nsecond\n"), probe


def test_curl_reports_an_error_after_the_first_chunk_as_a_partial_transfer(server: RunningServer) -> None:
    result = curl(server.port, "/fail-after")

    assert result.status == 200, result.describe()
    assert result.exit_code == CURL_PARTIAL_FILE, result.describe()
    assert result.body == b"first\nsecond\n", result.describe()


@pytest.mark.parametrize("style", STYLES)
def test_an_error_after_the_first_chunk_is_reported_in_h2c_trailers(
    h2c_server: RunningServer, probe_id: str, style: str
) -> None:
    response = h2c(h2c_server.port, "GET", f"/fail-after?style={style}&id={probe_id}", TE_TRAILERS)

    assert response.status == 200, response.describe()
    assert "stream-status" in (response.header("trailer") or ""), response.describe()
    assert response.data == b"first\nsecond\n", response.describe()
    assert response.trailer("stream-status") == "error", response.describe()
    assert response.trailer("stream-error") == "RuntimeError", response.describe()
    assert response.ended, response.describe()

    probe = wait_for_probe(h2c_server, probe_id, "outcome")
    assert probe["outcome"]["outcome"] == "error", probe
    assert probe["outcome"]["trailers"] is True, probe


@pytest.mark.parametrize("style", STYLES)
def test_a_complete_h2c_stream_ends_with_a_complete_trailer(h2c_server: RunningServer, style: str) -> None:
    response = h2c(h2c_server.port, "GET", f"/numbered?n=3&interval=0.01&style={style}", TE_TRAILERS)

    assert response.status == 200, response.describe()
    assert response.data == b"chunk-0\nchunk-1\nchunk-2\n", response.describe()
    assert response.trailer("stream-status") == "complete", response.describe()
    assert response.trailer("stream-error") is None, response.describe()
    assert response.ended, response.describe()


def test_a_small_complete_h2c_body_also_ends_with_a_complete_trailer(h2c_server: RunningServer) -> None:
    response = h2c(h2c_server.port, "GET", "/small", TE_TRAILERS)

    assert response.status == 200, response.describe()
    assert response.data == b"hello, world", response.describe()
    assert response.trailer("stream-status") == "complete", response.describe()


def test_an_h2c_stream_without_te_trailers_never_ends_cleanly_after_an_error(
    h2c_server: RunningServer,
) -> None:
    # Without TE: trailers the core can only re-raise. Hypercorn then sends neither END_STREAM
    # nor RST_STREAM: the stream stays open until the idle connection is closed (keep-alive,
    # 5 s by default). What matters here is that it never ends like a complete one.
    with H2Connection(h2c_server.port) as conn:
        stream_id = conn.request("GET", "/fail-after")
        conn.wait(stream_id, lambda s: s.finished, timeout=1.0)
        response = conn.streams[stream_id]

    assert response.status == 200, response.describe()
    assert response.data == b"first\nsecond\n", response.describe()
    assert response.trailers is None, response.describe()
    assert not response.ended, f"the failed stream ended like a complete one: {response.describe()}"


def test_an_h2c_stream_without_te_trailers_has_no_trailers_when_complete(h2c_server: RunningServer) -> None:
    response = h2c(h2c_server.port, "GET", "/numbered?n=2&interval=0.01")

    assert response.status == 200, response.describe()
    assert response.header("trailer") is None, response.describe()
    assert response.trailers is None, response.describe()
    assert response.ended, response.describe()
    assert response.data == b"chunk-0\nchunk-1\n", response.describe()
