"""The loop seam: the same behaviour on asyncio and on trio, and the library's guarantees on trio.

Every test here runs twice, once per backend (``anyio_backend`` is parametrized), so what the
core relies on (wake-ups with deadlines, loop callbacks, thread wake-ups, child tasks, the
shutdown registry) is checked on trio without a server; the e2e suite checks it again on
hypercorn ``-k trio``.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from starlette.exceptions import HTTPException

from streaming_responses import (
    CSVResponse,
    EventSourceResponse,
    Outcome,
    ServerSentEvent,
    StreamingResponse,
    StreamOutcome,
    end_all_streams,
)
from streaming_responses._loop_asyncio import Timers
from streaming_responses._loops import ResponseTasks, current_loop
from streaming_responses._producers import ChunkQueue, IdleHandOver
from streaming_responses._types import Message, Receive
from tests.asgi import Recorder, http_scope

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


async def test_the_backend_is_the_one_of_the_running_loop(anyio_backend: str) -> None:
    assert current_loop().name == anyio_backend


def test_outside_of_any_loop_the_seam_refuses_with_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="asyncio or trio event loop"):
        current_loop()


async def test_a_waker_wakes_its_waiter_and_reports_a_deadline_that_passed() -> None:
    loop = current_loop()
    expired = loop.waker()
    began = anyio.current_time()
    assert await expired.wait(anyio.current_time() + 0.05) is False
    assert anyio.current_time() - began >= 0.045
    woken = loop.waker()
    loop.call_soon(woken.set)
    assert await woken.wait(anyio.current_time() + 30) is True
    woken.set()  # setting twice is harmless
    assert await woken.wait() is True


async def test_waiting_for_data_until_a_deadline_says_whether_any_came() -> None:
    queue = ChunkQueue(1024, "utf-8")
    began = anyio.current_time()
    assert await queue.wait_for_data(anyio.current_time() + 0.05) is False
    assert anyio.current_time() - began >= 0.045
    assert not queue.consumer_waiting
    async with anyio.create_task_group() as group:

        async def late() -> None:
            await anyio.sleep(0.01)
            queue.put(b"late")

        group.start_soon(late)
        assert await queue.wait_for_data(anyio.current_time() + 30) is True
    assert queue.take_now() == [b"late"]


async def test_a_worker_thread_wakes_the_consumer_through_the_loop() -> None:
    queue = ChunkQueue(1024, "utf-8")
    queue.notify_from_thread()

    def later() -> None:
        time.sleep(0.02)
        queue.put(b"from a thread")

    thread = threading.Thread(target=later)
    thread.start()
    try:
        assert await queue.wait_for_data(anyio.current_time() + 30) is True
    finally:
        await anyio.to_thread.run_sync(thread.join)
    assert queue.take_now() == [b"from a thread"]
    queue.finish()  # on the loop thread too
    assert await queue.wait_for_data() is True


async def test_a_scheduled_call_runs_after_the_ready_tasks_and_a_cancelled_one_never() -> None:
    loop = current_loop()
    ran: list[str] = []
    loop.call_soon(lambda: ran.append("kept"))
    dropped = loop.call_soon(lambda: ran.append("dropped"))
    dropped.cancel()
    assert ran == []
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    assert ran == ["kept"]


async def test_the_idle_hand_over_waits_while_progress_goes_on_and_fires_once_it_stops() -> None:
    progress = [0]
    handed: list[int] = []
    idle = IdleHandOver(lambda: progress[0], lambda: handed.append(progress[0]))
    idle.arm()
    for _ in range(5):  # an item per loop turn, as after FastAPI's sleep(0)
        progress[0] += 1
        await anyio.lowlevel.checkpoint()
    assert handed == []
    for _ in range(10):  # the source waits
        await anyio.lowlevel.checkpoint()
        if handed:
            break
    assert handed == [5]
    assert idle.handle is None
    idle.arm()
    idle.cancel()
    for _ in range(5):
        await anyio.lowlevel.checkpoint()
    assert handed == [5]


async def listen(
    tasks: ResponseTasks, receive: Receive, heard: Callable[[Message | Exception], bool]
) -> None:
    """Listen as the core does: in the response's own task where the loop allows it."""
    if not tasks.listens_here:
        tasks.listen(receive, heard)
        return
    while not tasks.woken:
        tasks.receiving()
        try:
            message: Message | Exception = await receive()
        except BaseException as exc:
            if tasks.received(exc):
                return
            if not isinstance(exc, Exception):
                raise
            message = exc
        else:
            tasks.received()
        if not heard(message):
            return


