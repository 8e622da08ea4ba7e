"""The chunk pump's guarantees, checked with raw ASGI recorders (no server, no HTTP client)."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import sys
import threading
import time
import types
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest

from streaming_responses import (
    ContentLengthError,
    Framing,
    Outcome,
    ResponseStateError,
    StreamingResponse,
    StreamOutcome,
    StreamTimeout,
)
from streaming_responses._core import ChunkPump, PumpSettings
from streaming_responses._loop_asyncio import LISTENER_TASK, PRODUCER_TASK, SENDER_TASK, ResponseTasks
from streaming_responses._producers import (
    AsyncIterableProducer,
    ChunkQueue,
    ResumeAfterItems,
    fill_queue,
)
from streaming_responses._types import Message, Write
from tests.asgi import Recorder, http_scope

#: The names of the pump's own tasks (``_loop_asyncio``).
PUMP_TASKS = frozenset({PRODUCER_TASK, SENDER_TASK, LISTENER_TASK})

pytestmark = pytest.mark.anyio


async def run(response: StreamingResponse, recorder: Recorder | None = None, **scope: Any) -> Recorder:
    recorder = recorder or Recorder()
    await response(http_scope(**scope), recorder.receive, recorder.send)
    return recorder


# -- 1. start late, fail early -----------------------------------------------------------


async def test_the_start_is_sent_only_when_the_first_chunk_is_ready() -> None:
    release = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        await release.wait()
        yield b"first"

    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(run, StreamingResponse(body()), recorder)
        await anyio.sleep(0.05)
        assert recorder.sent == []
        release.set()
    assert recorder.start["status"] == 200
    assert recorder.body == b"first"


async def test_an_exception_before_the_first_chunk_propagates_and_sends_nothing() -> None:
    async def body() -> AsyncIterator[bytes]:
        raise LookupError("no such row")
        yield b""  # pragma: no cover

    recorder = Recorder()
    with pytest.raises(LookupError, match="no such row"):
        await run(StreamingResponse(body()), recorder)
    assert recorder.sent == []


async def test_an_async_generator_failing_right_after_its_first_chunk_answers_before_the_start() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ValueError("broken")

    recorder = Recorder()
    with pytest.raises(ValueError, match="broken"):
        await run(StreamingResponse(body()), recorder)
    assert recorder.sent == []


async def test_a_sync_generator_failing_right_after_its_first_chunk_never_looks_complete() -> None:
    # Whether the thread's failure lands before or after the first send depends on the
    # scheduler; either way the exception surfaces and the body is never terminated.
    def body() -> Iterator[bytes]:
        yield b"partial"
        raise ValueError("broken")

    for _ in range(20):
        recorder = Recorder()
        with pytest.raises(ValueError, match="broken"):
            await run(StreamingResponse(body()), recorder)
        assert not recorder.ended


# -- 2. framing --------------------------------------------------------------------------


async def test_a_body_complete_before_the_first_send_goes_out_with_content_length() -> None:
    async def body() -> AsyncIterator[str]:
        yield "hello "
        yield "world"

    response = StreamingResponse(body(), media_type="text/plain")
    recorder = await run(response)
    assert recorder.headers[b"content-length"] == b"11"
    assert recorder.headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert [m["type"] for m in recorder.sent] == ["http.response.start", "http.response.body"]
    assert recorder.sent[1] == {"type": "http.response.body", "body": b"hello world", "more_body": False}
    assert response.outcome is not None
    assert response.outcome.framing is Framing.CONTENT_LENGTH


async def test_an_empty_body_is_sent_with_content_length_zero() -> None:
    recorder = await run(StreamingResponse([]))
    assert recorder.headers[b"content-length"] == b"0"
    assert recorder.body == b""
    assert recorder.ended


async def endless(closed_at: list[float]) -> AsyncIterator[bytes]:
    """Yield a chunk every 10 ms forever; record when the generator's finally block ran."""
    try:
        while True:
            yield b"."
            await anyio.sleep(0.01)
    finally:
        closed_at.append(time.perf_counter())


async def slow_chunks(*chunks: bytes, delay: float = 0.01) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
        await anyio.sleep(delay)


async def test_a_body_still_being_produced_is_chunked() -> None:
    response = StreamingResponse(slow_chunks(b"a", b"b"))
    recorder = await run(response)
    assert b"content-length" not in recorder.headers
    assert recorder.body == b"ab"
    assert recorder.ended
    assert response.outcome is not None
    assert response.outcome.framing is Framing.CHUNKED


async def test_a_declared_length_is_sent_and_a_matching_body_completes() -> None:
    response = StreamingResponse(slow_chunks(b"abc", b"de"), content_length=5)
    recorder = await run(response)
    assert recorder.headers[b"content-length"] == b"5"
    assert recorder.body == b"abcde"
    assert recorder.ended
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.COMPLETE


async def test_a_content_length_header_given_by_hand_is_enforced_like_content_length() -> None:
    response = StreamingResponse(slow_chunks(b"abc"), headers={"Content-Length": "5"})
    recorder = Recorder()
    with pytest.raises(ContentLengthError, match="declared but the body ended after 3 bytes"):
        await run(response, recorder)
    assert recorder.headers[b"content-length"] == b"5"
    assert [k for k, _ in recorder.start["headers"]].count(b"content-length") == 1
    assert not recorder.ended


