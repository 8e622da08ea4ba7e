"""JSONLinesResponse and its encoders: values, types as FastAPI writes them, NaN, errors, FastAPI."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
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
from streaming_responses._json import ENCODERS, jsonable, pick_dumps
from streaming_responses._jsonlines import JSONLinesEncoder
from streaming_responses.testing import StreamAborted, StreamingTestClient


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
    }
    if name != "pydantic-core":  # pydantic-core writes timedeltas as ISO 8601 durations
        value["span"] = datetime.timedelta(seconds=90)
    assert json.loads(encode([value], name)) == jsonable_encoder(value)


@pytest.mark.parametrize("name", ENCODERS)
def test_nan_and_infinities_are_errors_naming_the_item(name: str) -> None:
    encoder = JSONLinesEncoder(name)
    encoder.add({"fine": None})
    for bad in (math.nan, {"x": [math.inf]}, -math.inf):
        with pytest.raises(ValueError, match="item 2 holds a NaN or infinite float"):
            encoder.add(bad)
    with pytest.raises(TypeError, match="item 2 cannot be encoded as JSON"):
        encoder.add(object())
    assert encoder.finish() == b'{"fine":null}\n'


def test_unknown_encoders_are_refused_and_decimals_follow_fastapi() -> None:
    with pytest.raises(ValueError, match="encoder must be"):
        pick_dumps("simdjson")
    assert pick_dumps()[0] == "orjson"
    assert jsonable(decimal.Decimal("2")) == 2
    assert jsonable(decimal.Decimal("2.5")) == 2.5
    assert jsonable(b"abc") == "abc"
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        jsonable(object())


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
    def items() -> Iterator[float]:
        yield from range(20_000)
        yield math.nan

    client = StreamingTestClient(app_with(lambda: JSONLinesResponse(items())))
    async with client.stream("GET", "/") as response:
        with pytest.raises(StreamAborted) as info:
            await response.read()
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


def test_a_missing_encoder_is_named_with_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "orjson", None)
    monkeypatch.setitem(sys.modules, "pydantic_core", None)
    with pytest.raises(ImportError, match=r"streaming-responses\[orjson\]"):
        pick_dumps("orjson")
    with pytest.raises(ImportError, match=r"streaming-responses\[pydantic\]"):
        pick_dumps("pydantic-core")
    assert pick_dumps()[0] == "json"
