"""The trio side of the loop seam (``_loops.py``): trio events, trio tokens, an anyio task group.

This module owns how the library runs on trio (hypercorn ``-k trio``), where there is no asyncio
loop. It is imported only once a response runs without one, so an application on asyncio never
imports trio. The rule that keeps it simple: everything here implements a method of
``_loops.LoopBackend`` with trio's public API (``trio.Event``, ``trio.move_on_at``,
``trio.lowlevel.current_trio_token().run_sync_soon``) or anyio's task group, and nothing else.
Trio keeps the plainer, heavier way where asyncio saves memory: a response's children live in
one task group, and its sender waits in its task instead of parking (:meth:`TrioBackend.parking`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

from ._types import Message, Receive

try:
    import trio
    import trio.lowlevel
except ModuleNotFoundError:  # pragma: no cover - trio is installed wherever it runs
    trio = None  # type: ignore[assignment]

Callback = Callable[[], object]


class EventWaker:
    """A one-shot wake-up on trio: a ``trio.Event``, with ``trio.move_on_at`` for the deadline."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, deadline: float | None = None) -> Awaitable[bool]:
        return self._wait(deadline)

    async def _wait(self, deadline: float | None) -> bool:
        if deadline is None:
            await self._event.wait()
            return True
        with trio.move_on_at(deadline):
            await self._event.wait()
        return self._event.is_set()


class SoonCall:
    """A callback handed to ``run_sync_soon`` that can still be dropped before it runs."""

    __slots__ = ("_callback", "cancelled")

    def __init__(self, callback: Callback) -> None:
        self._callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __call__(self) -> None:
        if not self.cancelled:
            self._callback()


class TrioToken:
    """One trio run, for the shutdown registry."""

    __slots__ = ("_token", "key")

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self.key: Hashable = token

    def call_soon_threadsafe(self, callback: Callback) -> None:
        with contextlib.suppress(trio.RunFinishedError):  # the run is over: nothing to end
            self._token.run_sync_soon(callback)

    def closed(self) -> bool:
        # A finished run refuses callbacks; the registry drops its entry when it empties.
        return False


class TaskGroupChildren:
    """A response's child tasks on trio: one anyio task group, cancelled when the block ends.

    The listener is a child task too (:attr:`listens_here` is false), and the response's wait
    is a ``trio.Event`` with ``trio.move_on_at`` for its deadline.
    """

    listens_here = False

    __slots__ = ("_deadline", "_event", "_group", "expired", "woken")

    def __init__(self) -> None:
        self._group: anyio.abc.TaskGroup | None = None
        self._event = trio.Event()
        self._deadline = math.inf
        self.woken = False
        self.expired = False

    async def __aenter__(self) -> TaskGroupChildren:
        group = self._group = anyio.create_task_group()
        await group.__aenter__()
        return self

    def _start(self, job: Coroutine[Any, Any, None]) -> None:
        group = self._group
        assert group is not None
        group.start_soon(_awaited, job)

    def start_producer(self, job: Coroutine[Any, Any, None]) -> None:
        self._start(job)

    def producer_scope(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()  # the task group's cancellation stops at shields itself

    def start_sender(self, job: Coroutine[Any, Any, None]) -> None:
        self._start(job)

    def listen(self, receive: Receive, heard: Callable[[Message | Exception], bool]) -> None:
        self._start(_listen(receive, heard))

    def wake(self) -> None:
        self.woken = True
        self._event.set()

    def wake_at(self, deadline: float) -> None:
        self._deadline = deadline

    def receiving(self) -> None:
        raise RuntimeError("on trio a child task listens (listens_here is false)")

    def received(self, error: BaseException | None = None) -> bool:
        raise RuntimeError("on trio a child task listens (listens_here is false)")

    def wait(self) -> Awaitable[None]:
        return self._wait()

    async def _wait(self) -> None:
        with trio.move_on_at(self._deadline):
            await self._event.wait()
        if not self.woken:
            self.expired = True

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        group = self._group
        assert group is not None
        group.cancel_scope.cancel()
        await group.__aexit__(kind, error, traceback)


async def _awaited(coroutine: Coroutine[Any, Any, None]) -> None:
    await coroutine


async def _listen(receive: Receive, heard: Callable[[Message | Exception], bool]) -> None:
    while True:
        try:
            message = await receive()
        except Exception as exc:
            heard(exc)
            return
        if not heard(message):
            return


class TrioBackend:
    """The loop seam on trio (see ``_loops.LoopBackend``)."""

    name = "trio"
    #: Checks in a row without progress that span a whole loop turn (trio runs the tasks of
    #: one turn in random order, so two checks may fall between two steps of one task).
    quiet_checks = 3

    def running(self) -> bool:
        """Whether this thread runs a trio loop right now."""
        if trio is None:  # pragma: no cover - trio is installed wherever it runs
            return False
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            return False
        return True

    def waker(self) -> EventWaker:
        return EventWaker()

    def call_soon(self, callback: Callback) -> SoonCall:
        call = SoonCall(callback)
        trio.lowlevel.current_trio_token().run_sync_soon(call)
        return call

    def thread_caller(self) -> Callable[[Callback], object]:
        return trio.lowlevel.current_trio_token().run_sync_soon

    def token(self) -> TrioToken:
        return TrioToken(trio.lowlevel.current_trio_token())

    def response_tasks(self) -> TaskGroupChildren:
        return TaskGroupChildren()

    def parking(self) -> None:
        """None: on trio the sender waits in its task (a timer needs a task there)."""
        return None


#: The one trio backend (it keeps no state).
TRIO = TrioBackend()
