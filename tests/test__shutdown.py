"""Server shutdown: streams that end on it, the chained signal handlers, end_all_streams()."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from types import FrameType
from typing import Any

import anyio
import pytest
from starlette.background import BackgroundTask

from streaming_responses import (
    Outcome,
    ShutdownPolicy,
    StreamingResponse,
    StreamShutdown,
    end_all_streams,
)
from streaming_responses._core import ChunkPump, PumpSettings
from streaming_responses._producers import AsyncIterableProducer
from streaming_responses._shutdown import DEFAULT_ACTION_DELAY, REGISTRY
from streaming_responses._types import Message
from tests.asgi import Recorder, http_scope

pytestmark = pytest.mark.anyio


async def ticking(finalized: list[str], first: bytes = b"tick\n") -> AsyncIterator[bytes]:
    try:
        yield first
        while True:
            await anyio.sleep(3600)
            yield b"never\n"  # pragma: no cover - ended long before
    finally:
        finalized.append("closed")


def endless_pump(finalized: list[str], policy: ShutdownPolicy, **settings: Any) -> ChunkPump:
    return ChunkPump(
        PumpSettings(status_code=200, raw_headers=[], shutdown=policy, **settings),
        AsyncIterableProducer(ticking(finalized)),
    )


async def run_expecting_shutdown(pump: ChunkPump, recorder: Recorder, send: Any = None) -> None:
    with pytest.raises(StreamShutdown):
        await pump.run(http_scope(), recorder.receive, send or recorder.send)


async def started(recorder: Recorder) -> None:
    with anyio.fail_after(2):
        while not recorder.bodies:
            await anyio.sleep(0.005)


async def test_end_all_streams_ends_an_end_stream_with_its_last_chunk_and_a_terminated_body() -> None:
    finalized: list[str] = []
    pump = endless_pump(finalized, ShutdownPolicy.END, shutdown_chunk=b"bye\n")
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
        await started(recorder)
        assert end_all_streams() == 1
    assert recorder.body == b"tick\nbye\n"
    assert recorder.ended
    assert finalized == ["closed"]
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.SHUTDOWN
    assert pump.outcome.error is None


async def test_an_end_stream_reports_success_in_trailers_where_they_reach_the_client() -> None:
    pump = endless_pump([], ShutdownPolicy.END)
    recorder = Recorder()
    scope = http_scope(http_version="2", trailers=True, headers=[(b"te", b"trailers")])
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, scope, recorder.receive, recorder.send)
        await started(recorder)
        end_all_streams()
    assert recorder.ended
    assert recorder.trailers == {b"stream-status": b"complete"}


async def test_an_end_stream_that_has_not_started_sends_headers_and_an_empty_body() -> None:
    async def silent() -> AsyncIterator[bytes]:
        await anyio.sleep(3600)
        yield b"never"  # pragma: no cover - ended long before

    pump = ChunkPump(
        PumpSettings(status_code=200, raw_headers=[], shutdown=ShutdownPolicy.END),
        AsyncIterableProducer(silent()),
    )
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
        await anyio.sleep(0.02)
        assert end_all_streams() == 1
    assert recorder.start["status"] == 200
    assert recorder.body == b""
    assert recorder.ended


async def test_an_abort_stream_is_cut_off_so_it_cannot_look_complete() -> None:
    finalized: list[str] = []
    pump = endless_pump(finalized, ShutdownPolicy.ABORT, shutdown_chunk=b"bye\n")
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(run_expecting_shutdown, pump, recorder)
        await started(recorder)
        end_all_streams()
    assert recorder.body == b"tick\n"
    assert not recorder.ended
    assert finalized == ["closed"]
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.SHUTDOWN
    assert isinstance(pump.outcome.error, StreamShutdown)


async def test_an_end_stream_whose_client_stopped_reading_is_cut_off_after_its_send_timeout() -> None:
    pump = endless_pump([], ShutdownPolicy.END, shutdown_chunk=b"bye\n", send_timeout=0.1)
    recorder = Recorder()

    async def stuck_after_first(message: Message) -> None:
        if recorder.bodies:
            await anyio.sleep_forever()
        await recorder.send(message)

    async with anyio.create_task_group() as group:
        group.start_soon(run_expecting_shutdown, pump, recorder, stuck_after_first)
        await started(recorder)
        end_all_streams()
    assert not recorder.ended


async def test_streams_that_wait_for_the_server_are_left_alone() -> None:
    finalized: list[str] = []
    response = StreamingResponse(ticking(finalized))
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(response, http_scope(), recorder.receive, recorder.send)
        await started(recorder)
        assert end_all_streams() == 0
        await anyio.sleep(0.02)
        assert finalized == []
        recorder.disconnect.set()
    assert finalized == ["closed"]


async def test_on_shutdown_accepts_the_policy_names_and_refuses_others() -> None:
    assert StreamingResponse([b""], on_shutdown="end").on_shutdown is ShutdownPolicy.END
    assert StreamingResponse([b""], on_shutdown=ShutdownPolicy.ABORT).on_shutdown is ShutdownPolicy.ABORT
    with pytest.raises(ValueError, match="on_shutdown must be one of 'wait', 'end', 'abort', not 'later'"):
        StreamingResponse([b""], on_shutdown="later")


async def test_a_streaming_response_can_end_on_shutdown() -> None:
    response = StreamingResponse(ticking([]), on_shutdown="end")
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(response, http_scope(), recorder.receive, recorder.send)
        await started(recorder)
        end_all_streams()
    assert recorder.ended
    assert response.outcome is not None
    assert response.outcome.kind is Outcome.SHUTDOWN


@pytest.fixture
def server_sigterm_handler() -> Iterator[list[int]]:
    """Stand in for a server's own SIGTERM handler; put the real one back afterwards."""
    calls: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    original = signal.signal(signal.SIGTERM, handler)
    try:
        yield calls
    finally:
        signal.signal(signal.SIGTERM, original)


