"""Producers: the code that drives a body source into the core's bounded chunk queue.

This module owns how items are pulled out of iterables, async iterables and writer callbacks,
how each becomes bytes (:func:`coerce_chunk`), and how each kind is closed. It never sees ASGI
``send`` or ``receive``: it fills a :class:`ChunkQueue`, which the core (``_core.py``) drains.
The rule that keeps it simple: a producer only ever pushes to the queue (``await
queue.push(chunk)``, which waits for room when the queue is full); the core only ever takes.

Sync iterables run in worker threads in *batches*: one thread hop carries as many items as the
queue has room for, so a fast generator costs a thread hop per ``message_bytes`` of body, not
per item, while a slow one still hands over each item as soon as it exists.

The loop-turn model
-------------------

On the event loop the producer task and the sender take turns, and the size of each ASGI
message depends on how many chunks the producer queues before the sender runs. Three facts
shape it:

1. A producer that never waits (a fast async generator) keeps the loop until the queue
   reaches its bound (``message_bytes``); then :meth:`ChunkQueue.push` waits for space, the
   sender takes everything in one message, and the producer goes on. Whole messages, no clock.
2. Some producers yield the loop *bare* after each item, asking only that other tasks get a
   turn: FastAPI wraps a generator path operation so that it awaits ``anyio.sleep(0)`` after
   every item. Each such turn would let the sender send one item per message.
   :class:`ResumeAfterItems` resumes a bare yield at once when it comes right after a new
   chunk (at most ``MAX_SKIPPED`` in a row), so those producers fill messages as in 1. A bare
   yield with no new chunk (a polling loop) and every real wait go to the loop as usual.
3. Producers that batch items into larger chunks themselves (CSV rows, JSON lines, template
   fragments) must not hold a batch behind a wait of their source: :class:`IdleHandOver`
   hands the batch over when a whole loop turn passed without progress, and re-arms itself
   while progress goes on, so the bare yields of 2 do not split a batch either. Such a
   producer runs under :class:`ResumeAfterItems` too, counting the items it took in rather
   than chunks, so a bare yield after each item costs no loop turn there either.

So the sender never needs to wait for more: when it wakes, it takes what is queued and sends
it. A chunk is never held back to wait for a later one (guarantee 3).
"""

from __future__ import annotations

import contextvars
import inspect
import threading
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
)
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._exceptions import ResponseStateError
from ._loops import Callback, LoopBackend, Scheduled, Waker, current_loop
from ._types import Writer

#: How long closing a producer may take before the core stops waiting for it.
CLOSE_TIMEOUT = 5.0
#: Worker threads that sync producers of one event loop may run at the same time, together.
#: Their batches hold the GIL while they encode rows; with more of them than this, the event
#: loop waits for the GIL behind each one, and every other request on the server waits too.
PRODUCER_THREADS = 2
#: Seconds after which a batch still in its thread is taken as waiting for its source (a feed
#: blocked on a queue) rather than working: it goes on without its place among
#: ``PRODUCER_THREADS``, so sources that wait never keep the others from starting.
WAITING_BATCH = 0.25

_PRODUCER_LIMITER: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar(
    "streaming_responses_producer_threads"
)


def producer_limiter() -> anyio.CapacityLimiter:
    """The limiter every sync producer of the running event loop shares (one per loop)."""
    try:
        return _PRODUCER_LIMITER.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(PRODUCER_THREADS)
        _PRODUCER_LIMITER.set(limiter)
        return limiter


def coerce_chunk(chunk: object, charset: str) -> bytes:
    """Turn one produced item into body bytes.

    bytes pass through; ``str`` is encoded with the response charset; ``bytearray`` and
    ``memoryview`` are copied (the producer may reuse its buffer after yielding it). Anything
    else is a bug in the producer and raises ``TypeError`` naming the type, never dropped.
    """
    kind = type(chunk)
    if kind is bytes:
        return chunk  # type: ignore[return-value]
    if kind is str:
        return chunk.encode(charset)  # type: ignore[attr-defined,no-any-return]
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, str):
        return chunk.encode(charset)
    raise TypeError(f"a streamed chunk must be bytes, str or memoryview, not {kind.__name__} ({chunk!r:.80})")


