"""The demo served by ``make demo`` on http://127.0.0.1:8000 (``make demo PORT=9000`` elsewhere).

The index is a dashboard where each response class is seen working live: an event stream
with ids, pings and a reconnect that resumes, a broker feed with a publish form, downloads
with their sizes and framing, a streamed page, what a failed stream does to a browser, and
the outcomes table fed by the ``on_outcome`` hook. It is plain HTML (``templates/index.html``)
and one small script (``static/dashboard.js``); every other route is a few lines written the
way the documentation recommends, and each can be opened on its own or with curl.

The chat page (``/chat``, ``templates/chat.html`` and ``static/chat.js``, also on the
dashboard) shows resumable streams: a (fake, deterministic) answer generated in the background
keeps streaming through a reload of the page, and a stop button cancels it.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from importlib import metadata
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streaming_responses import (
    CSVResponse,
    EventBroker,
    EventsLost,
    EventSourceResponse,
    FileResponse,
    JobOutcome,
    JSONLinesResponse,
    ResumableStreams,
    ServerSentEvent,
    StreamingResponse,
    StreamingTemplates,
    StreamNotFound,
    StreamOutcome,
    last_event_id,
)

HERE = Path(__file__).resolve().parent
templates = StreamingTemplates(directory=HERE / "templates")
#: The live feed of the dashboard's broker panel: /publish adds to it; reconnecting clients resume.
broker = EventBroker(history=100)
#: Seconds between two events of /events, and without a send before a ping comment goes out.
EVENT_INTERVAL = 2.0
PING_INTERVAL = 0.75

#: The last outcomes, shown on the dashboard and at /outcomes (the on_outcome hook in use).
recent: deque[dict[str, object]] = deque(maxlen=50)


def recorder(request: Request) -> Callable[[StreamOutcome], None]:
    """An ``on_outcome`` callback that remembers how the response to ``request`` ended."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")

    def remember(outcome: StreamOutcome) -> None:
        recent.appendleft(
            {
                "path": target,
                "outcome": outcome.kind.value,
                "status": outcome.status_code,
                "bytes": outcome.bytes_sent,
                "seconds": round(outcome.duration, 4),
                "framing": outcome.framing.value if outcome.framing else None,
                "client_gone": outcome.client_gone,
                "error": repr(outcome.error) if outcome.error else None,
            }
        )

    return remember


def documentation_url() -> str | None:
    """The documentation site's address, as the package declares it (None when not installed)."""
    try:
        urls = metadata.metadata("streaming-responses").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = str(entry).partition(",")
        if label.strip() == "Documentation":
            return url.strip()
    return None


#: The routes that are not on the dashboard's panels, linked from its last panel.
EXAMPLES = [
    ("/count", "Sync generator: 100,000 lines, run in worker threads in batches"),
    ("/push", "Push style: an async writer callback awaits write() for each chunk"),
    ("/sized", "Declared length: 1 MiB with Content-Length, enforced"),
    ("/small", "A body complete before the first send goes out with Content-Length"),
    ("/slow?idle=1", "idle_timeout=1: the producer stalls, the stream ends as an error"),
    ("/file", "FileResponse: this demo's source, with ETag, ranges (curl -r 0-99) and 304s"),
    ("/outcomes", "Outcomes recorded by the on_outcome hook, as JSON"),
]


async def index(request: Request) -> StreamingResponse:
    context = {
        "examples": EXAMPLES,
        "documentation": documentation_url(),
        "event_interval": EVENT_INTERVAL,
        "ping_interval": PING_INTERVAL,
    }
    return templates.stream(request, "index.html", context)


async def dashboard_script(request: Request) -> FileResponse:
    return FileResponse(HERE / "static" / "dashboard.js", media_type="text/javascript")


async def clock(request: Request) -> StreamingResponse:
    async def ticks() -> AsyncIterator[str]:
        for _ in range(30):
            yield time.strftime("%H:%M:%S\n")
            await anyio.sleep(1)

    # Without nosniff a browser waits for about 512 bytes of text/plain before it shows any.
    headers = {"x-content-type-options": "nosniff"}
    return StreamingResponse(ticks(), media_type="text/plain", headers=headers, on_outcome=recorder(request))


async def count(request: Request) -> StreamingResponse:
    def lines() -> Iterator[str]:
        for n in range(100_000):
            yield f"line {n}\n"

    return StreamingResponse(lines(), media_type="text/plain", on_outcome=recorder(request))


