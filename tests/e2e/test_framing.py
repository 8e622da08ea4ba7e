"""Framing: Content-Length for what is known, chunked otherwise, declared lengths enforced."""

from __future__ import annotations

import pytest

from .clients import CURL_PARTIAL_FILE, curl, http1
from .servers import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]


@pytest.mark.parametrize("style", ["list", "async"])
def test_a_small_body_complete_before_the_first_send_has_a_content_length(
    server: RunningServer, style: str
) -> None:
    response = http1(server.port, "GET", f"/small?style={style}", check_extra=0.05)

    assert response.status == 200, response.describe()
    assert response.header("content-length") == "12", response.describe()
    assert response.header("transfer-encoding") is None, response.describe()
    assert response.body == b"hello, world", response.describe()
    assert response.terminated, response.describe()
    assert response.extra == b"", response.describe()


@pytest.mark.parametrize("style", ["async", "sync", "writer"])
def test_a_body_still_being_produced_is_chunked_and_terminated(server: RunningServer, style: str) -> None:
    response = http1(server.port, "GET", f"/numbered?n=3&interval=0.02&style={style}")

    assert response.status == 200, response.describe()
    assert response.head.chunked, response.describe()
    assert response.header("content-length") is None, response.describe()
    assert response.body == b"chunk-0\nchunk-1\nchunk-2\n", response.describe()
    assert response.terminated, response.describe()
    assert not response.closed, response.describe()


@pytest.mark.parametrize("slow", ["0", "1"])
def test_a_declared_content_length_is_sent_and_the_body_matches_it(server: RunningServer, slow: str) -> None:
    response = http1(server.port, "GET", f"/length?mode=right&slow={slow}", check_extra=0.05)

    assert response.status == 200, response.describe()
    assert response.header("content-length") == "10", response.describe()
    assert not response.head.chunked, response.describe()
    assert response.body == b"0123456789", response.describe()
    assert response.terminated, response.describe()
    assert response.extra == b"", response.describe()


def test_curl_accepts_a_body_that_matches_its_declared_length(server: RunningServer) -> None:
    result = curl(server.port, "/length?mode=right&slow=1")

    assert result.exit_code == 0, result.describe()
    assert result.body == b"0123456789", result.describe()


def test_a_body_shorter_than_declared_after_the_headers_ends_short(server: RunningServer) -> None:
    # The chunks are 50 ms apart, so the headers (Content-Length: 10) are out before the body
    # turns out to be 6 bytes: the only honest ending left is to cut the connection.
    result = curl(server.port, "/length?mode=short&slow=1")

    assert result.status == 200, result.describe()
    assert result.header("content-length") == "10", result.describe()
    assert result.exit_code == CURL_PARTIAL_FILE, result.describe()
    assert result.body == b"012345", result.describe()

    raw = http1(server.port, "GET", "/length?mode=short&slow=1")
    assert not raw.terminated, raw.describe()
    assert raw.closed, raw.describe()


def test_a_body_shorter_than_declared_before_the_headers_is_a_500(server: RunningServer) -> None:
    result = curl(server.port, "/length?mode=short&slow=0")

    assert result.exit_code == 0, result.describe()
    assert result.status == 500, result.describe()


def test_a_body_longer_than_declared_never_sends_the_extra_bytes(server: RunningServer) -> None:
    # 5 bytes go out, then a 9-byte chunk would overrun Content-Length: 10. Sending the 5 bytes
    # that fit would make the response look complete, so none of that chunk may be sent.
    raw = http1(server.port, "GET", "/length?mode=long&slow=1", check_extra=0.1)

    assert raw.status == 200, raw.describe()
    assert raw.header("content-length") == "10", raw.describe()
    assert raw.body == b"01234", raw.describe()
    assert not raw.terminated, raw.describe()
    assert raw.closed, raw.describe()
    assert raw.extra == b"", raw.describe()

    result = curl(server.port, "/length?mode=long&slow=1")
    assert result.exit_code == CURL_PARTIAL_FILE, result.describe()


def test_a_body_longer_than_declared_before_the_headers_is_a_500(server: RunningServer) -> None:
    result = curl(server.port, "/length?mode=long&slow=0")

    assert result.exit_code == 0, result.describe()
    assert result.status == 500, result.describe()
