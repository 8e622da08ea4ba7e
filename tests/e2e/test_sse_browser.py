"""A real browser: headless Chromium's EventSource reconnects with Last-Event-ID and sees each event once.

The page (``/page`` of ``tests.e2e.sse_app``) opens an ``EventSource`` on a counter that the
server ends after every 5 events with ``retry: 100``; the browser reconnects by itself, sending
``Last-Event-ID``, and the page POSTs what it saw to ``/_report``, which the test polls. No
DevTools protocol, no extra packages; Chromium is stopped by its own pid.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from typing import Any

import pytest

from .clients import http1
from .servers import start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOTAL = 23


def _report(port: int, probe_id: str) -> Any:
    response = http1(port, "GET", f"/_report?id={probe_id}")
    return json.loads(response.body)


def _chromium(url: str, profile: str) -> subprocess.Popen[bytes]:
    assert CHROMIUM is not None
    return subprocess.Popen(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            url,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps installs it)")
def test_a_slow_text_plain_stream_shows_its_first_line_before_the_next_one_is_sent() -> None:
    # Without X-Content-Type-Options: nosniff, Chromium sniffs the type of a text/plain body
    # and shows nothing until about 512 bytes arrived: the first line would stay invisible
    # until the stream gave up waiting for the page and ended.
    server = start_server("uvicorn-httptools", app="tests.e2e.sse_app:app")
    probe_id = uuid.uuid4().hex[:12]
    profile = tempfile.mkdtemp(prefix="e2e-chromium-")
    browser = None
    try:
        browser = _chromium(server.url(f"/plain-page?id={probe_id}"), profile)
        deadline = time.monotonic() + 40
        probe: dict[str, Any] = {}
        while "released_by" not in probe and time.monotonic() < deadline:
            probe = json.loads(http1(server.port, "GET", f"/_state?id={probe_id}").body)["probe"] or {}
            time.sleep(0.1)
    finally:
        if browser is not None:
            browser.kill()
            browser.wait(10)
        server.stop()
        shutil.rmtree(profile, ignore_errors=True)
    assert probe.get("released_by") == "report", f"line 0 never showed while the stream was open: {probe}"
    assert "line 1" not in probe["report"]["text"], probe


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps installs it)")
def test_eventsource_reconnects_with_last_event_id_and_gets_every_event_exactly_once() -> None:
    assert CHROMIUM is not None
    server = start_server("uvicorn-httptools", app="tests.e2e.sse_app:app")
    probe_id = uuid.uuid4().hex[:12]
    profile = tempfile.mkdtemp(prefix="e2e-chromium-")
    browser = None
    try:
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                f"--user-data-dir={profile}",
                server.url(f"/page?id={probe_id}&total={TOTAL}"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 40
        report = None
        while report is None and time.monotonic() < deadline:
            report = _report(server.port, probe_id)
            time.sleep(0.2)
        state = http1(server.port, "GET", f"/_state?id={probe_id}").body
    finally:
        if browser is not None:
            browser.kill()
            browser.wait(10)
        server.stop()
        shutil.rmtree(profile, ignore_errors=True)
    assert report is not None, f"the page never reported; server state: {state!r}"
    assert report["done"], report
    assert report["seen"] == [f"event {n}" for n in range(1, TOTAL + 1)], report
    assert report["ids"] == [str(n) for n in range(1, TOTAL + 1)], report
    assert report["opens"] >= TOTAL // 5, report  # it really reconnected
    assert b'"last_event_ids":[null,"5","10"' in state.replace(b" ", b""), state