class _Ready:
    """An awaitable that is already done: what :meth:`ChunkQueue.push` returns while there is room.

    Awaiting it costs no coroutine and no loop turn, which matters on the hot path.
    """

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, None]:
        return iter(())  # type: ignore[return-value]


_READY = _Ready()


class ChunkQueue:
    """A bounded, single-producer, single-consumer hand-off of body chunks.

    The producer side (``put`` and friends) may run in a worker thread; the consumer side
    (``wait_for_data``, ``take_now``, ``consumed``) runs on the event loop. Instead of a lock,
    each counter has one writer: ``produced`` is written by the producer only and ``taken`` by
    the consumer only, and the waiting flag is raised *before* the consumer looks at the list a
    last time. With CPython's atomic ``list.append`` and slice operations this cannot lose a
    wake-up, and the hot path stays an append and an addition.
    """

    __slots__ = (
        "_consumer_event",
        "_loop",
        "_notify",
        "_parked",
        "_space_event",
        "bound",
        "charset",
        "consumer_waiting",
        "error",
        "finished",
        "items",
        "produced",
        "taken",
    )

    def __init__(self, bound: int, charset: str) -> None:
        self.bound = bound
        self.charset = charset
        self.items: list[bytes] = []
        self.produced = 0
        self.taken = 0
        self.finished = False
        self.error: BaseException | None = None
        self.consumer_waiting = False
        self._consumer_event: Waker | None = None
        self._parked: Callable[[], None] | None = None
        self._space_event: Waker | None = None
        #: How the consumer is woken (``None``: directly, see :meth:`notify_from_thread`).
        self._notify: Callable[[], None] | None = None
        #: The loop seam of the loop this queue was made in (asyncio or trio).
        self._loop: LoopBackend = current_loop()

    # -- producer side -------------------------------------------------------------------

    def put(self, item: object) -> bool:
        """Append one item (coerced to bytes); return whether the queue is now full."""
        chunk = item if type(item) is bytes else coerce_chunk(item, self.charset)
        self.items.append(chunk)
        self.produced += len(chunk)
        if self.consumer_waiting:
            self.wake_consumer()
        return self.produced - self.taken >= self.bound

    def push(self, item: object) -> Awaitable[None]:
        """Append one item (coerced to bytes); await the result, which waits while the queue is full.

        Example::

            await queue.push(b"chunk")
        """
        if self.put(item):
            return self.wait_for_space()
        return _READY

    def space(self) -> Awaitable[None]:
        """Await the result to wait until the queue is below its bound (no wait when it is)."""
        if self.produced - self.taken >= self.bound:
            return self.wait_for_space()
        return _READY

    def wake_consumer(self) -> None:
        """Wake the consumer, which raised ``consumer_waiting`` before it went to sleep."""
        self.consumer_waiting = False
        notify = self._notify
        if notify is None:
            self._wake()
        else:
            notify()

    def finish(self, error: BaseException | None = None) -> None:
        """Mark the end of the body, with the producer's exception if it failed."""
        self.error = error
        self.finished = True
        if self.consumer_waiting:
            self.wake_consumer()

    async def wait_for_space(self) -> None:
        """Wait (on the event loop) until the consumer has taken enough to go below the bound."""
        while self.produced - self.taken >= self.bound:
            signal = self._space_event = self._loop.waker()
            await signal.wait()

    async def wait_until_taken(self) -> None:
        """Wait (on the event loop) until the consumer has taken everything queued so far."""
        while self.produced > self.taken:
            signal = self._space_event = self._loop.waker()
            await signal.wait()

    def full(self) -> bool:
        """Whether the producer must wait for the consumer."""
        return self.produced - self.taken >= self.bound

    def notify_from_thread(self) -> None:
        """Route wake-ups through the event loop: the producer now runs in a worker thread.

        The scheduling function works from the loop's own thread too, where the core marks the
        end of the body.
        """
        call_soon = self._loop.thread_caller()
        wake = self._wake

        def notify() -> None:
            call_soon(wake)

        self._notify = notify

    def _wake(self) -> None:
        parked = self._parked
        if parked is not None:
            self._parked = None
            parked()
            return
        event = self._consumer_event
        if event is not None:
            event.set()

    # -- consumer side -------------------------------------------------------------------

    def take_now(self) -> list[bytes]:
        """Remove and return every chunk produced so far (possibly none)."""
        items = self.items
        count = len(items)
        if not count:
            return []
        taken = items[:count]
        del items[:count]
        return taken

    def consumed(self, nbytes: int) -> None:
        """Record that the consumer took ``nbytes``, and let a waiting producer go on."""
        self.taken += nbytes
        space = self._space_event
        if space is not None and self.produced - self.taken < self.bound:
            self._space_event = None
            space.set()

    def park(self, wake: Callable[[], None]) -> bool:
        """Instead of waiting: have ``wake`` called on the loop once a chunk or the end arrives.

        Return ``False``, with nothing parked, when there is something to take already. A
        consumer that parks holds no task while the producer is quiet (see ``_core``).
        """
        if self.items or self.finished:
            return False
        self._parked = wake
        self.consumer_waiting = True
        # Look once more after raising the flag, as wait_for_data does (a worker thread).
        if self.items or self.finished:
            self.unpark()
            return False
        return True

    def unpark(self) -> None:
        """Drop a parked wake-up: the consumer is back by another way."""
        self._parked = None
        self.consumer_waiting = False

    async def wait_for_data(self, deadline: float | None = None) -> bool:
        """Wait until there are chunks to take or the producer has finished.

        With ``deadline`` (``anyio.current_time()`` clock), give up then: return whether there
        is something to take (or the end) rather than raise.
        """
        while True:
            if self.items or self.finished:
                return True
            signal = self._consumer_event = self._loop.waker()
            self.consumer_waiting = True
            # Look once more after raising the flag: a chunk appended in between is seen here,
            # and one appended after this line finds the flag raised and wakes us.
            if self.items or self.finished:
                self.consumer_waiting = False
                return True
            if not await signal.wait(deadline):
                self.consumer_waiting = False
                return bool(self.items) or self.finished


