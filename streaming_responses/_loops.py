"""The event loop seam: the few things the library does differently on asyncio and on trio.

This module owns the choice between the two engines an ASGI server may run the application on:
asyncio (uvicorn, granian, hypercorn's default) and trio (hypercorn ``-k trio``). Almost all of
the library is written against anyio and runs on both as it is. What is left is a few small
needs where a plain asyncio primitive is much cheaper than anyio's portable one, or where anyio
has no primitive at all:

* a one-shot wake-up with an optional deadline (:class:`Waker`), created for every wait of
  every stream, so it must cost a future, not an event with a deque of waiters;
* a callback run on the loop after the current turn (:meth:`LoopBackend.call_soon`), for the
  idle hand-over of batching producers;
* a callback scheduled on the loop from a worker thread or a signal handler
  (:meth:`LoopBackend.thread_caller`, :meth:`LoopBackend.token`);
* the child tasks of one response (:meth:`LoopBackend.response_tasks`): its producer, its
  sender and its disconnect listener;
* shared timers for senders that let their task end while nothing is queued
  (:meth:`LoopBackend.parking`, asyncio only);
* an identity of the running loop for the shutdown registry (:class:`LoopToken`).

The rule that keeps it simple: no other module imports asyncio or trio for these; they ask
:func:`current_loop` for the backend of the running loop and use only what
:class:`LoopBackend` offers. The asyncio backend lives in ``_loop_asyncio.py``, the trio backend
in ``_loop_trio.py`` (imported only when trio is running).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, Protocol

from ._loop_asyncio import ASYNCIO
from ._types import Message, Receive

#: A callback the loop runs later; the scheduling functions return something to cancel it with.
Callback = Callable[[], object]


class Waker(Protocol):
    """A one-shot wake-up: ``set()`` on the loop, ``await wait()`` in one task."""

    def set(self) -> None:
        """Wake the waiter (now, or as soon as it waits). Setting twice is harmless."""

    def wait(self, deadline: float | None = None) -> Awaitable[bool]:
        """Await the result: wait until set, or until ``deadline`` (``anyio.current_time()``
        clock); it is whether the waker was set."""


class Scheduled(Protocol):
    """A callback scheduled with :meth:`LoopBackend.call_soon`."""

    def cancel(self) -> None:
        """Drop the callback if it has not run yet."""


class ResponseTasks(Protocol):
    """The child tasks of one response and its own wait, as an async context manager.

    The response's task starts the producer and the sender, then waits (:meth:`wait`) until
    :meth:`wake` (the body ended, the client left, a shutdown) or the deadline of
    :meth:`wake_at`. Meanwhile it listens for the disconnect: itself where
    :attr:`listens_here` (asyncio: ``receiving``/``received`` around each ``await
    receive()``, which :meth:`wake` interrupts), or through a child task (:meth:`listen`).
    Leaving the block cancels every child and waits for it, also when the response itself is
    being cancelled (that cancellation goes on afterwards). Nothing is started once the block
    is being left.
    """

    #: Whether the response's own task awaits ``receive()`` (else :meth:`listen` starts a task).
    listens_here: bool
    #: Whether :meth:`wake` was called (or the deadline came).
    woken: bool
    #: Whether the deadline of :meth:`wake_at` came first.
    expired: bool

    async def __aenter__(self) -> ResponseTasks: ...

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def start_producer(self, job: Coroutine[Any, Any, None]) -> None:
        """Run the producer's job, which enters :meth:`producer_scope` first thing."""

    def producer_scope(self) -> AbstractContextManager[object]:
        """The block the producer's job runs in: leaving the response's block cancels it, and
        that cancellation stops at an anyio shield inside the producer."""

    def start_sender(self, job: Coroutine[Any, Any, None]) -> None:
        """Run one run of the sender (one at a time: a parking sender is started again later)."""

    def listen(self, receive: Receive, heard: Callable[[Message | Exception], bool]) -> None:
        """Where the response's task does not listen itself: await ``receive()`` again and
        again in a child task, handing each message (or the exception it raised) to ``heard``
        until it returns ``False``."""

    def wake(self) -> None:
        """Wake the response's task (from anywhere on the loop); harmless when repeated."""

    def wake_at(self, deadline: float) -> None:
        """Wake the response's task at ``deadline`` (``anyio.current_time()`` clock) too."""

    def receiving(self) -> None:
        """Where :attr:`listens_here`: the response's task is about to await ``receive()``."""

    def received(self, error: BaseException | None = None) -> bool:
        """Where :attr:`listens_here`: the await of ``receive()`` ended (``error``: what it
        raised). Return whether ``error`` is :meth:`wake`'s interruption, to be swallowed."""

    def wait(self) -> Awaitable[None]:
        """Await the result: until :meth:`wake` or the deadline of :meth:`wake_at`."""


class Parking(Protocol):
    """The shared timers of a loop whose senders let their task end while nothing is queued."""

    def time(self) -> float:
        """The loop's clock (``anyio.current_time()``), usable from a loop callback too."""

    def call_at(self, deadline: float, callback: Callback) -> Scheduled:
        """Run ``callback`` on the loop at ``deadline`` (or a little later)."""


class LoopToken(Protocol):
    """One running loop, as the shutdown registry keeps it: usable from any thread."""

    #: Equal for the same loop, different for two loops (a dictionary key).
    key: Hashable

    def call_soon_threadsafe(self, callback: Callback) -> None:
        """Run ``callback`` on this loop soon; safe from any thread and from a signal handler."""

    def closed(self) -> bool:
        """Whether the loop has finished (its callbacks can no longer run)."""


class LoopBackend(Protocol):
    """What the library needs from the running loop beyond anyio (see the module docstring)."""

    name: str
    #: How many :meth:`call_soon` checks in a row without progress of a task span a whole
    #: loop turn of it (see ``_producers.IdleHandOver``).
    quiet_checks: int

    def waker(self) -> Waker:
        """A new one-shot wake-up for the current task."""

    def call_soon(self, callback: Callback) -> Scheduled:
        """Run ``callback`` on the loop after the tasks that are ready now had their turn."""

    def thread_caller(self) -> Callable[[Callback], object]:
        """A function that schedules a callback on this loop from any thread."""

    def token(self) -> LoopToken:
        """The identity of the running loop, for the shutdown registry."""

    def response_tasks(self) -> ResponseTasks:
        """New child tasks for one response (enter the block before starting any)."""

    def parking(self) -> Parking | None:
        """The shared timers of parking senders, or ``None`` where a sender waits in its task."""


def running_loop_name() -> str | None:
    """``"asyncio"`` or ``"trio"`` for the loop running in this thread, or ``None`` for none."""
    try:
        return current_loop().name
    except RuntimeError:
        return None


def current_loop() -> LoopBackend:
    """The backend of the running loop: asyncio's, or trio's.

    Raises ``RuntimeError`` outside of a running loop of either kind.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        from ._loop_trio import TRIO

        if not TRIO.running():
            raise RuntimeError(
                "streaming_responses must run inside an asyncio or trio event loop (an ASGI server)"
            ) from None
        return TRIO
    return ASYNCIO
