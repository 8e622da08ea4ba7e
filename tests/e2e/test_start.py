"""Start late, fail early: nothing is sent before the first chunk, so early errors get a status."""

from __future__ import annotations

import time

import pytest

from .clients import curl, h2c, http1
from .servers import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

STYLES = ["async", "sync", "writer"]


@pytest.mark.parametrize("style", STYLES)
def test_an_http_exception_before_the_first_chunk_is_a_404_response(
    server: RunningServer, style: str
) -> None:
    response = http1(server.port, "GET", f"/fail-before?status=404&style={style}")

    assert response.status == 404, response.describe()
    assert response.terminated, response.describe()
    assert b"no such thing" in response.body, response.describe()


@pytest.mark.parametrize("style", STYLES)
def test_any_other_error_before_the_first_chunk_is_a_500_response(server: RunningServer, style: str) -> None:
    response = http1(server.port, "GET", f"/fail-before?style={style}")

    assert response.status == 500, response.describe()
    assert response.terminated, response.describe()
    assert response.body == b"Internal Server Error", response.describe()


def test_curl_sees_a_clean_404_for_an_early_http_exception(server: RunningServer) -> None:
    result = curl(server.port, "/fail-before?status=404")

    assert result.exit_code == 0, result.describe()
    assert result.status == 404, result.describe()


@pytest.mark.parametrize("style", STYLES)
def test_the_headers_go_out_when_the_first_chunk_is_ready(server: RunningServer, style: str) -> None:
    # The first chunk takes 150 ms; the headers must not arrive long before it, and they
    # arrive together with (or just before) the first chunk.
    sent = time.monotonic()
    response = http1(server.port, "GET", f"/numbered?n=2&delay=0.15&style={style}")

    assert response.status == 200, response.describe()
    assert response.terminated, response.describe()
    head_arrived = response.reads[0][0]
    assert head_arrived - sent >= 0.14, f"headers after {head_arrived - sent:.3f}s: {response.describe()}"
    assert response.body == b"chunk-0\nchunk-1\n"


@pytest.mark.parametrize("status", ["404", "500"])
def test_an_early_error_over_h2c_is_a_plain_status_without_stream_trailers(
    h2c_server: RunningServer, status: str
) -> None:
    response = h2c(h2c_server.port, "GET", f"/fail-before?status={status}", {"te": "trailers"})

    assert response.status == int(status), response.describe()
    assert response.ended, response.describe()
    assert response.trailer("stream-status") is None, response.describe()