class IdleHandOver:
    """Hands what a batching producer holds back to the core as soon as its source waits.

    Producers that gather items into larger chunks (CSV rows, template fragments) must not
    hold them behind a wait of their source. After adding to its batch, the producer calls
    :meth:`arm` if ``handle`` is ``None``. The check it schedules runs only while the producer
    is suspended: it records ``progress()``, and once a whole loop turn passed with that
    unchanged, the source is waiting and ``hand_over()`` runs. While progress goes on the
    check re-arms itself, so a bare ``await asyncio.sleep(0)`` between items (FastAPI adds
    one after each) does not split a batch. :meth:`cancel` when the producer ends.

    How many checks in a row make "a whole loop turn" is the loop's (``quiet_checks``): one
    on asyncio, whose ready callbacks run in order; more on trio, which runs the tasks of a
    turn in random order, so two checks can fall between two steps of the producer.
    """

    __slots__ = ("_call_soon", "_hand_over", "_needed", "_progress", "_quiet", "_seen", "handle")

    def __init__(self, progress: Callable[[], int], hand_over: Callable[[], None]) -> None:
        loop = current_loop()
        self._call_soon: Callable[[Callback], Scheduled] = loop.call_soon
        self._needed = loop.quiet_checks
        self._progress = progress
        self._hand_over = hand_over
        self._seen = -1
        self._quiet = 0
        #: The scheduled check, or ``None`` when none is pending.
        self.handle: Scheduled | None = None

    def arm(self) -> None:
        """Schedule the check (call when ``handle`` is ``None``)."""
        self._seen = -1
        self.handle = self._call_soon(self._check)

    def cancel(self) -> None:
        """Drop a pending check."""
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _check(self) -> None:
        progress = self._progress()
        if progress != self._seen:
            self._seen = progress
            self._quiet = 0
        else:
            self._quiet += 1
        if self._quiet < self._needed:
            self.handle = self._call_soon(self._check)
            return
        self.handle = None
        self._hand_over()


class Producer:
    """One body source. Subclasses override :meth:`run` and :meth:`close`."""

    __slots__ = ()

    #: Whether the source runs in worker threads (the core cannot watch it turn by turn).
    in_thread: bool = False

    def run(self, queue: ChunkQueue) -> Awaitable[None]:
        """Await the result to fill ``queue`` until the source ends; exceptions propagate.

        An ``async def`` override is the plain way; one that returns an awaitable it built
        (as :class:`AsyncIterableProducer` does) keeps one coroutine frame fewer alive while
        the source waits, which an idle event stream holds for hours.
        """
        raise NotImplementedError

    async def close(self) -> None:
        """Close the source; runs its ``finally`` blocks. Safe to call more than once."""

    def stop_soon(self) -> None:
        """Ask a producer that runs in a thread to stop after its current item."""

    @property
    def stopped(self) -> bool:
        """Whether :meth:`run` returned because it was stopped, not because the body ended."""
        return False