async def test_a_body_shorter_than_declared_is_an_error_and_never_looks_complete() -> None:
    response = StreamingResponse(slow_chunks(b"abc", b"d"), content_length=10)
    recorder = Recorder()
    with pytest.raises(ContentLengthError) as caught:
        await run(response, recorder)
    assert caught.value.declared == 10
    assert caught.value.produced == 4
    assert recorder.body == b"abcd"
    assert not recorder.ended


async def test_a_body_longer_than_declared_never_sends_the_extra_bytes() -> None:
    response = StreamingResponse(slow_chunks(b"abc", b"defg"), content_length=5)
    recorder = Recorder()
    with pytest.raises(ContentLengthError, match="ran past it, reaching 7 bytes"):
        await run(response, recorder)
    assert recorder.body == b"abc"
    assert not recorder.ended


async def test_a_complete_body_of_the_wrong_declared_length_fails_before_the_start() -> None:
    recorder = Recorder()
    with pytest.raises(ContentLengthError):
        await run(StreamingResponse([b"abc"], content_length=2), recorder)
    assert recorder.sent == []


# -- 3. coalescing -----------------------------------------------------------------------


async def test_chunks_produced_together_are_joined_into_few_messages() -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(10_000):
            yield b"x" * 32
        await anyio.sleep(0.01)  # keep it streaming, so framing is chunked
        yield b"end"

    recorder = await run(StreamingResponse(body()))
    assert recorder.body == b"x" * 320_000 + b"end"
    assert len(recorder.bodies) <= 10
    assert max(len(b) for b in recorder.bodies) <= StreamingResponse.message_bytes + 32


async def test_a_single_chunk_larger_than_the_bound_is_sent_whole() -> None:
    big = b"y" * (StreamingResponse.message_bytes * 3)
    recorder = await run(StreamingResponse(slow_chunks(big, b"z")))
    assert recorder.bodies[0] == big


async def test_a_slow_producers_chunk_is_sent_before_the_next_one_is_produced() -> None:
    produced: list[float] = []

    async def body() -> AsyncIterator[bytes]:
        for n in range(3):
            produced.append(time.perf_counter())
            yield str(n).encode()
            await anyio.sleep(0.05)

    recorder = await run(StreamingResponse(body()))
    sent = [t for m, t in zip(recorder.sent, recorder.times, strict=True) if m.get("body")]
    assert len(sent) == 3
    for index in range(2):
        assert sent[index] < produced[index + 1]
        assert sent[index] - produced[index] < 0.02


# -- 4. sync producers and context variables ---------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


async def test_a_sync_generator_runs_in_worker_threads_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    hops = 0
    original = anyio.to_thread.run_sync

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    def body() -> Iterator[bytes]:
        for _ in range(20_000):
            threads.add(threading.get_ident())
            yield b"s" * 32

    recorder = await run(StreamingResponse(body()))
    assert recorder.body == b"s" * 640_000
    assert loop_thread not in threads
    assert hops <= 640_000 // StreamingResponse.message_bytes + 2


async def test_a_slow_sync_generator_hands_over_each_chunk_without_waiting_for_the_batch() -> None:
    produced: list[float] = []

    def body() -> Iterator[bytes]:
        for n in range(3):
            produced.append(time.perf_counter())
            yield str(n).encode()
            time.sleep(0.05)

    recorder = await run(StreamingResponse(body()))
    sent = [t for m, t in zip(recorder.sent, recorder.times, strict=True) if m.get("body")]
    assert len(sent) == 3
    assert sent[0] < produced[1]
    assert sent[1] < produced[2]


async def test_context_variables_set_before_the_response_reach_sync_and_async_producers() -> None:
    seen: list[str] = []

    def sync_body() -> Iterator[bytes]:
        seen.append(request_id.get())
        yield b"."

    async def async_body() -> AsyncIterator[bytes]:
        seen.append(request_id.get())
        yield b"."

    token = request_id.set("req-42")
    try:
        await run(StreamingResponse(sync_body()))
        await run(StreamingResponse(async_body()))
    finally:
        request_id.reset(token)
    assert seen == ["req-42", "req-42"]


async def test_a_context_variable_set_inside_a_sync_generator_survives_across_batches() -> None:
    seen: list[str] = []

    def body() -> Iterator[bytes]:
        request_id.set("inside")
        for _ in range(5_000):
            yield b"c" * 64
        seen.append(request_id.get())
        yield b"!"

    await run(StreamingResponse(body()))
    assert seen == ["inside"]
    assert request_id.get() == "unset"


# -- 5. disconnects and duplex -----------------------------------------------------------


async def test_a_disconnect_closes_an_endless_async_generator_promptly() -> None:
    closed_at: list[float] = []
    recorder = Recorder()
    response = StreamingResponse(endless(closed_at))
    async with anyio.create_task_group() as group:
        group.start_soon(run, response, recorder)
        await anyio.sleep(0.05)
        disconnected_at = time.perf_counter()
        recorder.disconnect.set()
    assert len(closed_at) == 1
    assert closed_at[0] - disconnected_at < 0.1
    assert not recorder.ended
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.DISCONNECTED
    assert response.outcome.bytes_sent == len(recorder.body)


async def test_a_disconnect_closes_a_sync_generator_in_its_thread_after_the_current_item() -> None:
    events: list[tuple[str, int]] = []

    def endless() -> Iterator[bytes]:
        try:
            while True:
                yield b"tock"
                time.sleep(0.01)
        finally:
            events.append(("closed", threading.get_ident()))

    recorder = Recorder()
    response = StreamingResponse(endless())
    loop_thread = threading.get_ident()
    async with anyio.create_task_group() as group:
        group.start_soon(run, response, recorder)
        await anyio.sleep(0.05)
        disconnected_at = time.perf_counter()
        recorder.disconnect.set()
    # The response ends at once; the generator closes in its thread after the current item.
    assert time.perf_counter() - disconnected_at < 0.1
    with anyio.fail_after(0.1):
        while not events:
            await anyio.sleep(0.005)
    assert len(events) == 1
    assert events[0][1] != loop_thread
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.DISCONNECTED


