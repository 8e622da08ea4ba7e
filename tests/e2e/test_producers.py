"""Every producer style streams the same bytes; sync producers see context variables."""

from __future__ import annotations

import uuid

import pytest

from .clients import H1Connection, curl, http1
from .servers import RunningServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

STYLES = ["async", "sync", "writer"]


@pytest.mark.parametrize("style", STYLES)
def test_every_producer_style_streams_all_its_chunks(server: RunningServer, style: str) -> None:
    result = curl(server.port, f"/numbered?n=50&interval=0.001&style={style}")

    assert result.exit_code == 0, result.describe()
    assert result.status == 200, result.describe()
    assert result.body == b"".join(f"chunk-{i}\n".encode() for i in range(50)), result.describe()


@pytest.mark.parametrize("style", STYLES)
def test_a_context_variable_set_by_middleware_is_visible_inside_the_producer(
    server: RunningServer, style: str
) -> None:
    request_id = uuid.uuid4().hex
    response = http1(server.port, "GET", f"/context?style={style}", {"X-Request-Id": request_id})

    assert response.status == 200, response.describe()
    assert response.terminated, response.describe()
    assert response.body.decode().splitlines() == [request_id] * 3, response.describe()


@pytest.mark.parametrize("style", STYLES)
def test_a_producer_that_outlives_a_request_keeps_its_own_context(server: RunningServer, style: str) -> None:
    # Two overlapping requests on two connections: each producer sees its own request id.
    ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    with H1Connection(server.port) as first, H1Connection(server.port) as second:
        first.send_request("GET", f"/context?style={style}", {"X-Request-Id": ids[0]})
        second.send_request("GET", f"/context?style={style}", {"X-Request-Id": ids[1]})
        responses = [first.read_response(), second.read_response()]

    for request_id, response in zip(ids, responses, strict=True):
        assert response.body.decode().splitlines() == [request_id] * 3, response.describe()