async def fill_queue(
    iterator: AsyncIterator[Any], queue: ChunkQueue, encode: Callable[[Any], bytes] | None = None
) -> None:
    """Put every item of ``iterator`` into ``queue``, waiting for space at the bound.

    The hot loop of the library, shared by every async producer: ChunkQueue.put inlined.
    ``encode`` turns an item into bytes (an adapter's encoder); without it, items are coerced
    as chunks. It is safe to keep `produced` in a local between awaits, because on the event
    loop the consumer only runs while this task is suspended, and it never reads `produced`
    unless this task waits for space (which writes it back first).
    """
    append = queue.items.append
    charset = queue.charset
    bound = queue.bound
    produced = queue.produced
    limit = queue.taken + bound
    async for item in iterator:
        if encode is not None:
            chunk = encode(item)
        elif type(item) is bytes:
            chunk = item
        else:
            chunk = coerce_chunk(item, charset)
        append(chunk)
        produced += len(chunk)
        if queue.consumer_waiting:
            queue.wake_consumer()
        if produced >= limit:
            limit = queue.taken + bound
            if produced >= limit:
                queue.produced = produced
                await queue.wait_for_space()
                limit = queue.taken + bound
    queue.produced = produced


class ResumeAfterItems:
    """Await a producer's coroutine, resuming it at once when it yields to the loop bare.

    A bare yield (``await asyncio.sleep(0)``, ``anyio.sleep(0)``) asks only for other tasks to
    get a turn. FastAPI adds one after every item of a generator path operation, which would
    cost each event its own loop turn. When such a yield comes right after the producer put
    a new chunk into the queue, the coroutine is resumed without going through the loop, at
    most ``MAX_SKIPPED`` times in a row. Every other yield (a real wait on a future, or a bare
    yield with no new chunk, such as a polling loop) goes to the loop as it would without
    this wrapper. The sender still gets the loop whenever the producer waits for space, and
    at least every ``MAX_SKIPPED`` items, so a fast producer fills whole messages instead of
    one message per item, and a disconnect or cancellation is seen as promptly as before.
    """

    #: Bare yields skipped in a row before one goes to the loop anyway.
    MAX_SKIPPED = 256

    # Awaiting it returns the object itself, an iterator that steps the coroutine: no
    # generator frame is kept while the producer waits (an idle event stream does for hours).
    # Between two steps nothing needs keeping: the count of skipped yields is zero whenever a
    # signal goes to the loop, and what was seen is read again when the loop resumes us.
    __slots__ = ("_coroutine", "_items", "_on_bare_yield", "_progress")

    def __init__(
        self,
        coroutine: Coroutine[Any, Any, None],
        queue: ChunkQueue,
        progress: Callable[[], int] | None = None,
        on_bare_yield: Callable[[], None] | None = None,
    ) -> None:
        self._coroutine = coroutine
        # What counts as a new item: a chunk in the queue (``None``: the queue's length), or
        # (for a producer that batches items itself) its own count of items taken in.
        self._progress = progress
        self._items = queue.items
        #: Called at the first bare yield (once), for what only such producers need.
        self._on_bare_yield = on_bare_yield

    def __await__(self) -> Generator[Any, Any, None]:
        return self

    def __iter__(self) -> ResumeAfterItems:
        return self

    def __next__(self) -> Any:
        return self._step(None, None)

    def send(self, value: Any) -> Any:
        """Resume the coroutine with ``value``; return what it next yields to the loop."""
        return self._step(value, None)

    def throw(self, kind: Any, value: Any = None, traceback: Any = None) -> Any:
        """Throw an exception (a cancellation) into the coroutine; as :meth:`send` after it."""
        error = kind if isinstance(kind, BaseException) else kind() if value is None else value
        if traceback is not None:
            error = error.with_traceback(traceback)
        return self._step(None, error)

    def close(self) -> None:
        """Close the coroutine (the awaiting coroutine is being closed)."""
        self._coroutine.close()

    def _step(self, value: Any, error: BaseException | None) -> Any:
        coroutine = self._coroutine
        progress = self._progress
        items = self._items
        seen = len(items) if progress is None else progress()
        skipped = 0
        while True:
            # StopIteration (the coroutine returned) goes on to the awaiting coroutine.
            if error is None:
                signal = coroutine.send(value)
            else:
                signal, error = coroutine.throw(error), None
            value = None
            if signal is None:
                if self._on_bare_yield is not None:
                    self._on_bare_yield()
                    self._on_bare_yield = None
                if skipped < self.MAX_SKIPPED:
                    now = len(items) if progress is None else progress()
                    if now != seen:
                        seen = now
                        skipped += 1
                        continue
            return signal


