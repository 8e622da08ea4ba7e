"""The app the tabular end-to-end tests run: CSV and JSON Lines downloads on a real server.

``GET /_state`` answers 200 (the readiness probe of ``servers.start_server``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from streaming_responses import CSVResponse, JSONLinesResponse

ROWS = 30_000

app = FastAPI(openapi_url=None)


@app.get("/_state")
async def state() -> Response:
    return JSONResponse({})


def table(count: int) -> Iterator[tuple[Any, ...]]:
    for n in range(count):
        yield (n, f'name, "quoted" {n}', "héllo ✓", None, n * 0.5)


@app.get("/report.csv")
def report(bom: bool = False, encoding: str = "utf-8", delimiter: str = ",") -> Response:
    return CSVResponse(
        table(ROWS),
        columns=("id", "name", "text", "empty", "half"),
        filename="report.csv",
        bom=bom,
        encoding=encoding,
        delimiter=delimiter,
    )


@app.get("/broken.csv")
async def broken() -> Response:
    async def rows() -> AsyncIterator[Any]:
        for n in range(ROWS):
            yield [n, "fine"]
        await anyio.sleep(0.05)
        yield "not a row"

    return CSVResponse(rows())


@app.get("/items", response_class=JSONLinesResponse)
async def items() -> AsyncIterator[dict[str, Any]]:
    for n in range(ROWS):
        yield {"id": n, "name": f"item {n}"}