async def test_sigterm_ends_open_streams_and_still_reaches_the_servers_handler(
    server_sigterm_handler: list[int],
) -> None:
    server_handler = signal.getsignal(signal.SIGTERM)
    recorders = [Recorder() for _ in range(3)]
    pumps = [endless_pump([], ShutdownPolicy.END, shutdown_chunk=b"bye\n") for _ in recorders]
    async with anyio.create_task_group() as group:
        for pump, recorder in zip(pumps, recorders, strict=True):
            group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
        for recorder in recorders:
            await started(recorder)
        assert signal.getsignal(signal.SIGTERM) != server_handler  # ours, chained
        signal.raise_signal(signal.SIGTERM)
    assert server_sigterm_handler == [signal.SIGTERM]
    assert all(recorder.ended and recorder.body.endswith(b"bye\n") for recorder in recorders)
    # The last stream gone, the server's handler is back and nothing is left registered.
    assert signal.getsignal(signal.SIGTERM) == server_handler
    assert REGISTRY.end_all() == 0


async def test_a_stream_opening_after_the_shutdown_signal_ends_at_once(
    server_sigterm_handler: list[int],
) -> None:
    first = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(endless_pump([], ShutdownPolicy.END).run, http_scope(), first.receive, first.send)
        await started(first)
        signal.raise_signal(signal.SIGTERM)
        late = Recorder()
        late_pump = endless_pump([], ShutdownPolicy.END)
        with anyio.fail_after(2):
            await late_pump.run(http_scope(), late.receive, late.send)
    assert late.ended
    assert late_pump.outcome is not None
    assert late_pump.outcome.kind is Outcome.SHUTDOWN


def test_streams_outside_the_main_thread_install_no_handler_but_can_be_ended() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: dict[str, Any] = {}

    async def main() -> None:
        recorder = Recorder()
        pump = endless_pump([], ShutdownPolicy.END)
        async with anyio.create_task_group() as group:
            group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
            await started(recorder)
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["ended"] = end_all_streams()
        seen["complete"] = recorder.ended

    thread = threading.Thread(target=anyio.run, args=(main,))
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert seen == {"handler": before, "ended": 1, "complete": True}


