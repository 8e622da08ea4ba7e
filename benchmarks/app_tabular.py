"""The app the tabular rows run: CSV and JSON Lines, ours against the patterns users write today.

``/csv/ours?rows=N`` streams ``rows(N)`` with :class:`~streaming_responses.CSVResponse` from a
sync generator; ``/csv/tutorial?rows=N`` is the tutorial pattern: a sync generator that formats
one row at a time with ``csv.writer`` into a fresh ``StringIO`` and yields it into Starlette's
StreamingResponse. ``/jsonl/ours?count=N`` and ``/jsonl/fastapi?count=N`` are FastAPI generator
path operations yielding ``items(N)``, with ``response_class=JSONLinesResponse`` and without
(FastAPI's own JSON Lines streaming). ``/jsonl/{ours,fastapi}-dataclass`` and
``/jsonl/{ours,fastapi}-model`` yield the same items as dataclass instances and as pydantic
models, each annotated ``-> AsyncIterable[Item]`` as FastAPI's docs write a JSON Lines stream.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import functools
import io
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.responses import StreamingResponse as StarletteStreamingResponse

from streaming_responses import CSVResponse, JSONLinesResponse

Row = tuple[int, str, str, float, str]


@functools.lru_cache(maxsize=4)
def rows(count: int) -> tuple[Row, ...]:
    """``count`` five-column rows with commas, quotes and non-ASCII text (cached: not timed)."""
    return tuple((n, f'name, "quoted" {n}', "héllo wörld ✓ ñ", n * 1.5, f"line {n}") for n in range(count))


@functools.lru_cache(maxsize=4)
def items(count: int) -> tuple[dict[str, Any], ...]:
    """``count`` small JSON objects (cached: not timed)."""
    return tuple(
        {"id": n, "name": f"item {n}", "tags": ["a", "b"], "score": n * 1.5, "ok": n % 2 == 0}
        for n in range(count)
    )


@dataclasses.dataclass
class ItemRecord:
    """One JSON Lines item as a dataclass."""

    id: int
    name: str
    tags: list[str]
    score: float
    ok: bool


class ItemModel(BaseModel):
    """One JSON Lines item as a pydantic model."""

    id: int
    name: str
    tags: list[str]
    score: float
    ok: bool


@functools.lru_cache(maxsize=2)
def records(count: int) -> tuple[ItemRecord, ...]:
    """``items(count)`` as dataclass instances (cached: not timed)."""
    return tuple(ItemRecord(**item) for item in items(count))


@functools.lru_cache(maxsize=2)
def models(count: int) -> tuple[ItemModel, ...]:
    """``items(count)`` as pydantic models (cached: not timed)."""
    return tuple(ItemModel(**item) for item in items(count))


def _count(request: Request, name: str) -> int:
    return int(request.query_params[name])


app = FastAPI(openapi_url=None)


@app.get("/info")
async def info() -> Response:
    """What the server runs (the harness reads it)."""
    return JSONResponse(
        {
            "loop": type(asyncio.get_running_loop()).__module__,
            "classes": {"ours": "streaming_responses.CSVResponse/JSONLinesResponse", "baseline": "tutorial"},
        }
    )


@app.get("/csv/ours")
def csv_ours(request: Request) -> Response:
    """CSVResponse from a sync generator of tuples."""
    data = rows(_count(request, "rows"))

    def produce() -> Iterator[Row]:
        yield from data

    return CSVResponse(produce())


@app.get("/csv/tutorial")
def csv_tutorial(request: Request) -> Response:
    """The tutorial pattern: one StringIO, one csv.writer and one yield per row."""
    data = rows(_count(request, "rows"))

    def produce() -> Iterator[str]:
        for row in data:
            buffer = io.StringIO()
            csv.writer(buffer).writerow(row)
            yield buffer.getvalue()

    return StarletteStreamingResponse(produce(), media_type="text/csv")


@app.get("/jsonl/ours", response_class=JSONLinesResponse)
async def jsonl_ours(count: int) -> AsyncIterator[dict[str, Any]]:
    """JSONLinesResponse as a FastAPI generator path operation's response class."""
    for item in items(count):
        yield item


@app.get("/jsonl/fastapi")
async def jsonl_fastapi(count: int) -> AsyncIterator[dict[str, Any]]:
    """FastAPI's own JSON Lines streaming of the same items."""
    for item in items(count):
        yield item


@app.get("/jsonl/ours-dataclass", response_class=JSONLinesResponse)
async def jsonl_ours_dataclass(count: int) -> AsyncIterable[ItemRecord]:
    """JSONLinesResponse of dataclass instances."""
    for item in records(count):
        yield item


@app.get("/jsonl/fastapi-dataclass")
async def jsonl_fastapi_dataclass(count: int) -> AsyncIterable[ItemRecord]:
    """FastAPI's own JSON Lines streaming of the same dataclass instances."""
    for item in records(count):
        yield item


@app.get("/jsonl/ours-model", response_class=JSONLinesResponse)
async def jsonl_ours_model(count: int) -> AsyncIterable[ItemModel]:
    """JSONLinesResponse of pydantic models."""
    for item in models(count):
        yield item


@app.get("/jsonl/fastapi-model")
async def jsonl_fastapi_model(count: int) -> AsyncIterable[ItemModel]:
    """FastAPI's own JSON Lines streaming of the same pydantic models."""
    for item in models(count):
        yield item
