"""A chunk that is not bytes or text is an error, handled like any other producer error."""

from __future__ import annotations

import pytest

from .clients import h2c, http1
from .servers import RunningServer
from .state import wait_for_probe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

STYLES = ["async", "sync", "writer"]


@pytest.mark.parametrize("style", STYLES)
def test_a_non_bytes_first_chunk_is_a_500(server: RunningServer, probe_id: str, style: str) -> None:
    response = http1(server.port, "GET", f"/bad-chunk?when=first&style={style}&id={probe_id}")

    assert response.status == 500, response.describe()
    assert response.terminated, response.describe()
    probe = wait_for_probe(server, probe_id, "outcome")
    assert probe["outcome"]["error"] == "TypeError", probe


@pytest.mark.parametrize("style", STYLES)
def test_a_non_bytes_chunk_after_the_start_aborts_the_response(
    server: RunningServer, probe_id: str, style: str
) -> None:
    response = http1(server.port, "GET", f"/bad-chunk?when=later&style={style}&id={probe_id}")

    assert response.status == 200, response.describe()
    assert response.body == b"fine\n", response.describe()
    assert not response.terminated, response.describe()
    assert response.closed, response.describe()
    probe = wait_for_probe(server, probe_id, "outcome")
    assert probe["outcome"]["outcome"] == "error", probe
    assert probe["outcome"]["error"] == "TypeError", probe


def test_a_non_bytes_chunk_after_the_start_is_reported_in_h2c_trailers(h2c_server: RunningServer) -> None:
    response = h2c(h2c_server.port, "GET", "/bad-chunk?when=later", {"te": "trailers"})

    assert response.status == 200, response.describe()
    assert response.data == b"fine\n", response.describe()
    assert response.trailer("stream-status") == "error", response.describe()
    assert response.trailer("stream-error") == "TypeError", response.describe()
