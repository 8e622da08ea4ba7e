"""The demo's chat page in headless Chromium: an answer that survives a reload, and a stop button.

The demo runs on uvicorn as ``make demo`` runs it; Playwright drives Debian's Chromium. The
fake model is deterministic (``demo.app.answer_tokens``), so the test knows the whole answer.
The page counts the words it received and the events it saw twice (``data-tokens``,
``data-duplicates``); each wait is for something the page shows, never a fixed time. The text
before the reload is read inside the page in the same step that sees the answer is under way,
so it is a snapshot of an answer that was still streaming.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from demo.app import answer_tokens

from .servers import ROOT, RunningServer, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts" / "demo"
#: Milliseconds Playwright waits for the page to show something before the test fails.
WAIT = 30_000


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
def chat(demo: RunningServer, browser: Browser) -> Iterator[Page]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 900, "height": 700})
    page.set_default_timeout(WAIT)
    page.goto(demo.url("/chat"))
    try:
        yield page
    finally:
        page.screenshot(path=ARTIFACTS / "chat.png", full_page=True)
        page.close()


def ask(page: Page, question: str) -> None:
    page.fill("#chat-prompt", question)
    page.click("#chat-ask")
    expect(page.locator("#chat-status")).to_have_text("streaming…", timeout=WAIT)


def text_once_under_way(page: Page, words: int) -> str:
    """The answer's text, read in the page as soon as ``words`` words arrived (still streaming)."""
    handle = page.wait_for_function(
        """(words) => {
            const answer = document.getElementById("chat-answer");
            return Number(answer.dataset.tokens) >= words && !answer.dataset.outcome && answer.textContent;
        }""",
        arg=words,
    )
    text = handle.json_value()
    assert isinstance(text, str)
    return text


def test_an_answer_keeps_streaming_through_a_reload_and_is_shown_whole_exactly_once(chat: Page) -> None:
    page = chat
    question = "Why does this answer survive a reload?"
    expected = "".join(answer_tokens(question))
    ask(page, question)
    before = text_once_under_way(page, 15)
    address = page.url
    assert "?answer=" in address
    assert expected.startswith(before)
    assert len(before) < len(expected)  # mid-answer

    page.reload()
    assert page.url == address
    expect(page.locator("#chat-meta")).to_contain_text("attached again after a reload", timeout=WAIT)
    expect(page.locator("#chat-question")).to_have_text(question, timeout=WAIT)
    expect(page.locator("#chat-status")).to_have_text("complete", timeout=WAIT)
    answer = page.locator("#chat-answer")
    assert answer.inner_text() == expected.strip()
    assert answer.get_attribute("data-tokens") == str(len(answer_tokens(question)))
    assert answer.get_attribute("data-duplicates") == "0"

    # Once more after the answer ended: the page replays the kept stream, whole, once.
    page.reload()
    expect(page.locator("#chat-status")).to_have_text("complete", timeout=WAIT)
    assert page.locator("#chat-answer").inner_text() == expected.strip()
    assert page.locator("#chat-answer").get_attribute("data-duplicates") == "0"


def test_the_stop_button_cancels_the_answer_and_the_page_says_it_was_stopped(chat: Page) -> None:
    page = chat
    question = "Please stop me halfway."
    expected = "".join(answer_tokens(question))
    ask(page, question)
    text_once_under_way(page, 5)
    page.click("#chat-stop")
    expect(page.locator("#chat-status")).to_have_text("stopped: the generation was cancelled", timeout=WAIT)
    shown = page.locator("#chat-answer").inner_text()
    assert expected.startswith(shown)
    assert len(shown) < len(expected.strip())
    assert page.locator("#chat-stop").is_disabled()
    # A reload shows the same cut answer, marked as stopped, never as complete.
    page.reload()
    expect(page.locator("#chat-status")).to_have_text("stopped: the generation was cancelled", timeout=WAIT)
    assert page.locator("#chat-answer").inner_text() == shown