class AsyncIterableProducer(Producer):
    """An async iterable, iterated on the event loop in one of the response's child tasks."""

    __slots__ = ("_iterable", "_iterator")

    def __init__(self, iterable: AsyncIterable[Any]) -> None:
        self._iterable = iterable
        self._iterator: AsyncIterator[Any] | None = None

    #: What turns an item into bytes (an adapter sets it); ``None``: items are chunks.
    encode: Callable[[Any], bytes] | None = None

    def run(self, queue: ChunkQueue) -> Awaitable[None]:
        iterator = self._iterator = aiter(self._iterable)
        return ResumeAfterItems(fill_queue(iterator, queue, self.encode), queue)

    async def close(self) -> None:
        # An async generator that was never started has nothing to clean up, but aclose() is
        # still right: it marks the generator finished, so a later iteration cannot run it.
        target: object = self._iterator if self._iterator is not None else self._iterable
        aclose = getattr(target, "aclose", None)
        if aclose is not None:
            await aclose()


class SyncIterableProducer(Producer):
    """A sync iterable, iterated in worker threads, a batch per hop.

    A batch runs until the queue is full, the iterator ends, or :meth:`stop_soon` was called.
    Every batch runs in one :class:`contextvars.Context` copied when the response started, so
    context variables set by middleware are visible, and ones the generator sets persist.

    A thread cannot be interrupted in the middle of ``next()``, and a response must not wait
    for one that blocks (a timeout would then fire only when the item arrives). So a batch
    that is cancelled is abandoned: the response ends at once, and the batch itself closes the
    iterator in its thread as soon as its current item is done. Whoever is last to touch the
    iterator (the batch, or :meth:`close` when no batch runs) closes it, exactly once.

    Batches of every sync producer of a loop share :data:`PRODUCER_THREADS` places
    (:func:`producer_limiter`), so that the event loop keeps its share of the GIL however many
    downloads run. A batch still running after :data:`WAITING_BATCH` seconds gives its place
    up and goes on: the response then waits for the batch's own signal that it returned.
    """

    in_thread = True

    def __init__(self, iterable: Iterable[Any]) -> None:
        self._iterable = iterable
        self._iterator: Iterator[Any] | None = None
        self._stop = False
        self._exhausted = False
        self._in_batch = False
        self._closed = False
        self._lock = threading.Lock()
        self._context = contextvars.copy_context()

    def stop_soon(self) -> None:
        self._stop = True

    @property
    def stopped(self) -> bool:
        return self._stop and not self._exhausted

    async def run(self, queue: ChunkQueue) -> None:
        queue.notify_from_thread()
        self._iterator = iter(self._iterable)
        batch = self._batch
        limiter = producer_limiter()
        loop = current_loop()
        call_soon = loop.thread_caller()
        while not self._exhausted and not self._stop:
            returned = loop.waker()
            hop = self._hop
            with anyio.move_on_after(WAITING_BATCH) as waited:
                await anyio.to_thread.run_sync(
                    batch, queue, hop, returned, call_soon, abandon_on_cancel=True, limiter=limiter
                )
            if waited.cancelled_caught:
                with self._lock:
                    began = self._began == hop
                    self._hop += 1  # a batch of this hop that has not begun never will
                if not began:
                    continue  # it was still waiting for a place: ask again
                # Abandoning the wait gave the place back; the batch goes on in its thread.
                await returned.wait()
            else:
                self._hop += 1
            failure, self._failure = self._failure, None
            if failure is not None:
                raise failure
            await queue.space()

    _failure: BaseException | None = None
    #: The number of the current thread hop, and of the last one whose batch began.
    _hop = 0
    _began = -1

    def _batch(
        self, queue: ChunkQueue, hop: int, returned: Waker, call_soon: Callable[[Callback], object]
    ) -> None:
        # Runs in the worker thread, outside the response's context: only the iteration (and
        # a close) enter it, and never while another thread (close()) could be inside it.
        with self._lock:
            if hop != self._hop:
                return  # the response stopped waiting for this hop before it began
            self._began = hop
            if self._stop:
                call_soon(returned.set)
                return  # stopped before this batch began: close() owns the iterator
            self._in_batch = True
        try:
            self._context.run(self._fill, queue)
        except BaseException as exc:  # raised by run(), also when it no longer waited here
            self._failure = exc
        finally:
            with self._lock:
                self._in_batch = False
                close_here = self._must_close()
            try:
                if close_here:
                    self._context.run(self._close_iterator)
            finally:
                call_soon(returned.set)

    def _fill(self, queue: ChunkQueue) -> None:
        iterator = self._iterator
        assert iterator is not None
        put = queue.put
        for item in iterator:
            if put(item) or self._stop:
                return
        self._exhausted = True

    def _must_close(self) -> bool:
        # Called with the lock held: claim the one close of a stopped, unfinished iterator.
        if self._stop and not self._exhausted and not self._closed and not self._in_batch:
            self._closed = True
            return True
        return False

    def _close_iterator(self) -> None:
        close: Callable[[], object] | None = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    async def close(self) -> None:
        self._stop = True
        if self._iterator is None:
            # Never started: closing runs no user code, so no thread is needed.
            close: Callable[[], object] | None = getattr(self._iterable, "close", None)
            if close is not None:
                close()
            return
        with self._lock:
            close_here = self._must_close()
        if close_here:
            await anyio.to_thread.run_sync(self._context.run, self._close_iterator)


