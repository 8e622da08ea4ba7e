"""HEAD sends the headers and runs no body."""

from __future__ import annotations

import time

import pytest

from .clients import H1Connection, curl
from .servers import RunningServer
from .state import server_state

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]


@pytest.mark.parametrize("style", ["async", "sync", "writer"])
def test_head_sends_the_headers_and_never_runs_the_producer(
    server: RunningServer, probe_id: str, style: str
) -> None:
    with H1Connection(server.port) as conn:
        conn.send_request("HEAD", f"/numbered?n=3&style={style}&id={probe_id}")
        response = conn.read_response("HEAD")
        # Nothing may follow the head of a HEAD response.
        trailing = conn.read_available(time.monotonic() + 0.1)

    assert response.status == 200, response.describe()
    assert response.header("content-type") == "text/plain; charset=utf-8", response.describe()
    assert trailing == b"", f"body bytes after a HEAD response: {trailing!r}"
    probe = server_state(server, probe_id)["probe"] or {}
    assert not probe.get("started"), f"the producer ran for a HEAD request: {probe}"


def test_head_reports_a_declared_content_length(server: RunningServer) -> None:
    result = curl(server.port, "/length?mode=right", method="HEAD")

    assert result.exit_code == 0, result.describe()
    assert result.status == 200, result.describe()
    assert result.header("content-length") == "10", result.describe()
