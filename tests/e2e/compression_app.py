"""The application the compression end-to-end tests run: ``tests.e2e.compression_app:app``.

It owns compressed endpoints of every kind the tests download (event streams, CSV, JSON Lines)
and the *lockstep* event stream: its generator makes event ``n + 1`` only after the client has
acknowledged event ``n`` (``POST /ack``), so an event held back in a compressor would stall the
stream instead of arriving late. What only the server sees (the coding each stream was sent
with, how it ended) is served as JSON by ``GET /_state?id=...``. Times are ``time.monotonic()``,
shared by every process of the machine.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from streaming_responses import (
    CSVResponse,
    EventSourceResponse,
    JSONLinesResponse,
    ServerSentEvent,
    StreamOutcome,
)

#: Seconds a lockstep stream waits for one acknowledgement before it gives up (an error): far
#: beyond any client's round trip, so that only a stalled client ends a stream this way.
ACK_TIMEOUT = 30.0


class Probes:
    """What happened to each request, keyed by the request's ``id`` parameter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}

    def record(self, probe_id: str | None, **fields: Any) -> None:
        if probe_id is None:
            return
        with self._lock:
            self.records.setdefault(probe_id, {}).update(fields)

    def get(self, probe_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self.records.get(probe_id)
            return dict(record) if record is not None else None


PROBES = Probes()
#: The acknowledgement each lockstep stream waits for, by probe id: (event number, its Event).
ACKS: dict[str, tuple[int, anyio.Event]] = {}


def _record_outcome(probe_id: str | None) -> Any:
    def on_outcome(outcome: StreamOutcome) -> None:
        PROBES.record(
            probe_id,
            outcome=outcome.kind.value,
            content_encoding=outcome.content_encoding,
            bytes_sent=outcome.bytes_sent,
            encoded_bytes=outcome.encoded_bytes,
        )

    return on_outcome


def _compress(request: Request) -> Any:
    coding = request.query_params.get("coding")
    return True if not coding else (coding,)


async def lockstep(request: Request) -> Response:
    """``n`` events, each made after the previous one was acknowledged; data: its number and time."""
    probe_id = request.query_params["id"]
    count = int(request.query_params.get("n", "5"))

    async def events() -> AsyncIterator[ServerSentEvent]:
        for n in range(1, count + 1):
            acked = anyio.Event()
            ACKS[probe_id] = (n, acked)
            yield ServerSentEvent(json.dumps({"n": n, "at": time.monotonic()}), id=str(n))
            try:
                with anyio.fail_after(ACK_TIMEOUT):  # anyio: the app also runs on trio
                    await acked.wait()
            except TimeoutError:
                PROBES.record(probe_id, stalled_at=n)
                raise
        ACKS.pop(probe_id, None)

    return EventSourceResponse(
        events(), ping=None, compress=_compress(request), on_outcome=_record_outcome(probe_id)
    )


async def ack(request: Request) -> Response:
    """The client decoded event ``n`` of stream ``id``: let the generator make the next one."""
    probe_id = request.query_params["id"]
    number = int(request.query_params["n"])
    waiting = ACKS.get(probe_id)
    if waiting is None or waiting[0] != number:
        return JSONResponse({"error": f"stream {probe_id} does not wait for {number}: {waiting}"}, 409)
    waiting[1].set()
    PROBES.record(probe_id, acked=number, acked_at=time.monotonic())
    return JSONResponse({"ok": True})


def _rows(count: int, broken: int | None) -> Iterator[Any]:
    for n in range(count):
        if n == broken:
            yield "not a row"  # a TypeError after the first batches were sent
        yield (n, f'name, "quoted" {n}', "héllo wörld ✓", n * 1.5)


def report_csv(request: Request) -> Response:
    probe_id = request.query_params.get("id")
    count = int(request.query_params.get("rows", "20000"))
    broken = request.query_params.get("broken")
    return CSVResponse(
        _rows(count, None if broken is None else int(broken)),
        columns=("id", "name", "text", "half"),
        filename="report.csv",
        compress=_compress(request),
        on_outcome=_record_outcome(probe_id),
    )


async def items_jsonl(request: Request) -> Response:
    probe_id = request.query_params.get("id")
    count = int(request.query_params.get("n", "20000"))

    async def items() -> AsyncIterator[dict[str, Any]]:
        for n in range(count):
            yield {"id": n, "name": f"item {n}", "tags": ["a", "b"], "ok": n % 2 == 0}
            if n % 1000 == 0:
                await anyio.lowlevel.checkpoint()

    return JSONLinesResponse(items(), compress=_compress(request), on_outcome=_record_outcome(probe_id))


async def state(request: Request) -> Response:
    probe_id = request.query_params.get("id")
    return JSONResponse({"probe": PROBES.get(probe_id) if probe_id else None, "now": time.monotonic()})


async def report(request: Request) -> Response:
    """``POST``: the browser page stores its results; ``GET``: the test reads them."""
    probe_id = request.query_params.get("id")
    if request.method == "POST":
        PROBES.record(probe_id, report=await request.json())
        return JSONResponse({"ok": True})
    return JSONResponse((PROBES.get(probe_id or "") or {}).get("report"))


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Compressed EventSource</title></head><body>
<script>
const params = new URLSearchParams(location.search);
const id = params.get("id"), total = Number(params.get("total"));
const codings = params.get("codings").split(",");
const results = {};
function run(index) {
  if (index >= codings.length) {
    fetch("/_report?id=" + id, {method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify(results)});
    return;
  }
  const coding = codings[index], stream = id + "-" + coding;
  const result = results[coding] = {seen: [], errors: 0, done: false};
  const source = new EventSource("/lockstep?id=" + stream + "&n=" + total + "&coding=" + coding);
  const give_up = setTimeout(() => { source.close(); run(index + 1); }, 20000);
  source.onmessage = (e) => {
    const n = JSON.parse(e.data).n;
    result.seen.push(n);
    fetch("/ack?id=" + stream + "&n=" + n, {method: "POST"});
    if (n >= total) { result.done = true; clearTimeout(give_up); source.close(); run(index + 1); }
  };
  source.onerror = () => { result.errors += 1; };
}
run(0);
</script></body></html>
"""


async def page(request: Request) -> Response:
    return HTMLResponse(PAGE)


app = Starlette(
    routes=[
        Route("/_state", state),
        Route("/_report", report, methods=["GET", "POST"]),
        Route("/page", page),
        Route("/lockstep", lockstep),
        Route("/ack", ack, methods=["POST"]),
        Route("/report.csv", report_csv),
        Route("/items.jsonl", items_jsonl),
    ]
)