def threads_running_producers() -> list[str]:
    """Names of threads (other than this one) whose stack is inside a producer right now."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    busy = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        files = set()
        current: types.FrameType | None = frame
        while current is not None:
            files.add(current.f_code.co_filename)
            current = current.f_back
        if any(name.endswith(("_producers.py", "test__core.py")) for name in files):
            busy.append(names.get(ident, str(ident)))
    return busy


@pytest.mark.timeout(60)
async def test_a_thousand_disconnects_leave_no_task_and_no_thread_behind() -> None:
    started = finally_count = 0
    began = anyio.Event()

    async def endless() -> AsyncIterator[bytes]:
        nonlocal started, finally_count
        started += 1
        began.set()
        try:
            while True:
                yield b"x" * 100
                await anyio.lowlevel.checkpoint()
        finally:
            finally_count += 1

    def sync_endless() -> Iterator[bytes]:
        nonlocal started, finally_count
        started += 1
        anyio.from_thread.run_sync(began.set)
        try:
            while True:
                yield b"y" * 100
        finally:
            finally_count += 1

    baseline_tasks = len(asyncio.all_tasks())
    for index in range(1_000):
        recorder = Recorder(send_delay=0.0005)
        content = endless() if index % 2 else sync_endless()
        began = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(run, StreamingResponse(content), recorder)
            await began.wait()  # the producer is running: disconnect in the middle of it
            recorder.disconnect.set()
    # Every producer started, and every one is closed (a sync one in its thread, after its
    # current item). The bound only keeps a broken close from hanging the test.
    with anyio.fail_after(10):
        while finally_count < started:
            await anyio.sleep(0.005)
    assert started == 1_000
    assert finally_count == started
    assert len(asyncio.all_tasks()) == baseline_tasks
    # Idle worker threads stay in anyio's pool for reuse (and expire after 10 s idle); what
    # must not remain is a thread still running a producer. The last one may still be leaving
    # its batch (after the generator's finally ran) when the count reaches 1,000.
    with anyio.fail_after(10):
        while threads_running_producers():
            await anyio.sleep(0.005)


async def test_a_response_cancelled_from_outside_closes_the_producer_and_reports_a_disconnect() -> None:
    closed: list[float] = []
    outcomes: list[StreamOutcome] = []
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(run, StreamingResponse(endless(closed), on_outcome=outcomes.append), recorder)
        await anyio.sleep(0.05)
        group.cancel_scope.cancel()
    assert len(closed) == 1
    assert [o.outcome for o in outcomes] == [Outcome.DISCONNECTED]


async def test_the_listener_does_not_read_receive_when_the_producer_reads_the_body() -> None:
    recorder = Recorder(
        body_messages=[
            {"type": "http.request", "body": b"abc", "more_body": True},
            {"type": "http.request", "body": b"def", "more_body": False},
        ]
    )

    async def upper() -> AsyncIterator[bytes]:
        while True:
            message = await recorder.receive()
            yield message.get("body", b"").upper()
            if not message.get("more_body"):
                break

    recorder = await run(StreamingResponse(upper(), duplex=True), recorder)
    assert recorder.body == b"ABCDEF"
    assert recorder.receive_calls == 2


async def test_a_client_disconnect_seen_by_a_duplex_producer_is_a_disconnect() -> None:
    from starlette.requests import ClientDisconnect

    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        await anyio.sleep(0.01)
        raise ClientDisconnect()

    response = StreamingResponse(body(), duplex=True)
    recorder = await run(response)
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.DISCONNECTED
    assert not recorder.ended


async def test_an_unread_request_body_taken_by_the_listener_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder(body_messages=[{"type": "http.request", "body": b"data", "more_body": False}])
    with caplog.at_level(logging.WARNING, logger="streaming_responses"):
        await run(StreamingResponse(slow_chunks(b"a", b"b", delay=0.02)), recorder)
    assert "pass duplex=True" in caplog.text


async def test_a_receive_that_raises_stops_the_listener_but_not_the_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_receive() -> dict[str, Any]:
        raise RuntimeError("receive is broken")

    recorder = Recorder()
    with caplog.at_level(logging.WARNING, logger="streaming_responses"):
        await StreamingResponse(slow_chunks(b"a", b"b"))(http_scope(), broken_receive, recorder.send)
    assert recorder.body == b"ab"
    assert "no longer watching for disconnects" in caplog.text


# -- 6. errors after the start -----------------------------------------------------------


async def failing_after(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
        await anyio.sleep(0.005)
    raise RuntimeError("database went away")


async def test_an_error_after_the_start_is_re_raised_and_the_body_is_never_terminated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    response = StreamingResponse(failing_after(b"a", b"b"))
    with caplog.at_level(logging.ERROR, logger="streaming_responses"), pytest.raises(RuntimeError):
        await run(response, recorder)
    assert recorder.body == b"ab"
    assert not recorder.ended
    assert recorder.trailers is None
    records = [r for r in caplog.records if r.name == "streaming_responses"]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert "RuntimeError: database went away" in records[0].getMessage()
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.ERROR
    assert isinstance(response.outcome.error, RuntimeError)


async def test_an_error_after_the_start_ends_with_error_trailers_where_they_reach_the_client() -> None:
    recorder = Recorder()
    response = StreamingResponse(failing_after(b"a"))
    await run(response, recorder, http_version="2", trailers=True, headers=[(b"te", b"trailers")])
    assert recorder.start["trailers"] is True
    assert recorder.headers[b"trailer"] == b"stream-status, stream-error"
    assert recorder.body == b"a"
    assert recorder.ended
    assert recorder.trailers == {b"stream-status": b"error", b"stream-error": b"RuntimeError"}
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.ERROR
    assert response.outcome.trailers is True


async def test_a_complete_stream_ends_with_a_complete_trailer_where_trailers_reach_the_client() -> None:
    for content in (slow_chunks(b"a", b"b"), [b"ab"]):
        recorder = Recorder()
        await run(
            StreamingResponse(content),
            recorder,
            http_version="2",
            trailers=True,
            headers=[(b"te", b"trailers")],
        )
        assert recorder.body == b"ab"
        assert recorder.trailers == {b"stream-status": b"complete"}
        assert recorder.sent[-1]["type"] == "http.response.trailers"


async def test_no_trailers_are_declared_on_http_1_1_even_when_the_scope_offers_them() -> None:
    recorder = Recorder()
    await run(StreamingResponse([b"x"]), recorder, trailers=True, headers=[(b"te", b"trailers")])
    assert "trailers" not in recorder.start
    assert b"trailer" not in recorder.headers
    assert recorder.trailers is None


# -- 7. bounded memory -------------------------------------------------------------------


async def test_a_slow_client_holds_the_producer_back() -> None:
    produced = 0

    async def fast() -> AsyncIterator[bytes]:
        nonlocal produced
        while True:
            produced += 1024
            yield b"m" * 1024

    recorder = Recorder(send_delay=0.01)
    async with anyio.create_task_group() as group:
        group.start_soon(run, StreamingResponse(fast()), recorder)
        await anyio.sleep(0.2)
        recorder.disconnect.set()
    sent = len(recorder.body)
    assert produced - sent <= 3 * StreamingResponse.message_bytes


# -- 8. timeouts -------------------------------------------------------------------------


async def test_a_total_timeout_ends_a_started_stream_as_an_error_and_closes_the_producer() -> None:
    closed: list[float] = []
    recorder = Recorder()
    response = StreamingResponse(endless(closed), timeout=0.1)
    with pytest.raises(StreamTimeout, match=r"longer than timeout=0\.1s") as caught:
        await run(response, recorder)
    assert caught.value.kind == "timeout"
    assert len(closed) == 1
    assert not recorder.ended
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.TIMEOUT


async def test_a_timeout_does_not_wait_for_a_sync_producer_blocked_in_its_thread() -> None:
    closed = threading.Event()

    def blocks() -> Iterator[bytes]:
        try:
            yield b"first"
            time.sleep(0.5)
            yield b"late"
        finally:
            closed.set()

    recorder = Recorder()
    began = time.perf_counter()
    with pytest.raises(StreamTimeout, match="idle_timeout"):
        await run(StreamingResponse(blocks(), idle_timeout=0.05), recorder)
    assert time.perf_counter() - began < 0.3
    assert recorder.body == b"first"
    assert not closed.is_set()  # still inside time.sleep: it closes after the current item
    assert await anyio.to_thread.run_sync(closed.wait, 2)


async def test_an_idle_timeout_before_the_first_chunk_propagates_before_the_start() -> None:
    async def silent() -> AsyncIterator[bytes]:
        await anyio.sleep(10)
        yield b"never"  # pragma: no cover

    recorder = Recorder()
    with pytest.raises(StreamTimeout, match=r"silent for longer than idle_timeout=0\.05s"):
        await run(StreamingResponse(silent(), idle_timeout=0.05), recorder)
    assert recorder.sent == []


async def test_an_idle_timeout_between_chunks_reports_through_trailers_when_possible() -> None:
    async def stalls() -> AsyncIterator[bytes]:
        yield b"first"
        await anyio.sleep(10)
        yield b"never"  # pragma: no cover

    recorder = Recorder()
    response = StreamingResponse(stalls(), idle_timeout=0.05)
    await run(response, recorder, http_version="2", trailers=True, headers=[(b"te", b"trailers")])
    assert recorder.trailers == {b"stream-status": b"error", b"stream-error": b"StreamTimeout"}
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.TIMEOUT


async def test_an_idle_timeout_does_not_fire_while_chunks_keep_coming() -> None:
    recorder = await run(StreamingResponse(slow_chunks(b"a", b"b", b"c", delay=0.02), idle_timeout=0.2))
    assert recorder.body == b"abc"
    assert recorder.ended


# -- 9. HEAD and bodiless statuses -------------------------------------------------------


class Tracked:
    """An async iterable that records whether it was iterated and closed."""

    def __init__(self) -> None:
        self.iterated = False
        self.closed = False

    def __aiter__(self) -> Tracked:
        return self

    async def __anext__(self) -> bytes:
        self.iterated = True
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed = True


async def test_head_sends_headers_only_and_closes_the_producer_without_iterating_it() -> None:
    content = Tracked()
    recorder = await run(StreamingResponse(content, media_type="text/plain"), method="HEAD")
    assert content.closed
    assert not content.iterated
    assert recorder.headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert recorder.sent[1:] == [{"type": "http.response.body", "body": b"", "more_body": False}]


async def test_head_keeps_a_declared_content_length() -> None:
    recorder = await run(StreamingResponse(Tracked(), content_length=123), method="HEAD")
    assert recorder.headers[b"content-length"] == b"123"


async def test_a_304_runs_no_body_and_closes_a_sync_generator() -> None:
    ran: list[str] = []

    def body() -> Generator[bytes, None, None]:
        ran.append("iterated")
        yield b"never"

    generator = body()
    recorder = await run(StreamingResponse(generator, status_code=304))
    assert ran == []
    assert inspect.getgeneratorstate(generator) == inspect.GEN_CLOSED
    assert recorder.body == b""


async def test_a_writer_is_not_called_for_head() -> None:
    called: list[bool] = []

    async def produce(write: Write) -> None:
        called.append(True)  # pragma: no cover

    await run(StreamingResponse(produce), method="HEAD")
    assert called == []


# -- 10. outcomes ------------------------------------------------------------------------


async def test_on_outcome_is_called_once_with_bytes_and_duration() -> None:
    outcomes: list[StreamOutcome] = []
    await run(StreamingResponse(slow_chunks(b"abc", b"de"), on_outcome=outcomes.append))
    assert len(outcomes) == 1
    outcome = outcomes[0]
    assert outcome.kind is Outcome.COMPLETE
    assert outcome.bytes_sent == 5
    assert outcome.status_code == 200
    assert outcome.started
    assert 0.01 < outcome.duration < 5


async def test_an_async_on_outcome_is_awaited_even_for_errors_before_the_start() -> None:
    outcomes: list[StreamOutcome] = []

    async def record(outcome: StreamOutcome) -> None:
        await anyio.lowlevel.checkpoint()
        outcomes.append(outcome)

    async def body() -> AsyncIterator[bytes]:
        raise KeyError("k")
        yield b""  # pragma: no cover

    with pytest.raises(KeyError):
        await run(StreamingResponse(body(), on_outcome=record))
    assert [o.outcome for o in outcomes] == [Outcome.ERROR]
    assert outcomes[0].status_code is None
    assert not outcomes[0].started
    assert outcomes[0].bytes_sent == 0


async def test_an_on_outcome_that_raises_is_logged_and_does_not_break_the_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(outcome: StreamOutcome) -> None:
        raise ValueError("metrics down")

    with caplog.at_level(logging.WARNING, logger="streaming_responses"):
        recorder = await run(StreamingResponse([b"ok"], on_outcome=broken))
    assert recorder.body == b"ok"
    assert "metrics down" in caplog.text


# -- 11. bad chunks ----------------------------------------------------------------------


async def test_a_chunk_of_the_wrong_type_before_the_start_raises_type_error_naming_it() -> None:
    async def body() -> AsyncIterator[Any]:
        yield 42

    with pytest.raises(TypeError, match="not int"):
        await run(StreamingResponse(body()))


async def test_a_chunk_of_the_wrong_type_after_the_start_goes_down_the_error_path() -> None:
    async def body() -> AsyncIterator[Any]:
        yield b"fine"
        await anyio.sleep(0.01)
        yield {"not": "bytes"}

    recorder = Recorder()
    with pytest.raises(TypeError, match="not dict"):
        await run(StreamingResponse(body()), recorder)
    assert recorder.body == b"fine"
    assert not recorder.ended


# -- push style --------------------------------------------------------------------------


async def test_a_writer_callback_streams_through_the_same_core() -> None:
    async def produce(write: Write) -> None:
        await write(b"hello ")
        await anyio.sleep(0.01)
        await write("world")

    recorder = await run(StreamingResponse(produce))
    assert recorder.body == b"hello world"
    assert recorder.ended


async def test_writing_after_the_writer_returned_raises_response_state_error() -> None:
    kept: list[Write] = []

    async def produce(write: Write) -> None:
        kept.append(write)
        await write(b"x")

    await run(StreamingResponse(produce))
    with pytest.raises(ResponseStateError, match="after the writer callback returned"):
        await kept[0](b"late")


async def test_start_immediately_sends_headers_before_any_chunk() -> None:
    release = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        await release.wait()
        yield b"late"

    settings = PumpSettings(status_code=200, raw_headers=[], start_immediately=True)
    pump = ChunkPump(settings, AsyncIterableProducer(body()))
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
        await anyio.sleep(0.02)
        assert [m["type"] for m in recorder.sent] == ["http.response.start"]
        release.set()
    assert recorder.body == b"late"
    assert pump.state.framing is Framing.CHUNKED


# -- hooks adapters shape the wire with ----------------------------------------------------


async def never_yields(finalized: list[str]) -> AsyncIterator[bytes]:
    try:
        await anyio.sleep_forever()
        yield b""  # pragma: no cover - never reached
    finally:
        finalized.append("closed")


def pump_for(content: AsyncIterator[bytes], **settings: Any) -> ChunkPump:
    return ChunkPump(
        PumpSettings(status_code=200, raw_headers=[], **settings), AsyncIterableProducer(content)
    )


async def test_an_opening_chunk_follows_an_immediate_start() -> None:
    finalized: list[str] = []
    pump = pump_for(never_yields(finalized), start_immediately=True, opening_chunk=b":\n\n")
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
        await anyio.sleep(0.05)
        assert recorder.bodies == [b":\n\n"]
        recorder.disconnect.set()
    assert finalized == ["closed"]
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.DISCONNECTED


async def test_keepalive_chunks_are_sent_only_while_nothing_else_is_sent() -> None:
    async def sparse() -> AsyncIterator[bytes]:
        for _ in range(3):
            await anyio.sleep(0.01)  # busier than the keep-alive interval
            yield b"x"
        await anyio.sleep(0.25)
        yield b"y"

    pump = pump_for(sparse(), keepalive=0.1, keepalive_chunk=b"ping")
    recorder = Recorder()
    await pump.run(http_scope(), recorder.receive, recorder.send)
    bodies = [body for body in recorder.bodies if body]
    assert bodies[:3] == [b"x", b"x", b"x"]
    assert bodies[3:] == [b"ping", b"ping", b"y"]
    pings = [t for t, m in zip(recorder.times, recorder.sent, strict=True) if m.get("body") == b"ping"]
    assert 0.08 < pings[1] - pings[0] < 0.2
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.COMPLETE


async def test_keepalive_does_not_hide_an_idle_timeout() -> None:
    finalized: list[str] = []

    async def then_silent() -> AsyncIterator[bytes]:
        yield b"first"
        async for chunk in never_yields(finalized):
            yield chunk  # pragma: no cover - never reached

    pump = pump_for(then_silent(), keepalive=0.03, keepalive_chunk=b"ping", idle_timeout=0.2)
    recorder = Recorder()
    with pytest.raises(StreamTimeout, match="idle_timeout"):
        await pump.run(http_scope(), recorder.receive, recorder.send)
    assert recorder.bodies[0] == b"first"
    assert 3 <= recorder.bodies.count(b"ping") <= 8
    assert finalized == ["closed"]


def task_names() -> list[str]:
    return sorted(task.get_name() for task in asyncio.all_tasks() if task.get_name() in PUMP_TASKS)


async def test_an_idle_stream_parks_its_sender_and_its_pings_start_it_again() -> None:
    # While nothing is queued an idle event stream holds no sender task (and, on Python
    # 3.11+, no listener task: the response's own task listens); a ping starts one, which
    # parks again after it.
    finalized: list[str] = []
    pump = pump_for(
        never_yields(finalized),
        start_immediately=True,
        opening_chunk=b":\n\n",
        keepalive=0.02,
        keepalive_chunk=b"ping",
    )
    idle = ["streaming_responses.producer"]
    if not ResponseTasks.listens_here:  # Python 3.10
        idle.insert(0, "streaming_responses.listener")
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
        with anyio.fail_after(5):
            while recorder.bodies.count(b"ping") < 3:
                await anyio.sleep(0.005)
            while task_names() != idle:  # between two pings the sender parked
                await anyio.sleep(0.005)
        recorder.disconnect.set()
    assert finalized == ["closed"]
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.DISCONNECTED
    assert task_names() == []


async def test_chunks_after_a_park_start_the_sender_again_and_arrive_in_order() -> None:
    gate = anyio.Event()
    parked = anyio.Event()

    async def bursts() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"
        parked.set()
        await gate.wait()
        yield b"c"
        await anyio.sleep(0.01)
        yield b"d"

    pump = pump_for(bursts())
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
        await parked.wait()
        with anyio.fail_after(5):
            while "streaming_responses.sender" in task_names():
                await anyio.sleep(0.005)
        gate.set()
    assert recorder.body == b"abcd"
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.COMPLETE


async def test_a_late_wake_up_with_nothing_queued_leaves_the_sender_parked_for_the_next_chunk() -> None:
    # A worker thread that saw the sender parked has the queue's wake-up run on the loop; that
    # can happen after the sender took the chunk and parked again, so the wake-up finds nothing
    # queued. The sender must stay parked and still be woken by the next chunk (it once lost
    # its wake-up there, and the stream hung: the demo's sync /count under coverage and load).
    gate = anyio.Event()
    parked = anyio.Event()

    async def bursts() -> AsyncIterator[bytes]:
        yield b"a"
        parked.set()
        await gate.wait()
        yield b"b"

    pump = pump_for(bursts())
    recorder = Recorder()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
            await parked.wait()
            while "streaming_responses.sender" in task_names():
                await anyio.sleep(0.005)
            queue = pump._queue
            assert queue is not None
            queue._wake()  # what a worker thread's late notify runs on the loop
            assert "streaming_responses.sender" not in task_names()
            gate.set()
    assert recorder.body == b"ab"
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.COMPLETE


async def test_a_parked_senders_idle_timeout_ends_the_stream_and_closes_the_producer() -> None:
    finalized: list[str] = []

    async def then_silent() -> AsyncIterator[bytes]:
        yield b"first"
        async for chunk in never_yields(finalized):
            yield chunk  # pragma: no cover - never reached

    pump = pump_for(then_silent(), idle_timeout=0.05, error_chunk=lambda exc: b"error")
    recorder = Recorder()
    with pytest.raises(StreamTimeout, match="idle_timeout"):
        await pump.run(http_scope(), recorder.receive, recorder.send)
    assert recorder.bodies[:2] == [b"first", b"error"]
    assert finalized == ["closed"]
    assert task_names() == []


async def test_a_disconnect_while_the_sender_is_blocked_in_send_interrupts_it() -> None:
    finalized: list[str] = []
    blocked = anyio.Event()
    recorder = Recorder()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data"
                await anyio.lowlevel.checkpoint()
        finally:
            finalized.append("closed")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and recorder.bodies:
            blocked.set()
            await anyio.sleep_forever()  # a client that stopped reading
        await recorder.send(message)

    pump = pump_for(endless())
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, http_scope(), recorder.receive, send)
        await blocked.wait()
        recorder.disconnect.set()
    assert finalized == ["closed"]
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.DISCONNECTED
    assert task_names() == []


async def test_the_total_timeout_interrupts_a_sender_blocked_in_send() -> None:
    blocked = anyio.Event()
    recorder = Recorder()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"data"
            await anyio.lowlevel.checkpoint()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and recorder.bodies:
            blocked.set()
            await anyio.sleep_forever()  # a client that stopped reading
        await recorder.send(message)

    pump = pump_for(endless(), timeout=0.1)
    with pytest.raises(StreamTimeout, match="timeout"):
        await pump.run(http_scope(), recorder.receive, send)
    assert blocked.is_set()
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.TIMEOUT
    assert task_names() == []


async def test_a_cancellation_of_an_idle_stream_from_outside_ends_it_and_leaves_no_task() -> None:
    finalized: list[str] = []
    pump = pump_for(never_yields(finalized), start_immediately=True, opening_chunk=b":\n\n", keepalive=30)
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
        with anyio.fail_after(5):
            while not recorder.bodies:
                await anyio.sleep(0.005)
        group.cancel_scope.cancel()  # the server gives up on the request
    assert finalized == ["closed"]
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.DISCONNECTED
    assert recorder.disconnect.is_set() is False  # it was not the client
    assert task_names() == []


async def test_a_send_that_blocks_past_send_timeout_drops_the_client_and_closes_the_producer() -> None:
    finalized: list[str] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"data"
                await anyio.lowlevel.checkpoint()
        finally:
            finalized.append("closed")

    recorder = Recorder()
    blocked = anyio.Event()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and recorder.bodies:
            blocked.set()
            await anyio.sleep_forever()  # the client stopped reading: the transport is full
        await recorder.send(message)

    pump = pump_for(endless(), send_timeout=0.1, error_chunk=lambda exc: b"never sent")
    begun = time.perf_counter()
    with pytest.raises(StreamTimeout, match="send_timeout"):
        await pump.run(http_scope(), recorder.receive, send)
    assert time.perf_counter() - begun < 2
    assert blocked.is_set()
    assert finalized == ["closed"]
    assert b"never sent" not in recorder.body
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.TIMEOUT


async def test_send_timeout_measures_one_send_not_the_silence_between_sends() -> None:
    # A client whose buffers still take every message (a vanished one, until they fill) is
    # never dropped by send_timeout, however long the stream stays quiet between messages.
    gaps = anyio.Event()

    async def sparse() -> AsyncIterator[bytes]:
        yield b"first"
        await anyio.sleep(0.3)  # three times send_timeout without any send
        gaps.set()
        yield b"second"

    pump = pump_for(sparse(), send_timeout=0.1)
    recorder = Recorder()
    await pump.run(http_scope(), recorder.receive, recorder.send)
    assert gaps.is_set()
    assert recorder.body == b"firstsecond"
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.COMPLETE


async def test_a_duplex_stream_does_not_see_a_disconnect_after_the_body_and_ends_by_its_idle_timeout() -> (
    None
):
    # The documented limit of duplex mode: the producer reads receive() through its Request,
    # so nobody reads the disconnect that follows the body; idle_timeout is what ends it.
    read_all = anyio.Event()
    finalized: list[str] = []
    recorder = Recorder(body_messages=[{"type": "http.request", "body": b"up", "more_body": False}])

    async def echo() -> AsyncIterator[bytes]:
        try:
            message = await recorder.receive()
            yield message["body"].upper()
            read_all.set()
            await anyio.sleep_forever()
            yield b""  # pragma: no cover
        finally:
            finalized.append("closed")

    recorder.disconnect.set()  # the client is gone as soon as the body has been read
    pump = pump_for(echo(), duplex=True, idle_timeout=0.2)
    with pytest.raises(StreamTimeout, match="idle_timeout"):
        await pump.run(http_scope(), recorder.receive, recorder.send)
    assert read_all.is_set()
    assert recorder.body == b"UP"
    assert finalized == ["closed"]
    assert recorder.receive_calls == 1  # the core never read receive() in duplex mode


async def test_an_error_chunk_is_sent_before_the_abort() -> None:
    pump = pump_for(failing_after(b"a"), error_chunk=lambda exc: f"error: {type(exc).__name__}".encode())
    recorder = Recorder()
    with pytest.raises(RuntimeError):
        await pump.run(http_scope(), recorder.receive, recorder.send)
    assert recorder.body == b"aerror: RuntimeError"
    assert not recorder.ended


async def test_an_error_chunk_is_sent_before_error_trailers() -> None:
    pump = pump_for(failing_after(b"a"), error_chunk=lambda exc: b"!")
    recorder = Recorder()
    scope = http_scope(http_version="2", trailers=True, headers=[(b"te", b"trailers")])
    await pump.run(scope, recorder.receive, recorder.send)
    assert recorder.body == b"a!"
    assert recorder.trailers == {b"stream-status": b"error", b"stream-error": b"RuntimeError"}


async def test_an_error_chunk_callback_that_raises_is_logged_and_the_stream_still_aborts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(exc: BaseException) -> bytes:
        raise ValueError("bad encoder")

    pump = pump_for(failing_after(b"a"), error_chunk=broken)
    recorder = Recorder()
    with caplog.at_level(logging.WARNING, logger="streaming_responses"), pytest.raises(RuntimeError):
        await pump.run(http_scope(), recorder.receive, recorder.send)
    assert recorder.body == b"a"
    assert any("error_chunk raised" in record.getMessage() for record in caplog.records)


async def test_pathsend_replaces_the_producer_where_the_server_offers_it() -> None:
    unread = never_yields([])
    pump = pump_for(unread, pathsend="/srv/file.bin", declared_length=1234)
    recorder = Recorder()
    scope = http_scope()
    scope["extensions"]["http.response.pathsend"] = {}
    outcome = await pump.run(scope, recorder.receive, recorder.send)
    assert recorder.headers[b"content-length"] == b"1234"
    assert recorder.sent[1] == {"type": "http.response.pathsend", "path": "/srv/file.bin"}
    assert len(recorder.sent) == 2
    assert isinstance(unread, types.AsyncGeneratorType)
    assert unread.ag_frame is None  # closed without ever running
    assert outcome.kind is Outcome.COMPLETE
    assert outcome.bytes_sent == 1234


async def test_pathsend_is_ignored_where_the_server_does_not_offer_it() -> None:
    pump = ChunkPump(
        PumpSettings(status_code=200, raw_headers=[], pathsend="/srv/file.bin", declared_length=2),
        AsyncIterableProducer(slow_chunks(b"o", b"k")),
    )
    recorder = Recorder()
    await pump.run(http_scope(), recorder.receive, recorder.send)
    assert recorder.body == b"ok"
    assert all(message["type"] != "http.response.pathsend" for message in recorder.sent)


async def test_pathsend_without_a_declared_length_is_refused() -> None:
    finalized: list[str] = []
    pump = pump_for(never_yields(finalized), pathsend="/srv/file.bin")
    recorder = Recorder()
    scope = http_scope()
    scope["extensions"]["http.response.pathsend"] = {}
    with pytest.raises(ResponseStateError, match="declared_length"):
        await pump.run(scope, recorder.receive, recorder.send)
    assert recorder.sent == []


async def test_a_producer_that_hands_over_one_chunk_per_loop_turn_is_still_coalesced() -> None:
    # FastAPI wraps generator path operations so that they await anyio.sleep(0) after each item.
    async def one_per_turn() -> AsyncIterator[bytes]:
        for _ in range(2_000):
            yield b"event\n"
            await anyio.lowlevel.checkpoint()

    recorder = Recorder()
    await run(StreamingResponse(one_per_turn()), recorder)
    assert recorder.body == b"event\n" * 2_000
    assert len(recorder.bodies) < 20


async def test_a_chunk_is_sent_while_the_producer_waits_for_more() -> None:
    release = anyio.Event()

    async def burst_then_wait() -> AsyncIterator[bytes]:
        yield b"first"
        await anyio.lowlevel.checkpoint()
        yield b"second"
        await release.wait()
        yield b"late"

    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(run, StreamingResponse(burst_then_wait()), recorder)
        with anyio.fail_after(1):
            while recorder.body != b"firstsecond":
                await anyio.sleep(0.001)
        release.set()
    assert recorder.body == b"firstsecondlate"


class LoopTurns:
    """Counts event-loop turns: a task that adds one and yields, until stopped."""

    def __init__(self) -> None:
        self.count = 0
        self.running = True

    async def run(self) -> None:
        while self.running:
            self.count += 1
            await asyncio.sleep(0)


async def test_bare_yields_right_after_new_chunks_are_resumed_without_a_loop_turn() -> None:
    async def sleep_after_each(count: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield b"x"
            await asyncio.sleep(0)

    turns = LoopTurns()
    counter = asyncio.ensure_future(turns.run())
    await asyncio.sleep(0)
    queue = ChunkQueue(1 << 30, "utf-8")
    before = turns.count
    await ResumeAfterItems(fill_queue(sleep_after_each(1_000), queue), queue)
    taken = turns.count - before
    turns.running = False
    await counter
    assert queue.take_now() == [b"x"] * 1_000
    # One bare yield in MAX_SKIPPED still goes to the loop, so other tasks keep their turns.
    assert 1_000 // ResumeAfterItems.MAX_SKIPPED <= taken <= 1_000 // ResumeAfterItems.MAX_SKIPPED + 2


async def test_a_bare_yield_that_brought_no_chunk_goes_to_the_loop() -> None:
    # A polling loop must let the task it polls for run, or it would spin for ever.
    flag = {"set": False}
    polled = []

    async def polls() -> AsyncIterator[bytes]:
        yield b"before"
        while not flag["set"]:
            polled.append(True)
            await asyncio.sleep(0)
        yield b"after"

    async def setter() -> None:
        await asyncio.sleep(0)
        flag["set"] = True

    queue = ChunkQueue(1 << 30, "utf-8")
    helper = asyncio.ensure_future(setter())
    with anyio.fail_after(2):
        await ResumeAfterItems(fill_queue(polls(), queue), queue)
    await helper
    assert queue.take_now() == [b"before", b"after"]
    assert len(polled) <= 3  # each poll gave the setter its turn


async def test_cancelling_the_task_reaches_the_wrapped_coroutine_and_its_finally() -> None:
    closed = []

    async def waits_forever() -> AsyncGenerator[bytes, None]:
        try:
            yield b"one"
            await asyncio.sleep(0)
            await asyncio.Event().wait()
            yield b"never"  # pragma: no cover
        finally:
            closed.append(True)

    queue = ChunkQueue(1 << 30, "utf-8")
    iterator = waits_forever()
    task = asyncio.ensure_future(ResumeAfterItems(fill_queue(iterator, queue), queue))
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await iterator.aclose()
    assert closed == [True]
    assert queue.take_now() == [b"one"]