async def push(request: Request) -> StreamingResponse:
    async def produce(write: Callable[[str], Awaitable[None]]) -> None:
        for word in ("written ", "with ", "a ", "callback\n"):
            await write(word)
            await anyio.sleep(0.3)

    return StreamingResponse(produce, media_type="text/plain", on_outcome=recorder(request))


async def sized(request: Request) -> StreamingResponse:
    block = b"0123456789abcdef" * 4096  # 64 KiB

    async def blocks() -> AsyncIterator[bytes]:
        for _ in range(16):
            yield block

    return StreamingResponse(
        blocks(),
        media_type="application/octet-stream",
        content_length=16 * len(block),
        headers={"content-disposition": 'attachment; filename="sized.bin"'},
        on_outcome=recorder(request),
    )


async def small(request: Request) -> StreamingResponse:
    return StreamingResponse(
        ["small ", "and ", "complete\n"], media_type="text/plain", on_outcome=recorder(request)
    )


async def broken(request: Request) -> StreamingResponse:
    async def rows() -> AsyncIterator[str]:
        yield "row 1\n"
        await anyio.sleep(0.5)
        raise RuntimeError("the database went away")

    return StreamingResponse(rows(), media_type="text/plain", on_outcome=recorder(request))


async def slow(request: Request) -> StreamingResponse:
    idle = float(request.query_params.get("idle", "1"))

    async def stalls() -> AsyncIterator[str]:
        yield "first chunk, then silence\n"
        await anyio.sleep(idle * 5)
        yield "never sent\n"

    return StreamingResponse(
        stalls(), media_type="text/plain", idle_timeout=idle, on_outcome=recorder(request)
    )


async def upper(request: Request) -> StreamingResponse:
    async def echo() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            yield chunk.upper()

    return StreamingResponse(echo(), media_type="text/plain", duplex=True, on_outcome=recorder(request))


async def events(request: Request) -> EventSourceResponse:
    resumed = last_event_id(request)
    start = int(resumed) if resumed is not None and resumed.isdigit() else 0

    async def counter() -> AsyncIterator[ServerSentEvent]:
        for n in range(start + 1, start + 1000):
            yield ServerSentEvent({"n": n}, event="count", id=str(n))
            await anyio.sleep(EVENT_INTERVAL)

    return EventSourceResponse(counter(), ping=PING_INTERVAL, on_outcome=recorder(request))


async def feed_events(request: Request) -> EventSourceResponse:
    resume_after = last_event_id(request)

    async def relay() -> AsyncIterator[ServerSentEvent]:
        try:
            async with broker.subscribe(resume_after) as events:
                async for event in events:
                    yield event
        except EventsLost:  # an id from before the history (or before a restart): start live
            async with broker.subscribe() as events:
                async for event in events:
                    yield event

    return EventSourceResponse(relay(), ping=5, on_outcome=recorder(request))


async def publish(request: Request) -> JSONResponse:
    text = request.query_params.get("text", "hello")
    event = await broker.publish(ServerSentEvent(text))
    return JSONResponse({"id": event.id, "subscribers": broker.subscribers})


async def source_file(request: Request) -> FileResponse:
    return FileResponse(
        HERE / "app.py",
        media_type="text/plain",
        filename="app.py",
        content_disposition_type="inline",
        on_outcome=recorder(request),
    )


def demo_rows() -> Iterator[dict[str, object]]:
    for n in range(10_000):
        yield {"id": n, "name": f'row {n}, "quoted"', "price": n / 100, "note": None}


async def rows_csv(request: Request) -> CSVResponse:
    return CSVResponse(demo_rows(), filename="rows.csv", on_outcome=recorder(request))


async def rows_jsonl(request: Request) -> JSONLinesResponse:
    return JSONLinesResponse(demo_rows(), on_outcome=recorder(request))


async def page(request: Request) -> StreamingResponse:
    async def slow_rows() -> AsyncIterator[dict[str, object]]:
        for n in range(20):
            await anyio.sleep(0.1)
            yield {"n": n, "square": n * n}

    return templates.stream(request, "page.html", {"rows": slow_rows()}, on_outcome=recorder(request))


async def outcomes(request: Request) -> Response:
    return JSONResponse(list(recent), headers={"cache-control": "no-store"})


# -- the chat page: resumable streams ---------------------------------------------------------

