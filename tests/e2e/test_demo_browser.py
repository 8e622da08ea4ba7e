"""The demo on a real server: headless Chromium shows every dashboard panel working, live, and
the curl command the docs give for duplex streaming echoes each line as it is sent.

The demo runs on uvicorn as ``make demo`` runs it; Playwright drives Debian's Chromium (no
browser download). Each wait is for something the page shows, never a fixed time. The
screenshots (the whole dashboard and each panel) are written to ``test-artifacts/demo/``,
which git ignores, whether the test passes or not.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from .clients import http1
from .servers import ROOT, RunningServer, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts" / "demo"
PANELS = ("events", "feed", "downloads", "page", "clock", "broken", "outcomes", "chat")
#: Milliseconds Playwright waits for the page to show something before the test fails.
WAIT = 20_000


@pytest.fixture(scope="module")
def demo() -> Iterator[RunningServer]:
    server = start_server("uvicorn-httptools", app="demo.app:app", probe_path="/outcomes")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (make system-deps installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def dashboard(demo: RunningServer, browser: Browser) -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT)
    page.goto(demo.url("/"))
    try:
        yield page
    finally:
        page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
        for panel in PANELS:
            page.locator(f"#{panel}").screenshot(path=ARTIFACTS / f"panel-{panel}.png")
        page.close()


def test_every_panel_of_the_dashboard_shows_live_data(demo: RunningServer, dashboard: Page) -> None:
    page = dashboard
    check_the_event_stream_shows_ids_and_pings_and_resumes_after_a_drop(page)
    check_the_feed_publishes_without_leaving_the_page(page, demo)
    check_each_download_shows_its_size_and_framing(page, demo)
    check_the_streamed_page_and_the_clock_show_their_rows(page)
    check_the_broken_stream_ends_in_a_network_error_after_its_first_row(page)
    check_the_outcomes_table_lists_how_each_stream_ended(page)


def check_the_event_stream_shows_ids_and_pings_and_resumes_after_a_drop(page: Page) -> None:
    log = page.locator("#events-log")
    expect(log).to_contain_text(re.compile(r"id 2 {2}count {2}\{\"n\":2\}"))
    expect(log).to_contain_text(": ping")
    page.click("#events-drop")
    dropped = log.locator("div", has_text="dropped the connection").last.inner_text()
    last_seen = int(re.search(r"last id seen: (\d+)", dropped).group(1))  # type: ignore[union-attr]
    expect(log).to_contain_text(f"reconnected, Last-Event-ID: {last_seen}")
    expect(log).to_contain_text(f"resumed at id {last_seen + 1}, right after the last one seen")
    expect(page.locator("#events-status")).to_have_text(f"reconnected with Last-Event-ID: {last_seen}")


def check_the_feed_publishes_without_leaving_the_page(page: Page, demo: RunningServer) -> None:
    expect(page.locator("#feed-status")).to_have_text("subscribed")
    text = f"hello {uuid.uuid4().hex[:8]}"
    page.fill("#feed-text", text)
    page.click("#feed-form button")
    expect(page.locator("#feed-log")).to_contain_text(text)
    status = page.locator("#feed-status")
    expect(status).to_contain_text(re.compile(r"published id \S+ to \d+ subscriber"))
    published_id = re.search(r"published id (\S+)", status.inner_text()).group(1)  # type: ignore[union-attr]
    expect(page.locator("#feed-log")).to_contain_text(f"id {published_id}  {text}")
    assert page.url == demo.url("/")


def check_each_download_shows_its_size_and_framing(page: Page, demo: RunningServer) -> None:
    rows = page.locator("#downloads-rows tr")
    expect(rows).to_have_count(5)
    expect(page.locator("#downloads-rows tr[data-bytes]")).to_have_count(5)
    csv_size = len(http1(demo.port, "GET", "/rows.csv").body)
    jsonl_size = len(http1(demo.port, "GET", "/rows.jsonl").body)
    expected = [
        ("/rows.csv", "200", csv_size, "chunked"),
        ("/rows.jsonl", "200", jsonl_size, "chunked"),
        ("/file", "206 bytes 0-99/", 100, "Content-Length: 100"),
        ("/sized", "200", 1024 * 1024, "Content-Length: 1048576"),
        ("/small", "200", 19, "Content-Length: 19"),
    ]
    for index, (path, status, size, framing) in enumerate(expected):
        cells = rows.nth(index).locator("td")
        expect(cells.nth(0)).to_contain_text(path)
        expect(cells.nth(1)).to_contain_text(status)
        expect(cells.nth(2)).to_have_text(f"{size:,}")
        expect(cells.nth(3)).to_have_text(framing)
    expect(page.locator("#downloads-preview")).to_contain_text('{"id":0,"name":"row 0, \\"quoted\\""')


def check_the_streamed_page_and_the_clock_show_their_rows(page: Page) -> None:
    streamed = page.frame_locator("#page-frame")
    expect(streamed.locator("table")).to_contain_text("19361")
    clock = page.frame_locator("#clock-frame")
    expect(clock.locator("body")).to_contain_text(re.compile(r"\d\d:\d\d:\d\d\n\d\d:\d\d:\d\d"))


def check_the_broken_stream_ends_in_a_network_error_after_its_first_row(page: Page) -> None:
    log = page.locator("#broken-log")
    expect(log).to_contain_text("status 200, the body so far:")
    expect(log).to_contain_text('"row 1\\n"')
    expect(log).to_contain_text(re.compile(r"TypeError: .+: the body never completed"))
    assert "the body ended normally" not in log.inner_text()


def check_the_outcomes_table_lists_how_each_stream_ended(page: Page) -> None:
    table = page.locator("#outcomes-rows")
    for path, outcome in [
        ("/broken", "error"),
        ("/events", "disconnected"),
        ("/rows.csv", "complete"),
        ("/page", "complete"),
        ("/file", "complete"),
    ]:
        row = table.locator("tr", has=page.locator("td", has_text=re.compile(f"^{re.escape(path)}$")))
        expect(row.first.locator("td").nth(1)).to_have_text(outcome)
    broken = table.locator("tr", has=page.locator("td", has_text=re.compile("^/broken$"))).first
    expect(broken).to_contain_text("RuntimeError('the database went away')")


def read_within(stream: int, seconds: float) -> bytes:
    """What arrives on the pipe ``stream`` within ``seconds`` (b"" if nothing does)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([stream], [], [], left)
        if readable:
            return os.read(stream, 4096)
    return b""


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_documented_curl_command_echoes_each_line_before_the_next_is_typed(demo: RunningServer) -> None:
    # The command of docs/streaming.md and the README. With -T- instead of -T. the first echo
    # would wait for the second line, and the 10 s bound below would run out.
    with subprocess.Popen(
        ["curl", "-N", "--no-progress-meter", "-T.", demo.url("/upper")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as curl:
        assert curl.stdin is not None
        assert curl.stdout is not None
        assert curl.stderr is not None
        try:
            echoed = []
            for line in (b"first line\n", b"second line\n"):
                curl.stdin.write(line)
                curl.stdin.flush()
                echoed.append(read_within(curl.stdout.fileno(), 10.0))
            curl.stdin.close()
            assert curl.wait(10) == 0
            progress = curl.stderr.read()
        finally:
            if curl.poll() is None:
                curl.kill()
                curl.wait(10)
    assert echoed == [b"FIRST LINE\n", b"SECOND LINE\n"]
    assert progress == b""  # no progress meter mixed into what the user types
