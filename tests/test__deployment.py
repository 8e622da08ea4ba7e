"""Deployment hazards seen from inside a response: each is warned about once per process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import pytest

from streaming_responses import StreamingResponse, _deployment
from tests.asgi import Recorder, http_scope

pytestmark = pytest.mark.anyio


async def slow_body() -> AsyncIterator[bytes]:
    yield b"first"
    await anyio.sleep(0.01)
    yield b"second"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_deployment, "_GIVEN", set())


@pytest.mark.parametrize("http_version", ["1.0", "1"])
async def test_an_unsized_stream_to_an_http_1_0_peer_is_warned_about_once_naming_the_nginx_fix(
    caplog: pytest.LogCaptureFixture, http_version: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="streaming_responses"):
        for _ in range(2):
            recorder = Recorder()
            await StreamingResponse(slow_body())(
                http_scope(http_version=http_version), recorder.receive, recorder.send
            )
    warnings = [r.getMessage() for r in caplog.records if "HTTP/1.0" in r.getMessage()]
    assert len(warnings) == 1
    assert "proxy_http_version 1.1" in warnings[0]


async def test_a_sized_body_to_an_http_1_0_peer_needs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streaming_responses"):
        recorder = Recorder()
        await StreamingResponse(slow_body(), content_length=11)(
            http_scope(http_version="1.0"), recorder.receive, recorder.send
        )
        recorder = Recorder()
        await StreamingResponse(slow_body())(http_scope(), recorder.receive, recorder.send)
    assert recorder.ended
    assert not [r for r in caplog.records if "HTTP/1.0" in r.getMessage()]