#: Seconds between two tokens of the fake model, and how many words an answer has.
TOKEN_INTERVAL = 0.04
ANSWER_WORDS = 200
#: The longest question the chat accepts (a longer one is a 422, before anything starts).
MAX_PROMPT = 500
_TEXT = (
    "the answer is generated in the background and every token goes to the broker, so a reload of "
    "this page attaches again and replays what was already said before it follows the rest live; "
    "pressing stop cancels the generation where it waits, and the last event says how it ended."
)
_WORDS = _TEXT.split(" ")


def answer_tokens(prompt: str) -> list[str]:
    """The tokens the fake model answers ``prompt`` with: always the same for the same prompt."""
    opening = f"You asked: {prompt.strip()!r}. ".split(" ")
    body = [_WORDS[(n + len(prompt)) % len(_WORDS)] for n in range(ANSWER_WORDS)]
    return [word + " " for word in opening if word] + [f"{word} " for word in body[:-1]] + [body[-1] + "."]


async def fake_model(prompt: str) -> AsyncIterator[dict[str, str]]:
    """A deterministic token generator standing in for a model server."""
    for token in answer_tokens(prompt):
        await anyio.sleep(TOKEN_INTERVAL)
        yield {"text": token}


def record_job(outcome: JobOutcome) -> None:
    """The ``on_outcome`` of the chat's jobs: each generation joins the outcomes table."""
    recent.appendleft(
        {
            "path": f"chat job {outcome.stream_id}",
            "outcome": outcome.kind.value,
            "status": None,
            "bytes": None,
            "seconds": round(outcome.duration, 4),
            "framing": None,
            "client_gone": None,
            "error": repr(outcome.error) if outcome.error else None,
        }
    )


#: The chat's answers: a broker of their own (an answer is up to a few hundred events), kept
#: for ten minutes after they end, cancelled after a minute without any page attached.
answers = ResumableStreams(
    EventBroker(history=5000), keep=600, abandon_after=60, max_duration=120, on_outcome=record_job
)


async def chat(request: Request) -> StreamingResponse:
    context = {"max_prompt": MAX_PROMPT, "token_interval": TOKEN_INTERVAL}
    return templates.stream(request, "chat.html", context)


async def chat_script(request: Request) -> FileResponse:
    return FileResponse(HERE / "static" / "chat.js", media_type="text/javascript")


async def ask(request: Request) -> JSONResponse:
    """POST a question: checked first (a 422 names what is wrong), then the answer starts."""
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "the body must be JSON"}, status_code=422)
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT:
        return JSONResponse({"error": f"prompt must be 1 to {MAX_PROMPT} characters"}, status_code=422)
    # A retried POST (same Idempotency-Key) gets the same answer, not a second generation.
    stream_id = await answers.start(fake_model(prompt), key=request.headers.get("idempotency-key"))
    return JSONResponse({"id": stream_id})


async def answer_events(request: Request) -> EventSourceResponse:
    stream_id = request.path_params["stream_id"]
    return answers.attach(stream_id, last_event_id(request), ping=5, on_outcome=recorder(request))


async def stop(request: Request) -> JSONResponse:
    try:
        stopped = await answers.cancel(request.path_params["stream_id"])
    except StreamNotFound:
        return JSONResponse({"error": "no such answer"}, status_code=404)
    return JSONResponse({"stopped": stopped})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with answers.broker, answers, broker:
        yield


app = Starlette(
    routes=[
        Route("/", index),
        Route("/static/dashboard.js", dashboard_script),
        Route("/clock", clock),
        Route("/count", count),
        Route("/push", push),
        Route("/sized", sized),
        Route("/small", small),
        Route("/broken", broken),
        Route("/slow", slow),
        Route("/upper", upper, methods=["POST", "PUT"]),
        Route("/events", events),
        Route("/feed/events", feed_events),
        Route("/publish", publish, methods=["GET", "POST"]),
        Route("/file", source_file),
        Route("/rows.csv", rows_csv),
        Route("/rows.jsonl", rows_jsonl),
        Route("/page", page),
        Route("/outcomes", outcomes),
        Route("/chat", chat),
        Route("/static/chat.js", chat_script),
        Route("/chat/answers", ask, methods=["POST"]),
        Route("/chat/answers/{stream_id}/events", answer_events),
        Route("/chat/answers/{stream_id}/stop", stop, methods=["POST"]),
    ],
    lifespan=lifespan,
)
