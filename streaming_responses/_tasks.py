"""Child tasks of one response, at a fraction of an anyio task group's memory.

This module owns how the pump runs its producer and its disconnect listener beside the sender:
:class:`ChildTasks`. The rule that keeps it simple: the block cancels its children when it ends
and waits for them, as a task group would, and a shielded scope inside a child is respected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc


async def _awaited(coroutine: Coroutine[Any, Any, None]) -> None:  # pragma: no cover - trio only
    await coroutine


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
    block (none of the pump's jobs lets one out). Elsewhere (trio) an anyio task group is used.
    """

    __slots__ = ("_ending", "_group", "_jobs", "_scopes", "_tasks")

    def __init__(self, jobs: Sequence[Coroutine[Any, Any, None]]) -> None:
        self._jobs = jobs
        self._tasks: list[asyncio.Task[None]] = []
        self._scopes: list[anyio.CancelScope | None] = []
        self._group: anyio.abc.TaskGroup | None = None
        self._ending = False

    async def __aenter__(self) -> None:
        jobs, self._jobs = self._jobs, ()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - only under trio
            self._group = group = anyio.create_task_group()
            await group.__aenter__()
            for job in jobs:
                group.start_soon(_awaited, job)
            return
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
        group = self._group
        if group is not None:  # pragma: no cover - only under trio
            group.cancel_scope.cancel()
            await group.__aexit__(kind, error, traceback)
            return
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
