"""Duplex: the response streams while the request body is still arriving."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from .clients import H1Connection, H2Connection, H2Response
from .servers import RunningServer
from .state import wait_for_probe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

WORDS = [b"hello", b"duplex", b"world"]


def _has_data(expected: bytes) -> Callable[[H2Response], bool]:
    return lambda stream: stream.data == expected


def test_each_request_chunk_is_echoed_before_the_next_one_is_sent(
    server: RunningServer, probe_id: str
) -> None:
    with H1Connection(server.port, timeout=3.0) as conn:
        conn.send(
            f"POST /duplex?id={probe_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n".encode()
        )
        conn.send_chunk(WORDS[0])
        head = conn.read_head()
        assert head.status == 200, head
        assert head.chunked, head
        for index, word in enumerate(WORDS):
            if index:
                conn.send_chunk(word)
            assert conn.read_frame() == word.upper(), f"no echo of {word!r} while the body was open"
        conn.send_chunk(b"")
        assert conn.read_frame() == b"", "the response did not end after the request body ended"

    probe = wait_for_probe(server, probe_id, "outcome")
    assert probe["outcome"]["outcome"] == "complete", probe


def test_a_client_leaving_in_the_middle_of_a_duplex_stream_ends_it(
    server: RunningServer, probe_id: str
) -> None:
    conn = H1Connection(server.port, timeout=3.0)
    conn.send(
        f"POST /duplex?id={probe_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    conn.send_chunk(b"partial")
    assert conn.read_head().status == 200
    assert conn.read_frame() == b"PARTIAL"
    closed_at = time.monotonic()
    conn.close()

    probe = wait_for_probe(server, probe_id, "finally_at", "outcome")
    assert "finally_at" in probe, f"the producer's finally never ran: {probe}"
    assert probe["finally_at"] - closed_at < 0.1, probe
    assert probe["outcome"]["outcome"] == "disconnected", probe


def test_duplex_over_h2c_echoes_each_data_frame_before_the_next(
    h2c_server: RunningServer, probe_id: str
) -> None:
    with H2Connection(h2c_server.port, timeout=3.0) as conn:
        stream_id = conn.request("POST", f"/duplex?id={probe_id}", end_stream=False)
        expected = b""
        for word in WORDS:
            conn.send_data(stream_id, word)
            expected += word.upper()
            assert conn.wait(stream_id, _has_data(expected)), (
                f"no echo of {word!r} while the body was open: {conn.streams[stream_id].describe()}"
            )
        conn.send_data(stream_id, b"", end_stream=True)
        response = conn.response(stream_id)

    assert response.status == 200, response.describe()
    assert response.ended, response.describe()
    assert response.data == b"HELLODUPLEXWORLD", response.describe()
