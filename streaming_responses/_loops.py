"""The event loop seam: the few things the library does differently on asyncio and on trio.

This module owns the choice between the two engines an ASGI server may run the application on:
asyncio (uvicorn, granian, hypercorn's default) and trio (hypercorn ``-k trio``). Almost all of
the library is written against anyio and runs on both as it is. What is left is five small
needs where a plain asyncio primitive is much cheaper than anyio's portable one, or where anyio
has no primitive at all:

* a one-shot wake-up with an optional deadline (:class:`Waker`), created for every wait of
  every stream, so it must cost a future, not an event with a deque of waiters;
* a callback run on the loop after the current turn (:meth:`LoopBackend.call_soon`), for the
  idle hand-over of batching producers;
* a callback scheduled on the loop from a worker thread or a signal handler
  (:meth:`LoopBackend.thread_caller`, :meth:`LoopBackend.token`);
* the child tasks of one response (:meth:`LoopBackend.child_tasks`);
* an identity of the running loop for the shutdown registry (:class:`LoopToken`).

The rule that keeps it simple: no other module imports asyncio or trio for these; they ask
:func:`current_loop` for the backend of the running loop and use only what
:class:`LoopBackend` offers. The asyncio backend lives in ``_loop_asyncio.py``, the trio backend
in ``_loop_trio.py`` (imported only when trio is running).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from ._loop_asyncio import ASYNCIO

#: A callback the loop runs later; the scheduling functions return something to cancel it with.
Callback = Callable[[], object]


class Waker(Protocol):
    """A one-shot wake-up: ``set()`` on the loop, ``await wait()`` in one task."""

    def set(self) -> None:
        """Wake the waiter (now, or as soon as it waits). Setting twice is harmless."""

    async def wait(self, deadline: float | None = None) -> bool:
        """Wait until set, or until ``deadline`` (``anyio.current_time()`` clock); return whether set."""


class Scheduled(Protocol):
    """A callback scheduled with :meth:`LoopBackend.call_soon`."""

    def cancel(self) -> None:
        """Drop the callback if it has not run yet."""


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

    def child_tasks(self, jobs: Sequence[Coroutine[Any, Any, None]]) -> AbstractAsyncContextManager[None]:
        """Run ``jobs`` as child tasks of the block; cancel them and wait for them when it ends."""


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