async def test_an_end_stream_cancelled_by_the_server_still_ends_its_body_cleanly() -> None:
    # hypercorn's worker processes get no signal: after --graceful-timeout they cancel.
    finalized: list[str] = []
    pump = endless_pump(finalized, ShutdownPolicy.END, shutdown_chunk=b"bye\n")
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
        await started(recorder)
        group.cancel_scope.cancel()
    assert recorder.body == b"tick\nbye\n"
    assert recorder.ended
    assert finalized == ["closed"]
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.SHUTDOWN


async def test_a_wait_stream_cancelled_by_the_server_is_a_disconnect_and_stays_unterminated() -> None:
    pump = endless_pump([], ShutdownPolicy.WAIT)
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(pump.run, http_scope(), recorder.receive, recorder.send)
        await started(recorder)
        group.cancel_scope.cancel()
    assert not recorder.ended
    assert pump.outcome is not None
    assert pump.outcome.kind is Outcome.DISCONNECTED


async def test_background_tasks_run_after_a_clean_shutdown_end() -> None:
    ran: list[str] = []

    async def note() -> None:
        ran.append("background")

    response = StreamingResponse(ticking([]), on_shutdown="end", background=BackgroundTask(note))
    recorder = Recorder()
    async with anyio.create_task_group() as group:
        group.start_soon(response, http_scope(), recorder.receive, recorder.send)
        await started(recorder)
        end_all_streams()
    assert ran == ["background"]


def test_outside_a_hypercorn_worker_there_is_no_master_event_to_watch() -> None:
    from streaming_responses._shutdown import master_shutdown_event

    assert master_shutdown_event() is None


def test_the_master_watch_calls_back_once_the_event_is_set_and_not_after_it_was_stopped() -> None:
    import threading as _threading

    from streaming_responses._shutdown import MasterWatch

    event = _threading.Event()
    called = _threading.Event()
    watch = MasterWatch(event, called.set)
    event.set()
    assert called.wait(10)
    watch.stop()

    quiet = _threading.Event()
    calls: list[int] = []
    stopped = MasterWatch(quiet, lambda: calls.append(1))
    stopped.stop()
    quiet.set()
    stopped._thread.join(10)
    assert calls == []


DYING_PROCESS = """
import asyncio, sys
from streaming_responses._shutdown import REGISTRY

async def main():
    loop = asyncio.get_running_loop()

    async def end():
        await asyncio.sleep(float(sys.argv[1]))  # a stream that takes a while to end
        print("stream ended", flush=True)
        REGISTRY.unregister(stopper)

    def stopper():
        loop.create_task(end())

    REGISTRY.register(stopper)
    print("ready", flush=True)
    await asyncio.sleep(30)

asyncio.run(main())
"""


def run_dying_process(ends_after: float, signals: int) -> tuple[int, str, float]:
    """A process whose SIGTERM is at its default, with one open stream; ``signals`` SIGTERMs."""
    command = [sys.executable, "-c", DYING_PROCESS, str(ends_after)]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
            signalled = time.monotonic()
            for _ in range(signals):
                process.send_signal(signal.SIGTERM)
                time.sleep(0.05)
            returncode = process.wait(10)
            return returncode, process.stdout.read(), time.monotonic() - signalled
        finally:
            if process.poll() is None:
                process.kill()


def test_a_process_that_dies_of_sigterm_ends_its_streams_first_even_when_signalled_again() -> None:
    # A hypercorn worker leaves SIGTERM at its default, and its master terminates every worker
    # (a second SIGTERM) as soon as one of them exited: the streams still end, then it dies.
    returncode, output, _ = run_dying_process(ends_after=0.5, signals=2)
    assert output == "stream ended\n"
    assert returncode == -signal.SIGTERM


def test_a_process_whose_streams_do_not_end_still_dies_of_sigterm_after_the_delay() -> None:
    returncode, output, elapsed = run_dying_process(ends_after=20, signals=2)
    assert output == ""
    assert returncode == -signal.SIGTERM
    assert DEFAULT_ACTION_DELAY <= elapsed < DEFAULT_ACTION_DELAY + 5