class InMemoryProducer(Producer):
    """A list or tuple: every item already exists, so it is taken on the event loop."""

    def __init__(self, items: list[Any] | tuple[Any, ...]) -> None:
        self._items = items

    async def run(self, queue: ChunkQueue) -> None:
        push = queue.push
        for item in self._items:
            await push(item)


class WriterProducer(Producer):
    """The push style: ``await produce(write)``, where each ``await write(chunk)`` sends a chunk.

    ``write`` waits while the queue is full, which is how a slow client holds the writer back.
    Calling it after the writer returned raises :class:`ResponseStateError`.
    """

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._done = False

    async def run(self, queue: ChunkQueue) -> None:
        push = queue.push

        async def write(chunk: Any) -> None:
            if self._done:
                raise ResponseStateError("write() was called after the writer callback returned")
            await push(chunk)

        try:
            await self._writer(write)
        finally:
            self._done = True


def make_producer(content: object) -> Producer:
    """Pick the producer for a response's ``content``; raise ``TypeError`` if none fits."""
    if isinstance(content, AsyncIterable):
        return AsyncIterableProducer(content)
    if isinstance(content, (list, tuple)):
        return InMemoryProducer(content)
    if isinstance(content, (bytes, bytearray, memoryview, str)):
        raise TypeError(
            f"content must be an iterable of chunks, not a single {type(content).__name__}; "
            "wrap it in a list, or use starlette.responses.Response for a fixed body"
        )
    if isinstance(content, Iterable):
        return SyncIterableProducer(content)
    if inspect.isgeneratorfunction(content) or inspect.isasyncgenfunction(content):
        name = getattr(content, "__name__", "the generator")
        raise TypeError(
            f"content is the generator function {name!r}, not a generator: call it, "
            f"StreamingResponse({name}()), to stream what it yields"
        )
    if callable(content):
        return WriterProducer(content)
    raise TypeError(
        "content must be an iterable, an async iterable or an async writer callable, "
        f"not {type(content).__name__}"
    )


async def close_quietly(producer: Producer, timeout: float = CLOSE_TIMEOUT) -> BaseException | None:
    """Close ``producer`` shielded from cancellation, bounded by ``timeout``.

    Returns the exception raised while closing, if any, so the caller can log it once.
    """
    with anyio.CancelScope(shield=True, deadline=anyio.current_time() + timeout):
        try:
            await producer.close()
        except Exception as exc:
            return exc
    return None