async def test_leaving_the_block_cancels_every_child_and_waits_for_it() -> None:
    states: list[str] = []

    async def forever(name: str) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            states.append(name)

    async def producer(tasks: ResponseTasks) -> None:
        with tasks.producer_scope():
            await forever("producer")

    async with current_loop().response_tasks() as tasks:
        tasks.start_producer(producer(tasks))
        tasks.start_sender(forever("sender"))
        await anyio.sleep(0.01)
    assert sorted(states) == ["producer", "sender"]


async def test_the_response_hears_each_message_until_it_stops_listening_then_waits_for_its_wake() -> None:
    messages: list[Message] = [
        {"type": "http.request", "body": b"x", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]
    heard: list[object] = []
    disconnected = anyio.Event()

    async def receive() -> Message:
        return messages.pop(0)

    def hear(message: Message | Exception) -> bool:
        heard.append(message)
        if isinstance(message, dict) and message["type"] == "http.disconnect":
            disconnected.set()
            return False
        return True

    async with current_loop().response_tasks() as tasks:
        await listen(tasks, receive, hear)
        await disconnected.wait()
        current_loop().call_soon(tasks.wake)
        await tasks.wait()
        assert tasks.woken
        assert not tasks.expired
    assert [message["type"] for message in heard if isinstance(message, dict)] == [
        "http.request",
        "http.request",
        "http.disconnect",
    ]


async def test_an_exception_of_receive_is_heard_and_listening_ends() -> None:
    heard: list[object] = []

    async def receive() -> Message:
        raise OSError("the server's receive broke")

    def hear(message: Message | Exception) -> bool:
        heard.append(message)
        return False  # as the core's: a broken receive() is not awaited again

    async with current_loop().response_tasks() as tasks:
        await listen(tasks, receive, hear)
        while not heard:
            await anyio.lowlevel.checkpoint()
        tasks.wake()
        await tasks.wait()
    assert len(heard) == 1
    assert isinstance(heard[0], OSError)


async def test_a_wake_ends_the_wait_while_receive_is_pending_and_receive_is_cancelled() -> None:
    cancelled: list[bool] = []
    waiting = anyio.Event()

    async def receive() -> Message:
        waiting.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async with current_loop().response_tasks() as tasks:
        async with anyio.create_task_group() as group:

            async def wake_when_waiting() -> None:
                await waiting.wait()
                tasks.wake()

            group.start_soon(wake_when_waiting)
            await listen(tasks, receive, lambda message: True)
            if not tasks.woken:
                await tasks.wait()
        assert tasks.woken
    assert cancelled == [True]


async def test_a_listener_task_hears_each_message_until_told_to_stop() -> None:
    # Where the response's task does not listen itself (trio; asyncio on Python 3.10).
    messages: list[Message] = [
        {"type": "http.request", "body": b"x", "more_body": True},
        {"type": "http.disconnect"},
        {"type": "http.disconnect"},
    ]
    heard: list[object] = []
    stopped = anyio.Event()

    async def receive() -> Message:
        return messages.pop(0)

    def hear(message: Message | Exception) -> bool:
        heard.append(message)
        if isinstance(message, dict) and message["type"] == "http.disconnect":
            stopped.set()
            return False
        return True

    async with current_loop().response_tasks() as tasks:
        tasks.listen(receive, hear)
        await stopped.wait()
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
    assert heard == [{"type": "http.request", "body": b"x", "more_body": True}, {"type": "http.disconnect"}]
    assert messages == [{"type": "http.disconnect"}]  # not received again after the stop


async def test_a_listener_task_hands_over_what_receive_raised() -> None:
    heard: list[object] = []
    stopped = anyio.Event()

    async def receive() -> Message:
        raise OSError("the server's receive broke")

    def hear(message: Message | Exception) -> bool:
        heard.append(message)
        stopped.set()
        return True

    async with current_loop().response_tasks() as tasks:
        tasks.listen(receive, hear)
        await stopped.wait()
    assert len(heard) == 1
    assert isinstance(heard[0], OSError)


async def test_the_deadline_wakes_the_response_and_says_so() -> None:
    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    async with current_loop().response_tasks() as tasks:
        tasks.wake_at(anyio.current_time() + 0.02)
        await listen(tasks, receive, lambda message: True)
        if not tasks.woken:
            await tasks.wait()
        assert tasks.expired


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 listens in a task (no Task.cancelling)")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio's listener is a task of its own
async def test_a_cancellation_from_elsewhere_while_receive_is_pending_is_not_taken_for_a_wake(
    anyio_backend: str,
) -> None:
    waiting = asyncio.Event()
    outcome: list[str] = []

    async def receive() -> Message:
        waiting.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    async def response() -> None:
        async with current_loop().response_tasks() as tasks:
            try:
                await listen(tasks, receive, lambda message: True)
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
            outcome.append("woken")  # pragma: no cover - must not be reached

    task = asyncio.ensure_future(response())
    await waiting.wait()
    task.cancel()  # the server cancels the response
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["cancelled"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 listens in a task (no Task.cancelling)")
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio's listener is a task of its own
async def test_a_server_cancellation_in_the_same_turn_as_a_wake_still_cancels_the_response(
    anyio_backend: str,
) -> None:
    waiting = asyncio.Event()
    outcome: list[str] = []
    holder: list[ResponseTasks] = []

    async def receive() -> Message:
        waiting.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    async def response() -> None:
        async with current_loop().response_tasks() as tasks:
            holder.append(tasks)
            try:
                await listen(tasks, receive, lambda message: True)
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
            outcome.append("woken")

    task = asyncio.ensure_future(response())
    await waiting.wait()
    task.cancel()  # the server cancels the response ...
    holder[0].wake()  # ... and the body ends, before the task runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["cancelled"]


async def test_a_cancellation_of_the_block_goes_on_only_after_the_producers_shielded_cleanup() -> None:
    finished: list[str] = []
    entered = anyio.Event()

    async def slow_to_close(tasks: ResponseTasks) -> None:
        with tasks.producer_scope():
            try:
                entered.set()
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):  # as the pump's close of a producer is
                    await anyio.sleep(0.05)
                    finished.append("producer")

    async def block() -> None:
        async with current_loop().response_tasks() as tasks:
            tasks.start_producer(slow_to_close(tasks))
            await anyio.sleep_forever()

    async with anyio.create_task_group() as group:
        group.start_soon(block)
        await entered.wait()
        group.cancel_scope.cancel()
    assert finished == ["producer"]


async def test_leaving_the_block_lets_a_shielded_cleanup_in_the_producer_run_to_its_end() -> None:
    # A producer whose own cleanup is shielded (closing a sync generator in a thread) must be
    # closed by the time the block ends, not left for the garbage collector.
    steps: list[str] = []
    entered = anyio.Event()

    async def closes_in_a_thread(tasks: ResponseTasks) -> None:
        with tasks.producer_scope(), anyio.CancelScope(shield=True):
            entered.set()
            await anyio.to_thread.run_sync(time.sleep, 0.05)
            steps.append("closed")

    async with current_loop().response_tasks() as tasks:
        tasks.start_producer(closes_in_a_thread(tasks))
        await entered.wait()  # the block ends while the producer is inside its shielded close
    assert steps == ["closed"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio runs a task up to its first checkpoint
async def test_a_producer_that_never_began_ends_without_running_or_a_warning(anyio_backend: str) -> None:
    ran: list[bool] = []

    async def job() -> None:
        ran.append(True)  # pragma: no cover - must not run

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with current_loop().response_tasks() as tasks:
            tasks.start_producer(job())
        gc.collect()
    assert ran == []


async def test_a_sender_started_while_the_block_is_being_left_never_runs() -> None:
    ran: list[bool] = []

    async def job() -> None:
        ran.append(True)  # pragma: no cover - must not run

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        async with current_loop().response_tasks() as tasks:
            pass
        if current_loop().parking() is not None:  # only a parking sender is started late
            tasks.start_sender(job())
        gc.collect()
    assert ran == []


async def test_parking_timers_are_shared_by_the_loop_on_asyncio_and_absent_on_trio(
    anyio_backend: str,
) -> None:
    loop = current_loop()
    if anyio_backend == "trio":
        assert loop.parking() is None  # the sender waits in its task there
    else:
        assert loop.parking() is loop.parking()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # parking timers exist on asyncio only
async def test_the_timer_heap_runs_due_callbacks_in_deadline_order_and_never_a_cancelled_one(
    anyio_backend: str,
) -> None:
    timers = current_loop().parking()
    assert timers is not None
    ran: list[str] = []
    now = timers.time()
    timers.call_at(now + 0.03, lambda: ran.append("third"))
    timers.call_at(now + 0.01, lambda: ran.append("first"))
    dropped = timers.call_at(now + 0.015, lambda: ran.append("dropped"))
    timers.call_at(now + 0.02, lambda: ran.append("second"))
    dropped.cancel()
    dropped.cancel()  # cancelling twice is harmless
    with anyio.fail_after(5):
        while len(ran) < 3:
            await anyio.sleep(0.005)
    assert ran == ["first", "second", "third"]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # parking timers exist on asyncio only
async def test_the_timer_heap_rebuilds_itself_when_cancelled_entries_are_most_of_it(
    anyio_backend: str,
) -> None:
    timers = current_loop().parking()
    assert isinstance(timers, Timers)
    ran: list[int] = []
    far = timers.time() + 3600
    entries = [timers.call_at(far + n, lambda n=n: ran.append(n)) for n in range(100)]  # type: ignore[misc]
    for entry in entries[:90]:
        entry.cancel()
    assert len(timers) == 10
    assert timers.heap_size() < 100  # the cancelled ones were dropped, not kept until their time
    soon = timers.call_at(timers.time() + 0.01, lambda: ran.append(-1))
    with anyio.fail_after(5):
        while not ran:
            await anyio.sleep(0.005)
    assert ran == [-1]
    soon.cancel()  # after it ran: harmless
    for entry in entries[90:]:
        entry.cancel()
    assert len(timers) == 0


# -- the guarantees on both loops ------------------------------------------------------------


async def run(response: StreamingResponse, recorder: Recorder | None = None) -> Recorder:
    recorder = recorder or Recorder()
    await response(http_scope(), recorder.receive, recorder.send)
    return recorder


async def test_a_sync_generator_that_waits_between_items_streams_every_item() -> None:
    def slow() -> Iterator[bytes]:
        for n in range(3):
            time.sleep(0.01)
            yield f"{n}\n".encode()

    outcomes: list[StreamOutcome] = []
    recorder = await run(StreamingResponse(slow(), on_outcome=outcomes.append))
    assert recorder.body == b"0\n1\n2\n"
    assert recorder.ended
    assert outcomes[0].kind is Outcome.COMPLETE


async def test_a_csv_from_a_sync_source_that_waits_streams_every_row() -> None:
    def rows() -> Iterator[tuple[int, str]]:
        for n in range(3):
            time.sleep(0.01)
            yield (n, "x")

    recorder = await run(CSVResponse(rows(), columns=("n", "v")))
    assert recorder.body == b"n,v\r\n0,x\r\n1,x\r\n2,x\r\n"


async def test_a_csv_from_an_async_source_hands_over_rows_when_the_source_waits() -> None:
    async def rows() -> AsyncIterator[tuple[int, str]]:
        for n in range(3):
            yield (n, "x")
            await anyio.sleep(0.01)

    recorder = await run(CSVResponse(rows(), header=False))
    assert recorder.body == b"0,x\r\n1,x\r\n2,x\r\n"
    assert len(recorder.bodies) >= 3  # handed over row by row, not held back for the batch


async def test_an_event_stream_ends_cleanly_with_its_last_event_on_shutdown() -> None:
    opened = anyio.Event()

    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent("hello")
        opened.set()
        await anyio.sleep_forever()

    response = EventSourceResponse(events(), shutdown_event=ServerSentEvent("bye", event="bye"))
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(run, response, recorder)
        await opened.wait()
        await anyio.lowlevel.checkpoint()
        assert end_all_streams() == 1
    assert recorder.ended
    assert recorder.body.endswith(b"event: bye\ndata: bye\n\n")
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.SHUTDOWN


async def test_an_http_exception_before_the_first_item_propagates_on_both_loops() -> None:
    def missing() -> Iterator[bytes]:
        raise HTTPException(404, "no such model")
        yield b""  # pragma: no cover

    recorder = Recorder()
    with pytest.raises(HTTPException):
        await run(StreamingResponse(missing()), recorder)
    assert recorder.sent == []


async def test_send_timeout_is_refused_at_construction_on_trio_but_kept_on_asyncio(
    anyio_backend: str,
) -> None:
    async def events() -> AsyncIterator[str]:
        yield "x"

    if anyio_backend == "trio":
        with pytest.raises(ValueError, match="send_timeout cannot work on trio"):
            EventSourceResponse(events(), send_timeout=1)
    else:
        assert EventSourceResponse(events(), send_timeout=1).send_timeout == 1.0


async def test_a_disconnect_after_the_last_body_message_was_handed_over_is_still_a_complete_stream() -> None:
    # A server may check for cancellation after it wrote the last bytes (hypercorn on trio):
    # the client that read them and left at once must not turn the stream into a disconnect.
    recorder = Recorder()

    async def send(message: Message) -> None:
        await recorder.send(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            recorder.disconnect.set()  # the client read the end and closed
            await anyio.sleep(0.05)  # the server's own bookkeeping after the write

    async def body() -> AsyncIterator[bytes]:
        yield b"one"
        await anyio.sleep(0.01)
        yield b"two"

    response = StreamingResponse(body())
    await response(http_scope(), recorder.receive, send)
    assert recorder.ended
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.COMPLETE
