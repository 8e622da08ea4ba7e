"""Timeouts end the stream as an error: a 500 before the headers, an abort or trailers after."""

from __future__ import annotations

import time

import pytest

from .clients import h2c, http1
from .servers import RunningServer
from .state import wait_for_probe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

STYLES = ["async", "sync", "writer"]


# The producers sleep 2 s where the timeouts are 0.2 s; the sync one sleeps in a worker thread
# (time.sleep), like a producer stuck in a blocking call. The client must see the end at the
# timeout either way, not when the blocking call returns.


@pytest.mark.parametrize("style", STYLES)
def test_an_idle_timeout_after_the_first_chunk_cuts_the_response_short(
    server: RunningServer, probe_id: str, style: str
) -> None:
    began = time.monotonic()
    response = http1(server.port, "GET", f"/timeout?kind=idle&style={style}&id={probe_id}")
    elapsed = time.monotonic() - began

    assert response.status == 200, response.describe()
    assert response.body == b"first\n", response.describe()
    assert not response.terminated, response.describe()
    assert response.closed, response.describe()
    assert elapsed < 1.5, f"the 0.2s idle timeout ended the response only after {elapsed:.2f}s"

    probe = wait_for_probe(server, probe_id, "outcome")
    assert probe["outcome"]["outcome"] == "timeout", probe
    assert probe["outcome"]["error"] == "StreamTimeout", probe


def test_a_total_timeout_cuts_an_endless_response_short(server: RunningServer, probe_id: str) -> None:
    began = time.monotonic()
    response = http1(server.port, "GET", f"/timeout?kind=total&id={probe_id}")
    elapsed = time.monotonic() - began

    assert response.status == 200, response.describe()
    assert response.body.startswith(b"tick\n"), response.describe()
    assert not response.terminated, response.describe()
    assert response.closed, response.describe()
    assert 0.25 < elapsed < 1.5, f"the 0.3s timeout ended the response after {elapsed:.2f}s"

    probe = wait_for_probe(server, probe_id, "outcome", "finally_at")
    assert probe["outcome"]["outcome"] == "timeout", probe
    assert "finally_at" in probe, probe


@pytest.mark.parametrize("style", STYLES)
def test_a_timeout_before_the_first_chunk_is_a_500(server: RunningServer, probe_id: str, style: str) -> None:
    began = time.monotonic()
    response = http1(server.port, "GET", f"/timeout?kind=before&style={style}&id={probe_id}")
    elapsed = time.monotonic() - began

    assert response.status == 500, response.describe()
    assert response.terminated, response.describe()
    assert elapsed < 1.5, f"the 0.2s timeout answered only after {elapsed:.2f}s"

    probe = wait_for_probe(server, probe_id, "outcome")
    assert probe["outcome"]["outcome"] == "timeout", probe
    assert probe["outcome"]["status_code"] is None, probe


def test_an_idle_timeout_over_h2c_is_reported_in_trailers(h2c_server: RunningServer) -> None:
    response = h2c(h2c_server.port, "GET", "/timeout?kind=idle", {"te": "trailers"})

    assert response.status == 200, response.describe()
    assert response.data == b"first\n", response.describe()
    assert response.trailer("stream-status") == "error", response.describe()
    assert response.trailer("stream-error") == "StreamTimeout", response.describe()
