"""The demo served by ``make demo``: every example on the index answers as it says."""

from __future__ import annotations

import re

import pytest

from demo.app import EXAMPLES, app
from streaming_responses import Framing
from streaming_responses.testing import StreamAborted, StreamingTestClient

pytestmark = pytest.mark.anyio


async def test_the_index_links_every_example() -> None:
    response = await StreamingTestClient(app).get("/")
    links = re.findall(r'<a href="([^"]+)">', response.text)
    assert links == [path.replace("&", "&amp;") for path, _ in EXAMPLES]


async def test_the_clock_streams_a_line_at_a_time_until_the_client_leaves() -> None:
    async with StreamingTestClient(app).stream("GET", "/clock") as response:
        first = await response.iter_bytes().__anext__()
        await response.disconnect()
    assert re.fullmatch(rb"\d\d:\d\d:\d\d\n", first)
    assert response.framing is Framing.CHUNKED


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
    assert outcomes[0]["outcome"] == "complete"
    assert outcomes[0]["framing"] == "content-length"


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


async def test_the_feed_relays_published_events_to_a_subscriber() -> None:
    client = StreamingTestClient(app)
    async with client.stream("GET", "/feed/events") as response:
        chunks = response.iter_bytes()
        assert await chunks.__anext__() == b":\n\n"
        published = (await client.get("/publish?text=hello")).json()
        assert published["subscribers"] == 1
        assert await chunks.__anext__() == f"data: hello\nid: {published['id']}\n\n".encode()
        await response.disconnect()
    assert "EventSource" in (await client.get("/feed")).text


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
