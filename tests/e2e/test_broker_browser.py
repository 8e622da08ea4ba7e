"""A real browser on two workers: Chromium's EventSource resumes across a worker kill, exactly once.

gunicorn ``--preload -w 2`` serves ``tests.e2e.broker_app`` on one Redis. The page opens an
``EventSource`` and reports (to Redis, through ``/_report``) every event it sees. The test
publishes events, SIGKILLs the worker that holds the browser's stream halfway (gunicorn starts
a new one, forked from the preloaded app), publishes the rest, and checks that the browser
reconnected by itself with ``Last-Event-ID`` and saw every event once, in order. Chromium and
the servers are stopped by their own pids.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from typing import Any

import pytest

from .clients import http1
from .test_broker_redis import GUNICORN, cluster, publish

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOTAL = 20


def _report(port: int, probe_id: str) -> Any:
    return json.loads(http1(port, "GET", f"/_report?id={probe_id}", timeout=15).body)


def _wait(what: str, check: Any, timeout: float = 40.0) -> Any:
    """Poll ``check()`` until it returns something truthy (the browser acts on its own clock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps installs it)")
def test_eventsource_resumes_across_a_worker_kill_and_sees_every_event_exactly_once() -> None:
    assert CHROMIUM is not None
    probe_id = uuid.uuid4().hex[:12]
    profile = tempfile.mkdtemp(prefix="e2e-chromium-")
    browser = None
    with cluster() as running:
        server = running.start(GUNICORN)
        try:
            browser = subprocess.Popen(
                [
                    CHROMIUM,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    f"--user-data-dir={profile}",
                    server.url(f"/page?id={probe_id}"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            stream_key = f"{running.prefix}stream:{probe_id}"

            def stream_pid() -> int:
                return int(running.redis.get(stream_key) or 0)

            def seen() -> list[str]:
                report = _report(server.port, probe_id) or {"seen": []}
                return list(report["seen"])

            first_pid = _wait("the browser's stream to join", stream_pid)
            for n in range(1, TOTAL // 2 + 1):
                publish(server, f"event {n}")
            _wait(
                "the first half in the browser",
                lambda: len((_report(server.port, probe_id) or {}).get("seen", [])) >= TOTAL // 2,
            )
            running.redis.command("DEL", stream_key)
            os.kill(first_pid, signal.SIGKILL)  # a worker of the gunicorn this test started
            second_pid = _wait("the browser to reconnect", stream_pid)
            for n in range(TOTAL // 2 + 1, TOTAL + 1):
                publish(server, f"event {n}")
            _wait("every event in the browser", lambda: len(seen()) >= TOTAL)
            report = _report(server.port, probe_id)
        finally:
            if browser is not None:
                browser.kill()
                browser.wait(10)
            shutil.rmtree(profile, ignore_errors=True)
    assert second_pid != first_pid
    assert report["seen"] == [f"event {n}" for n in range(1, TOTAL + 1)], report
    assert report["resets"] == 0, report
    assert report["opens"] >= 2, report  # it really reconnected
    ids = report["ids"]
    assert len(set(ids)) == TOTAL, report
