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
