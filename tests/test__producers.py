"""Producers: how an item becomes body bytes, and how sync producers share worker threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import anyio
import anyio.lowlevel
import pytest

from streaming_responses import StreamingResponse
from streaming_responses._producers import PRODUCER_THREADS, coerce_chunk
from tests.asgi import Recorder, http_scope


def test_coerce_chunk_passes_bytes_through_unchanged() -> None:
    chunk = b"abc"
    assert coerce_chunk(chunk, "utf-8") is chunk


def test_coerce_chunk_encodes_text_with_the_charset() -> None:
    assert coerce_chunk("é", "utf-8") == b"\xc3\xa9"
    assert coerce_chunk("é", "latin-1") == b"\xe9"


def test_coerce_chunk_copies_buffers_the_producer_may_reuse() -> None:
    buffer = bytearray(b"abc")
    view = memoryview(buffer)
    assert coerce_chunk(view, "utf-8") == b"abc"
    assert coerce_chunk(buffer, "utf-8") == b"abc"
    assert type(coerce_chunk(view, "utf-8")) is bytes


def test_coerce_chunk_accepts_subclasses_of_str() -> None:
    class Text(str):
        pass

    assert coerce_chunk(Text("hi"), "utf-8") == b"hi"


@pytest.mark.parametrize(("chunk", "name"), [(1, "int"), (None, "NoneType"), ({"a": 1}, "dict")])
def test_coerce_chunk_rejects_other_types_naming_them(chunk: object, name: str) -> None:
    with pytest.raises(TypeError, match=f"must be bytes, str or memoryview, not {name}"):
        coerce_chunk(chunk, "utf-8")


# -- sync producers share a few threads ------------------------------------------------------


@pytest.mark.anyio
async def test_no_more_than_the_shared_number_of_batches_work_at_once() -> None:

    lock = threading.Lock()
    running = [0]
    most = [0]

    def busy() -> Iterator[bytes]:
        for _ in range(20):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            deadline = time.perf_counter() + 0.002  # CPU-bound work, well under WAITING_BATCH
            while time.perf_counter() < deadline:
                pass
            with lock:
                running[0] -= 1
            yield b"x" * 70_000  # a full queue: one item per batch

    async def one() -> None:
        recorder = Recorder()
        await StreamingResponse(busy())(http_scope(), recorder.receive, recorder.send)
        assert len(recorder.body) == 20 * 70_000

    async with anyio.create_task_group() as group:
        for _ in range(PRODUCER_THREADS * 3):
            group.start_soon(one)
    assert most[0] <= PRODUCER_THREADS


@pytest.mark.anyio
async def test_sources_that_wait_do_not_keep_another_sync_producer_from_streaming() -> None:

    release = threading.Event()

    def waits() -> Iterator[bytes]:
        release.wait(30)  # a feed blocked on its queue
        yield b"late"

    def quick() -> Iterator[bytes]:
        yield b"quick"

    async def waiting_stream() -> None:
        recorder = Recorder()
        await StreamingResponse(waits())(http_scope(), recorder.receive, recorder.send)

    async with anyio.create_task_group() as group:
        for _ in range(PRODUCER_THREADS + 2):
            group.start_soon(waiting_stream)
        await anyio.lowlevel.checkpoint()
        recorder = Recorder()
        with anyio.fail_after(10):
            await StreamingResponse(quick())(http_scope(), recorder.receive, recorder.send)
        release.set()
    assert recorder.body == b"quick"
