"""Every response class failing after its start, behind middleware, on every server.

A failed stream must never look complete: behind GZip, CORS, the library's
``StreamingHTTPMiddleware`` and all of them stacked, the body is never terminated (chunked) or
ends short (``Content-Length``). Behind Starlette's ``BaseHTTPMiddleware`` the body ends
cleanly, which no response can prevent (the middleware sends the end itself): that exception is
asserted as it is, together with the warning the library logs once about it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from .clients import RawResponse, http1
from .servers import KINDS, RunningServer, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

APP = "tests.e2e.middleware_app:app"
CLASSES = ["stream", "events", "csv", "jsonl", "page", "file"]
VISIBLE = ["plain", "gzip", "cors", "ours", "stacked"]
HIDDEN = ["base", "stacked-base"]


@pytest.fixture(scope="module", params=list(KINDS))
def middleware_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    server = start_server(request.param, app=APP)
    try:
        yield server
    finally:
        server.stop()


def _complete(response: RawResponse) -> bool:
    """Whether the client got what reads as a whole body."""
    if not response.terminated:
        return False
    length = response.head.content_length
    return length is None or len(response.body) == length


@pytest.mark.parametrize("stack", VISIBLE)
@pytest.mark.parametrize("kind", CLASSES)
def test_a_failure_after_the_start_never_looks_complete_behind_middleware(
    middleware_server: RunningServer, stack: str, kind: str
) -> None:
    response = http1(middleware_server.port, "GET", f"/{stack}/{kind}", {"Accept-Encoding": "gzip"})
    if response.status == 500:
        return  # failed before the start (the file's second read can come that early): a real 500
    assert response.status == 200, response.describe()
    assert response.body, response.describe()
    assert not _complete(response), f"{stack}/{kind} looked complete: {response.describe()}"
    if stack in ("ours", "stacked"):
        assert response.header("x-dispatch") == "seen", response.describe()


@pytest.mark.parametrize("stack", VISIBLE + HIDDEN)
@pytest.mark.parametrize("kind", CLASSES)
def test_the_same_responses_without_the_failure_arrive_whole(
    middleware_server: RunningServer, stack: str, kind: str
) -> None:
    response = http1(middleware_server.port, "GET", f"/{stack}/{kind}?ok=1", {"Accept-Encoding": "gzip"})
    assert response.status == 200, response.describe()
    assert _complete(response), response.describe()


@pytest.mark.parametrize("stack", HIDDEN)
def test_base_http_middleware_hides_the_failure_and_the_library_says_so(
    middleware_server: RunningServer, stack: str
) -> None:
    response = http1(middleware_server.port, "GET", f"/{stack}/stream")
    assert response.status == 200, response.describe()
    assert _complete(response), "BaseHTTPMiddleware no longer ends a failed body: update the docs"
    deadline = time.monotonic() + 5
    while "StreamingHTTPMiddleware" not in middleware_server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "wrapped by Starlette's BaseHTTPMiddleware" in middleware_server.output()
