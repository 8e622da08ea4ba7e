"""JSONLinesResponse and its encoders: values, types as FastAPI writes them, NaN, errors, FastAPI."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import decimal
import enum
import json
import math
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import PurePosixPath
from typing import Any

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI
from fastapi.encoders import jsonable_encoder
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from streaming_responses import JSONLinesResponse
from streaming_responses._json import ENCODERS
from streaming_responses._jsonlines import JSONLinesEncoder
from streaming_responses._producers import ChunkQueue, ResumeAfterItems
from streaming_responses._records import AsyncBatchProducer
from streaming_responses.testing import StreamAborted, StreamingTestClient
from tests.asgi import Recorder, http_scope


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    when: datetime.date


class Item(BaseModel):
    item_id: int = Field(alias="itemId")
    price: decimal.Decimal


def encode(items: list[Any], name: str) -> bytes:
    encoder = JSONLinesEncoder(name)
    for item in items:
        encoder.add(item)
    return encoder.finish()


@pytest.mark.parametrize("name", ENCODERS)
def test_each_encoder_writes_one_compact_document_per_line(name: str) -> None:
    assert encode([{"a": [1, None]}, "é", 2**70, {1: True}], name) == (
        b'{"a":[1,null]}\n"\xc3\xa9"\n1180591620717411303424\n{"1":true}\n'
    )


@pytest.mark.parametrize("name", ENCODERS)
def test_types_json_does_not_know_are_written_as_fastapi_writes_them(name: str) -> None:
    value = {
        "point": Point(1, datetime.date(2024, 5, 6)),
        "item": Item(itemId=3, price=decimal.Decimal("1.50")),
        "colour": Colour.RED,
        "id": uuid.UUID(int=7),
        "path": PurePosixPath("/a/b"),
        "tags": {"x"},
        "at": datetime.datetime(2024, 5, 6, 7, 8, 9),
        "span": datetime.timedelta(seconds=90),
        "price": decimal.Decimal("2"),
    }
    assert json.loads(encode([value], name)) == jsonable_encoder(value)


@pytest.mark.parametrize("name", ENCODERS)
def test_nan_and_infinities_are_errors_naming_the_item_and_the_place_in_it(name: str) -> None:
    encoder = JSONLinesEncoder(name)
    encoder.add({"fine": None})
    for bad, where in ((math.nan, ""), ({"x": [math.inf]}, r" \(at value\['x'\]\[0\]\)"), (-math.inf, "")):
        with pytest.raises(
            ValueError, match=rf"item 2 cannot be encoded as JSON: .* is NaN or an infinity.*{where}"
        ):
            encoder.add(bad)
    with pytest.raises(TypeError, match="item 2 cannot be encoded as JSON: an object of type object"):
        encoder.add(object())
    assert encoder.finish() == b'{"fine":null}\n'


@pytest.mark.parametrize("name", ENCODERS)
def test_a_bad_item_in_a_group_is_named_by_its_position_and_the_items_before_it_stay(name: str) -> None:
    encoder = JSONLinesEncoder(name)
    encoder.add_many([1, 2])
    with pytest.raises(TypeError, match="item 5 cannot be encoded as JSON: a complex number"):
        encoder.add_many([3, 4, 1j, 6])
    assert encoder.count == 4
    assert encoder.take() == b"1\n2\n3\n4\n"
    assert encoder.take() == b""


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(json_values, max_size=8), name=st.sampled_from(ENCODERS))
def test_any_json_value_reads_back_with_json_loads(values: list[Any], name: str) -> None:
    lines = encode(values, name).split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line) for line in lines[:-1]] == values


def app_with(make: Any) -> Starlette:
    async def endpoint(request: Request) -> JSONLinesResponse:
        response: JSONLinesResponse = make()
        return response

    return Starlette(routes=[Route("/", endpoint)])


@pytest.mark.anyio
async def test_the_response_streams_jsonl_from_sync_and_async_sources() -> None:
    async def items() -> AsyncIterator[dict[str, int]]:
        for n in range(3):
            yield {"n": n}

    for make in (
        lambda: JSONLinesResponse(items()),
        lambda: JSONLinesResponse(iter([{"n": n} for n in range(3)])),
    ):
        response = await StreamingTestClient(app_with(make)).get("/")
        assert response.headers["content-type"] == "application/jsonl"
        assert response.body == b'{"n":0}\n{"n":1}\n{"n":2}\n'


@pytest.mark.anyio
async def test_a_nan_after_the_first_chunk_aborts_the_stream() -> None:
    first_chunk_read = threading.Event()

    def items() -> Iterator[float]:
        yield from range(20_000)  # more than one batch: the first goes out
        first_chunk_read.wait(timeout=30)
        yield math.nan

    client = StreamingTestClient(app_with(lambda: JSONLinesResponse(items())))
    async with client.stream("GET", "/") as response:
        chunks = response.iter_bytes()
        assert (await anext(chunks)).startswith(b"0\n1\n2\n")
        first_chunk_read.set()
        with pytest.raises(StreamAborted) as info:
            async for _ in chunks:
                pass
    assert "item 20001" in str(info.value.__cause__)


@pytest.mark.anyio
async def test_a_bad_item_before_the_first_chunk_is_a_500() -> None:
    client = StreamingTestClient(app_with(lambda: JSONLinesResponse([math.nan])), raise_app_exceptions=False)
    assert (await client.get("/")).status_code == 500


@pytest.mark.anyio
async def test_fastapi_generator_path_operations_with_dependency_and_background() -> None:
    app = FastAPI()
    events: list[str] = []

    async def session() -> AsyncIterator[str]:
        events.append("open")
        yield "db"
        events.append("closed")

    @app.get("/items", response_class=JSONLinesResponse)
    async def items(tasks: BackgroundTasks, db: str = Depends(session)) -> AsyncIterator[dict[str, Any]]:
        tasks.add_task(events.append, "background ran")
        for n in range(2):
            assert "closed" not in events
            yield {"n": n, "db": db}

    @app.get("/sync", response_class=JSONLinesResponse)
    def sync_items() -> Iterator[Item]:
        yield Item(itemId=1, price=decimal.Decimal("2"))

    client = StreamingTestClient(app)
    response = await client.get("/items")
    assert response.body == b'{"n":0,"db":"db"}\n{"n":1,"db":"db"}\n'
    assert events[0] == "open"
    assert "background ran" in events
    assert json.loads((await client.get("/sync")).body) == {"itemId": 1, "price": "2"}
    schema = (await client.get("/openapi.json")).json()
    assert "application/jsonl" in schema["paths"]["/items"]["get"]["responses"]["200"]["content"]


class LoopTurns:
    """Counts event-loop turns while it runs."""

    def __init__(self) -> None:
        self.count = 0
        self.running = True

    async def run(self) -> None:
        while self.running:
            self.count += 1
            await asyncio.sleep(0)


@pytest.mark.anyio
async def test_fastapis_bare_yield_after_each_item_costs_no_loop_turn_and_splits_no_batch() -> None:
    async def after_each_a_bare_yield(count: int) -> AsyncIterator[dict[str, int]]:
        for n in range(count):
            yield {"n": n}
            await asyncio.sleep(0)  # what FastAPI adds after each item of a generator path operation

    turns = LoopTurns()
    counter = asyncio.ensure_future(turns.run())
    await asyncio.sleep(0)
    queue = ChunkQueue(1 << 30, "utf-8")
    before = turns.count
    await AsyncBatchProducer(after_each_a_bare_yield(1_000), JSONLinesEncoder()).run(queue)
    taken = turns.count - before
    turns.running = False
    await counter
    assert queue.take_now() == [b"".join(b'{"n":%d}\n' % n for n in range(1_000))]
    # One bare yield in MAX_SKIPPED still goes to the loop, so other tasks keep their turns.
    assert taken <= 1_000 // ResumeAfterItems.MAX_SKIPPED + 2


@pytest.mark.anyio
async def test_dataclass_and_model_items_stream_as_fastapi_streams_them() -> None:
    points = [Point(n, datetime.date(2024, 1, n + 1)) for n in range(3)]
    items = [Item(itemId=n, price=decimal.Decimal(n) / 4) for n in range(3)]
    app = FastAPI()

    @app.get("/points/ours", response_class=JSONLinesResponse)
    async def points_ours() -> AsyncIterator[Point]:
        for point in points:
            yield point

    @app.get("/points/fastapi")
    async def points_fastapi() -> AsyncIterator[Point]:
        for point in points:
            yield point

    @app.get("/items/ours", response_class=JSONLinesResponse)
    def items_ours() -> Iterator[Item]:
        yield from items

    @app.get("/items/fastapi")
    def items_fastapi() -> Iterator[Item]:
        yield from items

    client = StreamingTestClient(app)
    for kind in ("points", "items"):
        ours = (await client.get(f"/{kind}/ours")).body.splitlines()
        theirs = (await client.get(f"/{kind}/fastapi")).body.splitlines()
        assert [json.loads(line) for line in ours] == [json.loads(line) for line in theirs]
        assert len(ours) == 3


def test_on_a_plain_asyncio_loop_the_producer_declares_asyncio_to_sniffio_in_its_own_task_only() -> None:
    # Servers start their loop with asyncio itself (not anyio.run), so nothing has told
    # sniffio; anyio calls in the producer would otherwise detect the library every time.
    sniffio = pytest.importorskip("sniffio")  # without it, anyio asks asyncio directly
    seen: list[str | None] = []

    async def items() -> AsyncIterator[int]:
        seen.append(sniffio.current_async_library_cvar.get())
        yield 1

    async def main() -> tuple[bytes, str | None]:
        recorder = Recorder()
        await JSONLinesResponse(items())(http_scope(), recorder.receive, recorder.send)
        return recorder.body, sniffio.current_async_library_cvar.get()

    body, after = asyncio.run(main())
    assert body == b"1\n"
    assert seen == ["asyncio"]
    assert after is None
