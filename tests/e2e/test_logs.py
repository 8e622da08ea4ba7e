"""One log record per failed stream on real servers, and the server's duplicate dropped by the filter.

Each server runs with the logging configuration the demo ships (``demo/logging.json``, shown in
the docs): the library's record gets a level and a logger name, and the server's own report of
the same exception is dropped by ``DuplicateStreamErrorFilter``. The server is stopped (by its
pid) before its output is read, so every line it would write is there.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess

import pytest

from .clients import http1
from .servers import KINDS, ROOT, ServerKind, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

LOG_CONFIG = ROOT / "demo" / "logging.json"
OUR_RECORD = (
    "ERROR    streaming_responses: GET /fail-after: StreamingResponse failed (error) after 13 bytes in "
)
#: How each server passes a logging configuration file, and the message of its own report.
SERVERS = {
    "uvicorn-httptools": (["--log-config", str(LOG_CONFIG)], "Exception in ASGI application"),
    "hypercorn": (["--log-config", f"json:{LOG_CONFIG}"], "Error in ASGI Framework"),
}


def with_arguments(name: str, extra: list[str]) -> ServerKind:
    base = KINDS[name]
    return ServerKind(name, lambda app, port: [*base.argv(app, port), *extra])


def output_after_a_failed_stream(kind: ServerKind) -> str:
    """Request /fail-after, stop the server, and return everything it wrote."""
    server = start_server(kind)
    try:
        response = http1(server.port, "GET", "/fail-after")
        assert response.body == b"first\nsecond\n", response.describe()
        assert not response.terminated, response.describe()
        # The servers log an application's exception before they close its connection, which
        # the client saw; stopping the server then flushes what it wrote.
        server.process.send_signal(signal.SIGTERM)
        # If it does not stop in time, stop() below kills it; what it wrote is still checked.
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(10)
        return server.output()
    finally:
        server.stop()


@pytest.mark.parametrize("name", list(SERVERS))
def test_with_the_demos_log_config_a_failed_stream_is_one_record_with_one_traceback(name: str) -> None:
    arguments, server_message = SERVERS[name]
    output = output_after_a_failed_stream(with_arguments(name, arguments))
    assert output.count(OUR_RECORD) == 1, output
    assert "s: RuntimeError: boom\nTraceback (most recent call last):" in output, output
    assert output.count("Traceback (most recent call last)") == 1, output
    assert server_message not in output, output


def test_without_the_filter_uvicorn_logs_the_same_exception_a_second_time() -> None:
    output = output_after_a_failed_stream(KINDS["uvicorn-httptools"])
    assert "GET /fail-after: StreamingResponse failed (error) after 13 bytes" in output, output
    assert "Exception in ASGI application" in output, output
    assert output.count("Traceback (most recent call last)") == 2, output
