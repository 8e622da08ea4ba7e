"""The asyncio side of the loop seam (``_loops.py``): futures, loop callbacks, plain tasks.

This module owns what the library does with asyncio directly because it is much cheaper than
anyio's portable primitives: a one-shot wake-up that is a bare future (:class:`FutureWaker`),
callbacks through ``loop.call_soon``, and a response's child tasks as plain tasks
(:class:`ChildTasks`). The rule that keeps it simple: everything here implements a method of
``_loops.LoopBackend`` and nothing else; callers reach it through ``_loops.current_loop()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable, Sequence
from types import TracebackType
from typing import Any

import anyio

Callback = Callable[[], object]


class FutureWaker:
    """A one-shot wake-up that is a bare future.

    An ``asyncio.Event`` carries a deque of waiters, and an idle stream holds one of these the
    whole time it waits: a future is about half the memory.
    """

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[bool]) -> None:
        self._future = future

    def set(self) -> None:
        """Wake the waiter (now, or as soon as it waits). Setting twice is harmless."""
        future = self._future
        if not future.done():
            future.set_result(True)

    def _expire(self) -> None:
        future = self._future
        if not future.done():
            future.set_result(False)

    async def wait(self, deadline: float | None = None) -> bool:
        """Wait until set; with ``deadline`` (``anyio.current_time()`` clock), at most until
        then. Return whether it was set."""
        future = self._future
        if deadline is None:
            return await future
        timer = future.get_loop().call_at(deadline, self._expire)
        try:
            return await future
        finally:
            timer.cancel()


class AsyncioToken:
    """One asyncio loop, for the shutdown registry."""

    __slots__ = ("key", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.key: Hashable = loop

    def call_soon_threadsafe(self, callback: Callback) -> None:
        self.loop.call_soon_threadsafe(callback)

    def closed(self) -> bool:
        return self.loop.is_closed()


class AsyncioBackend:
    """The loop seam on asyncio (see ``_loops.LoopBackend``)."""

    name = "asyncio"
    #: Checks in a row without progress that span a whole loop turn (ready callbacks run in
    #: the order they were scheduled).
    quiet_checks = 1

    def waker(self) -> FutureWaker:
        return FutureWaker(asyncio.get_running_loop().create_future())

    def call_soon(self, callback: Callback) -> asyncio.Handle:
        return asyncio.get_running_loop().call_soon(callback)

    def thread_caller(self) -> Callable[[Callback], object]:
        return asyncio.get_running_loop().call_soon_threadsafe

    def token(self) -> AsyncioToken:
        return AsyncioToken(asyncio.get_running_loop())

    def child_tasks(self, jobs: Sequence[Coroutine[Any, Any, None]]) -> ChildTasks:
        return ChildTasks(jobs)


class ChildTasks:
    """Run the coroutines ``jobs`` as child tasks of the block; cancel them and wait for them
    when it ends.

    What an anyio task group does for the pump, at a fraction of its memory. An idle event
    stream is mostly this bookkeeping, and a server may hold thousands of them. On asyncio the
    children are plain tasks, each inside an anyio cancel scope. Leaving the block cancels
    those scopes: that cancellation stops at a shielded scope inside a child, as a task group's
    would, so a producer's shielded close still runs to the end. Then the block waits for the
    children, also when the response itself is being cancelled (that cancellation is raised
    afterwards). A child ending with an exception other than a cancellation is raised from the
    block (none of the pump's jobs lets one out).
    """

    __slots__ = ("_ending", "_jobs", "_scopes", "_tasks")

    def __init__(self, jobs: Sequence[Coroutine[Any, Any, None]]) -> None:
        self._jobs = jobs
        self._tasks: list[asyncio.Task[None]] = []
        self._scopes: list[anyio.CancelScope | None] = []
        self._ending = False

    async def __aenter__(self) -> None:
        jobs, self._jobs = self._jobs, ()
        loop = asyncio.get_running_loop()
        self._scopes = [None] * len(jobs)
        self._tasks = [loop.create_task(self._child(index, job)) for index, job in enumerate(jobs)]

    async def _child(self, index: int, job: Coroutine[Any, Any, None]) -> None:
        if self._ending:  # the block ended before this child first ran
            job.close()
            return
        with anyio.CancelScope() as scope:
            self._scopes[index] = scope
            await job

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._ending = True
        for scope in self._scopes:
            if scope is not None:
                scope.cancel()
        tasks = self._tasks
        cancelled: BaseException | None = None
        pending = [task for task in tasks if not task.done()]
        while pending:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError as exc:
                cancelled = exc  # the children finish first; then the cancellation goes on
            pending = [task for task in pending if not task.done()]
        if cancelled is not None:
            raise cancelled
        for task in tasks:
            problem = None if task.cancelled() else task.exception()
            if problem is not None:  # pragma: no cover - the pump's jobs catch what they raise
                raise problem


#: The one asyncio backend (it keeps no state: every call asks for the running loop).
ASYNCIO = AsyncioBackend()
