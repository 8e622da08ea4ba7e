"""The demo served by ``make demo``: the dashboard's routes and every example answer as they say.

What the dashboard looks like in a browser is tested in ``tests/e2e/test_demo_browser.py``.
"""

from __future__ import annotations

import json
import re

import pytest

import demo.app
from demo.app import EXAMPLES, app
from streaming_responses import Framing
from streaming_responses.testing import StreamAborted, StreamingTestClient
from tests.sse_parser import EventStreamParser

pytestmark = pytest.mark.anyio


async def test_the_dashboard_has_its_panels_its_script_and_links_every_other_example() -> None:
    client = StreamingTestClient(app)
    response = await client.get("/")
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    panels = re.findall(r'<section id="([a-z]+)" [^>]*data-panel>', response.text)
    assert panels == ["events", "feed", "downloads", "page", "clock", "broken", "outcomes", "chat"]
    links = re.findall(r'<li><a href="([^"]+)">', response.text)
    assert links == [path for path, _ in EXAMPLES]
    assert '<script src="/static/dashboard.js"></script>' in response.text
    script = await client.get("/static/dashboard.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert 'fetch("/events"' in script.text


async def test_the_dashboard_links_the_documentation_the_package_declares(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    declared = "https://docs.example/streaming-responses/"
    monkeypatch.setattr(demo.app, "documentation_url", lambda: declared)
    page = await StreamingTestClient(app).get("/")
    assert f'Read the <a href="{declared}">documentation</a>.' in page.text
    monkeypatch.setattr(demo.app, "documentation_url", lambda: None)
    assert "documentation</a>" not in (await StreamingTestClient(app).get("/")).text


async def test_the_clock_streams_a_line_at_a_time_as_text_a_browser_shows_at_once() -> None:
    async with StreamingTestClient(app).stream("GET", "/clock") as response:
        first = await response.iter_bytes().__anext__()
        await response.disconnect()
    assert re.fullmatch(rb"\d\d:\d\d:\d\d\n", first)
    assert response.framing is Framing.CHUNKED
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_count_push_sized_and_small_complete_with_the_documented_framing() -> None:
    client = StreamingTestClient(app)
    count = await client.get("/count")
    assert count.text.endswith("line 99999\n")
    push = await client.get("/push")
    assert push.text == "written with a callback\n"
    sized = await client.get("/sized")
    assert sized.headers["content-length"] == str(1024 * 1024) == str(len(sized.body))
    small = await client.get("/small")
    assert small.framing is Framing.CONTENT_LENGTH
    assert small.text == "small and complete\n"


async def test_broken_and_slow_never_look_complete() -> None:
    client = StreamingTestClient(app, raise_app_exceptions=False)
    for path in ("/broken", "/slow?idle=0.05"):
        async with client.stream("GET", path) as response:
            with pytest.raises(StreamAborted):
                await response.read()
        assert not response.complete


async def test_upper_echoes_the_request_body_upper_cased() -> None:
    response = await StreamingTestClient(app).post("/upper", content=[b"abc\n", b"def\n"])
    assert response.text == "ABC\nDEF\n"


async def test_outcomes_lists_what_the_hook_recorded() -> None:
    client = StreamingTestClient(app)
    await client.get("/small")
    outcomes = (await client.get("/outcomes")).json()
    assert outcomes[0]["path"] == "/small"
    assert outcomes[0]["outcome"] == "complete"
    assert outcomes[0]["framing"] == "content-length"
    assert outcomes[0]["client_gone"] is None


async def test_events_count_with_ids_and_resume_after_last_event_id() -> None:
    async with StreamingTestClient(app).stream("GET", "/events", headers={"last-event-id": "41"}) as response:
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        received = b""
        async for chunk in response.iter_bytes():
            received += chunk
            if b"\n\n" in received.removeprefix(b":\n\n"):
                break
        await response.disconnect()
    assert b'event: count\ndata: {"n":42}\nid: 42\n\n' in received


async def test_events_start_at_one_without_a_usable_last_event_id() -> None:
    for headers in ({}, {"last-event-id": "not a number"}):
        async with StreamingTestClient(app).stream("GET", "/events", headers=headers) as response:
            received = b""
            async for chunk in response.iter_bytes():
                received += chunk
                if b"id: 1\n\n" in received:
                    break
            await response.disconnect()
        assert b'event: count\ndata: {"n":1}\nid: 1\n\n' in received


async def test_the_feed_relays_published_events_to_a_subscriber() -> None:
    client = StreamingTestClient(app)
    async with client.stream("GET", "/feed/events") as response:
        chunks = response.iter_bytes()
        assert await chunks.__anext__() == b":\n\n"
        published = (await client.post("/publish?text=hello")).json()
        assert published["subscribers"] == 1
        assert await chunks.__anext__() == f"data: hello\nid: {published['id']}\n\n".encode()
        await response.disconnect()


async def test_file_csv_jsonl_and_page_answer_as_the_index_says() -> None:
    client = StreamingTestClient(app)
    source = await client.get("/file", headers={"range": "bytes=0-2"})
    assert source.status_code == 206
    assert source.body == b'"""'
    assert (await client.get("/file", headers={"if-none-match": source.headers["etag"]})).status_code == 304
    csv_response = await client.get("/rows.csv")
    assert csv_response.headers["content-disposition"] == 'attachment; filename="rows.csv"'
    assert csv_response.text.splitlines()[:2] == ["id,name,price,note", '0,"row 0, ""quoted""",0.0,']
    lines = (await client.get("/rows.jsonl")).text.splitlines()
    assert len(lines) == 10_000
    assert lines[1] == '{"id":1,"name":"row 1, \\"quoted\\"","price":0.01,"note":null}'
    page = await client.get("/page", timeout=10)
    assert "<td>19</td><td>361</td>" in page.text


async def test_the_chat_page_starts_an_answer_that_can_be_attached_to_and_replayed_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo.app, "TOKEN_INTERVAL", 0)
    client = StreamingTestClient(app)
    page = await client.get("/chat")
    assert '<script src="/static/chat.js"></script>' in page.text
    assert "new EventSource" in (await client.get("/static/chat.js")).text
    headers = {"idempotency-key": "question-1"}
    started = (await client.post("/chat/answers", json={"prompt": "Why?"}, headers=headers)).json()
    retried = (await client.post("/chat/answers", json={"prompt": "Why?"}, headers=headers)).json()
    assert retried == started
    for _ in range(2):  # a reload attaches again and gets the whole answer once more
        events = EventStreamParser().feed(
            (await client.get(f"/chat/answers/{started['id']}/events", timeout=20)).body
        )
        assert "".join(json.loads(event.data)["text"] for event in events[:-1]) == "".join(
            demo.app.answer_tokens("Why?")
        )
        assert (events[-1].type, json.loads(events[-1].data)) == ("end", {"outcome": "complete"})
    assert (await client.get("/outcomes")).json()[0]["path"] == f"/chat/answers/{started['id']}/events"


async def test_the_chat_refuses_a_bad_question_before_starting_and_stops_an_answer() -> None:
    client = StreamingTestClient(app)
    bodies: list[object] = [{}, {"prompt": ""}, {"prompt": "  "}, {"prompt": 7}, {"prompt": "x" * 501}, []]
    for body in bodies:
        response = await client.post("/chat/answers", json=body)
        assert response.status_code == 422
        assert "prompt must be" in response.json()["error"]
    assert (await client.post("/chat/answers", content=b"{not json")).status_code == 422
    assert (await client.get("/chat/answers/AAAAAAAAAAAAAAAA/events")).status_code == 404
    assert (await client.post("/chat/answers/AAAAAAAAAAAAAAAA/stop")).status_code == 404
    started = (await client.post("/chat/answers", json={"prompt": "Stop me"})).json()
    assert (await client.post(f"/chat/answers/{started['id']}/stop")).json() == {"stopped": True}
    events = EventStreamParser().feed(
        (await client.get(f"/chat/answers/{started['id']}/events", timeout=20)).body
    )
    assert (events[-1].type, json.loads(events[-1].data)) == ("end", {"outcome": "cancelled"})
    jobs = [
        row for row in (await client.get("/outcomes")).json() if row["path"] == f"chat job {started['id']}"
    ]
    assert [row["outcome"] for row in jobs] == ["cancelled"]
