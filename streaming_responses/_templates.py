"""Streamed Jinja templates: ``StreamingTemplates`` and ``StreamingTemplateResponse``.

This module owns how a Jinja template is rendered into the core's chunk queue: when rendered
text is held back, when it is handed over, and when the renderer steps aside so the core can send
it (the *flush rules*, below). It never calls ASGI ``send`` or ``receive``; the chunk pump does.

The rule that keeps it simple: the page has two phases. Until the first *flush point* the
rendered text stays in this module, so any error still becomes a real error response through the
application's exception handlers. After it, fragments are joined into chunks of up to
``message_bytes``, each handed to the core when it is full, at a flush, or as soon as the
template waits for data (nothing rendered is held behind a wait).

Flush points, the first of which ends the first phase:

* the fragment that contains ``</head>`` (the first one only, found case-insensitively);
* ``{{ flush() }}`` in the template;
* ``message_bytes`` (64 KiB) of rendered text still held back.

At the first two the renderer also yields to the event loop until the core has taken everything
rendered so far, so the bytes leave before the rest of the page (however CPU-bound) renders.

Two render paths keep these rules. A context that holds nothing async (:func:`async_value`
finds no awaitable, async iterable or async callable among its values) is rendered by the
*thread* path: the same template compiled in sync mode (:func:`sync_template`, cached in a sync
twin of the environment), iterated in worker threads by :class:`ThreadTemplateProducer`, so the
event loop never waits for the render. Anything else takes the *async* path,
:class:`TemplateProducer`, which renders with Jinja's async mode on the event loop.
"""

from __future__ import annotations

import contextvars
import inspect
import itertools
import re
import threading
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, replace
from os import PathLike
from typing import Any, ClassVar, Literal

import anyio
import anyio.lowlevel
import anyio.to_thread

try:
    import jinja2
except ModuleNotFoundError as exc:  # pragma: no cover - the dev environment has jinja2
    raise ModuleNotFoundError(
        "StreamingTemplates needs Jinja2: pip install 'streaming-responses[jinja2]'"
    ) from exc
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from ._compression import CompressOption
from ._core import OutcomeCallback, PumpSettings
from ._options import StreamOptions
from ._producers import ChunkQueue, IdleHandOver, Producer
from ._shutdown import ShutdownPolicy
from ._streaming import StreamingResponse
from ._types import Content

#: The end of the document head: the first flush point of a full page.
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)
#: Event-loop turns a flush waits for the core to take what is queued. Two are enough before
#: the response start (the core looks once more before it starts) and one after it; a core
#: still busy sending to a slow client after that is not waited for.
FLUSH_TURNS = 4
#: The comment written before the abort when ``error_comment=True``.
DEFAULT_ERROR_COMMENT = "streaming_responses: rendering failed, this page is incomplete"

#: Fragments the thread path takes from the sync render in one C-level step between two looks
#: at its state (a stop, a flush, a slow source): a couple dozen table rows.
THREAD_STEP = 256
#: Seconds one step of the thread path may take before its source counts as slow: what was
#: rendered is then handed over at once, and the next step takes one fragment (steps double
#: again, up to ``THREAD_STEP``, while they are fast).
SLOW_STEP = 0.005
#: Seconds of rendering in one worker-thread call of the thread path before it hands back to
#: the event loop (the most a request waits for the loop while pages render).
BATCH_SECONDS = 0.002
#: Worker threads that render pages at once, per event loop.
RENDER_THREADS = 1
_LIMITER: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar("streaming_responses_render")

#: The producer of the render running in the current task or thread (read by ``flush()``).
_RENDERING: contextvars.ContextVar[TemplateProducer | ThreadTemplateProducer] = contextvars.ContextVar(
    "streaming_responses_render"
)

#: The values of ``render=``: choose by the context, the thread path, or the async path.
RenderPath = Literal["auto", "thread", "async"]
_RENDER_PATHS = ("auto", "thread", "async")
#: The attribute of an async environment that holds its sync twin (see :func:`sync_environment`).
_TWIN = "_streaming_responses_sync_twin"


def error_comment_chunk(value: bool | str) -> bytes | None:
    """The bytes written before an abort for ``error_comment=``, or ``None`` when it is off.

    ``True`` gives a fixed comment; a string is the comment's text, which must be a valid HTML
    comment text (WHATWG HTML §13.1.6: no ``<!--``, ``-->`` or ``--!>``). The exception itself is
    never written into the page.

    >>> error_comment_chunk(False) is None, error_comment_chunk("failed")
    (True, b'\\n<!-- failed -->\\n')
    """
    if value is False:
        return None
    if value is True:
        value = DEFAULT_ERROR_COMMENT
    elif not isinstance(value, str):
        raise TypeError(f"error_comment must be a bool or a str, not {type(value).__name__}")
    for forbidden in ("<!--", "-->", "--!>"):
        if forbidden in value:
            raise ValueError(f"error_comment must not contain {forbidden!r}: it would end the comment early")
    return f"\n<!-- {value} -->\n".encode()


def _open_async_iterators(context: Mapping[str, Any]) -> list[Any]:
    """The values of ``context`` the response closes when it ends: async iterators with aclose()."""
    return [
        value
        for value in context.values()
        if inspect.isasyncgen(value) or (isinstance(value, AsyncIterator) and hasattr(value, "aclose"))
    ]


def async_value(context: Mapping[str, Any]) -> str | None:
    """The key of the first value of ``context`` that needs Jinja's async mode, or ``None``.

    A value needs it when it is awaitable (a coroutine, a task, a future), an async iterable
    (an async generator, a database cursor), or an async callable (an ``async def`` function or
    method, a partial of one, an object whose ``__call__`` is ``async def``). Only the
    context's own values are looked at, not what they hold.

    >>> async def load(): ...
    >>> async_value({"rows": [1, 2], "load": load}), async_value({"rows": [1, 2]})
    ('load', None)
    """
    for key, value in context.items():
        if (
            inspect.isawaitable(value)
            or isinstance(value, AsyncIterable)
            or inspect.iscoroutinefunction(value)
            or inspect.isasyncgenfunction(value)
            or (
                callable(value)
                and not isinstance(value, type)
                and inspect.iscoroutinefunction(getattr(value, "__call__", None))  # noqa: B004
            )
        ):
            return str(key)
    return None


def sync_environment(environment: jinja2.Environment) -> jinja2.Environment:
    """The sync twin of an async ``environment``: one environment the user keeps, two modes.

    The twin is an overlay (``Environment.overlay()``) in sync mode, made the first time it is
    asked for and kept on the async environment. It shares the loader, the globals, filters and
    tests (the same dicts, so later additions show in both) and every setting; only its
    template cache is its own, because a template compiled for one mode cannot run in the
    other. Settings changed on the async environment after the twin exists do not reach it.
    """
    twin = environment.__dict__.get(_TWIN)
    # An overlay copies its parent's attributes, this one included: check it is ours.
    if twin is None or twin.linked_to is not environment:
        twin = environment.overlay()
        twin.is_async = False
        setattr(environment, _TWIN, twin)
    assert isinstance(twin, jinja2.Environment)
    return twin


def sync_template(template: jinja2.Template) -> jinja2.Template | None:
    """``template`` compiled in sync mode, from the sync twin of its environment's cache.

    ``None`` when it cannot be had: a template made with ``from_string()`` has no name to load
    it by again. A template given its own ``globals`` keeps them.
    """
    if template.name is None or template.environment.loader is None:
        return None
    own_globals = template.globals.maps[0] if hasattr(template.globals, "maps") else None
    twin = sync_environment(template.environment)
    return twin.get_template(template.name, globals=own_globals or None)


def render_fragments(template: jinja2.Template, context: Mapping[str, Any]) -> AsyncGenerator[str, object]:
    """The fragments of ``template`` rendered with ``context``: what ``generate_async()`` yields.

    This is the render function that ``generate_async()`` itself iterates, without the async
    generator layer around it. A page of 10,000 table rows is about 130,000 fragments, and that
    layer cost each of them a step. The one thing the layer adds, rewriting a failure's
    traceback to show template lines, :class:`TemplateProducer` does when given the
    environment. Where a template has no ``root_render_func``, ``generate_async()`` is used.
    """
    root = getattr(template, "root_render_func", None)
    if root is None:  # pragma: no cover - every Jinja 3 template has one
        return template.generate_async(context)
    render: AsyncGenerator[str, object] = root(template.new_context(dict(context)))
    return render


class TemplateProducer(Producer):
    """Renders one template into the core's queue by the flush rules of this module.

    ``render`` is the template's fragment generator (:func:`render_fragments`, or
    ``generate_async()``) and ``context`` the mapping it renders. With ``environment``, a
    failure's traceback is rewritten to show template lines, as ``generate_async()`` does.
    When the response ends, the render is closed, then every async generator (or async
    iterator with ``aclose()``) among the context's values, then every coroutine there (an
    awaitable the template never reached is closed instead of left un-awaited).
    """

    #: Look for ``</head>`` and flush at it (subclasses may turn it off).
    flush_at_head: ClassVar[bool] = True

    def __init__(
        self,
        render: AsyncGenerator[str, object],
        context: Mapping[str, Any],
        head_bytes: int,
        environment: jinja2.Environment | None = None,
    ) -> None:
        self._render = render
        self._context = context
        self._environment = environment
        self._head_bytes = head_bytes
        self._pending: list[str] = []
        self._pending_size = 0
        self._committed = False
        self._queue: ChunkQueue | None = None

    async def run(self, queue: ChunkQueue) -> None:
        self._queue = queue
        token = _RENDERING.set(self)
        try:
            if await self._hold_back(queue):
                await self._stream(queue)
        except Exception:
            # What generate_async() does with a failure: Jinja rewrites the traceback to show
            # template lines, then raises the same exception again.
            if self._environment is not None:
                self._environment.handle_exception()
            raise
        finally:
            _RENDERING.reset(token)

    async def _hold_back(self, queue: ChunkQueue) -> bool:
        """First phase: keep the text here until a flush point; return whether more may follow."""
        pending = self._pending
        head = _HEAD_END if self.flush_at_head else None
        async for fragment in self._render:
            if self._committed:  # flush() ran while this fragment was rendered
                self._pending.append(fragment)
                self._put_pending(queue)
                return True
            pending.append(fragment)
            self._pending_size += len(fragment)
            if head is not None and head.search(fragment) is not None:
                await self.flush()
                return True
            if self._pending_size >= self._head_bytes:
                self._committed = True
                self._put_pending(queue)
                await queue.space()
                return True
        # The whole page rendered before any flush point: the core frames it with its length.
        self._committed = True
        self._put_pending(queue)
        return False

    async def _stream(self, queue: ChunkQueue) -> None:
        """Second phase: fragments are joined into chunks of up to ``message_bytes``.

        A chunk is handed to the core when it is full, at ``{{ flush() }}``, and as soon as the
        render has to wait (for a slow iterable or awaitable in the context): a call scheduled on
        the loop sees that no fragment came during a whole turn. So nothing rendered is held
        behind a wait, and a page that renders without waiting costs one queue hand-over per
        chunk instead of one per fragment (a table row is a dozen fragments).
        """
        parts = self._pending
        append = parts.append
        chunk_bytes = self._head_bytes
        size = 0
        idle = IdleHandOver(parts.__len__, lambda: self._put_pending(queue))
        try:
            async for fragment in self._render:
                append(fragment)
                size += len(fragment)
                if size >= chunk_bytes:
                    # flush() may have emptied the list since: the local count is then too high,
                    # which only makes this chunk smaller.
                    size = 0
                    self._put_pending(queue)
                    await queue.space()
                elif idle.handle is None:
                    idle.arm()
        finally:
            idle.cancel()
            # Also when rendering failed: what was rendered goes out before the error marker.
            self._put_pending(queue)

    def _put_pending(self, queue: ChunkQueue) -> None:
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        if text:
            queue.put(text)

    async def flush_from_template(self) -> str:
        """What ``{{ flush() }}`` does on the async path (Jinja awaits it): flush, render nothing."""
        await self.flush()
        return ""

    async def flush(self) -> None:
        """Hand everything rendered so far to the core and let it send before rendering goes on."""
        queue = self._queue
        assert queue is not None, "flush() runs only inside run()"
        self._committed = True
        self._put_pending(queue)
        for _ in range(FLUSH_TURNS):
            if not queue.items:
                break
            await anyio.lowlevel.checkpoint()
        await queue.space()

    async def close(self) -> None:
        problem: BaseException | None = None
        try:
            await self._render.aclose()
        except Exception as exc:
            problem = exc
        # Jinja does not close the async iterator of a `{% for %}` it left early, and a value the
        # template never reached was never started: close both here, so their `finally` runs now.
        for iterator in _open_async_iterators(self._context):
            try:
                await iterator.aclose()
            except Exception as exc:
                problem = problem or exc
        for value in self._context.values():
            if inspect.iscoroutine(value):
                value.close()
        if problem is not None:
            raise problem


@dataclass(frozen=True)
class _Batch:
    """What one worker-thread call of the thread path hands back to the event loop."""

    #: Whole chunks to queue, in order (possibly none).
    chunks: list[str]
    #: A flush point was reached: let the core take the chunks before the next batch.
    flush: bool = False
    #: The render failed (after ``chunks``, which were rendered before the failure).
    error: BaseException | None = None


def _render_limiter() -> anyio.CapacityLimiter:
    """The worker thread the thread path renders in: one per event loop, shared by every page.

    Renders hold the GIL, so two never run faster than one; one thread at a time, handed back
    to the loop every batch, keeps the loop's wait for the GIL down to one batch.
    """
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(RENDER_THREADS)
        _LIMITER.set(limiter)
        return limiter


class ThreadTemplateProducer(Producer):
    """Renders a sync-compiled template in a worker thread by the flush rules of this module.

    The render runs in batches: each is one worker-thread call of at most
    :data:`BATCH_SECONDS` of rendering, which returns the chunks it completed to the event
    loop, where they are queued. Between batches the loop runs freely, and the batches of
    every page on a loop share one thread (:func:`_render_limiter`), so a request that needs
    the loop waits at most about one batch, however many pages render.

    Until the first flush point the text is held as on the async path, so an error there
    propagates before anything is sent. At ``</head>`` and ``{{ flush() }}`` the batch ends
    and the loop lets the core take the chunk before the next batch starts, so those bytes
    leave before the rest renders. After the first flush point fragments are taken
    :data:`THREAD_STEP` at a time in one C-level step (``islice``), so a fast page costs no
    Python per fragment, and joined into chunks of up to ``head_bytes``. A step that took
    longer than :data:`SLOW_STEP` means the source waited: what was rendered is handed over
    at once, and the next step takes one fragment; steps double while they are fast.

    A stop (the client left) is seen between two steps. Whoever touches the render last (the
    batch in its thread, or :meth:`close` when no batch runs) closes it, exactly once, and
    then every generator among the context's values, so their ``finally`` blocks run.
    """

    #: Look for ``</head>`` and flush at it.
    flush_at_head: ClassVar[bool] = True

    def __init__(
        self,
        render: Generator[str, None, None],
        context: Mapping[str, Any],
        head_bytes: int,
        environment: jinja2.Environment | None = None,
    ) -> None:
        self._render = render
        self._render_context = context
        self._environment = environment
        self._head_bytes = head_bytes
        self._pending: list[str] = []
        self._taken: list[str] = []
        self._size = 0
        self._step = 1
        self._committed = False
        self._flush_asked = False
        self._started = False
        self._stop = False
        self._done = False
        self._in_batch = False
        self._closed = False
        self._lock = threading.Lock()
        self._context = contextvars.copy_context()

    def stop_soon(self) -> None:
        self._stop = True

    @property
    def stopped(self) -> bool:
        return self._stop and not self._done

    async def run(self, queue: ChunkQueue) -> None:
        limiter = _render_limiter()
        run_in_context = self._context.run
        while not self._done and not self._stop:
            batch = await anyio.to_thread.run_sync(
                run_in_context, self._batch, abandon_on_cancel=True, limiter=limiter
            )
            for chunk in batch.chunks:
                await queue.push(chunk)
            if batch.error is not None:
                raise batch.error
            if batch.flush:
                await _core_takes(queue)

    # -- in the worker thread ------------------------------------------------------------

    def _batch(self) -> _Batch:
        with self._lock:
            if self._stop:
                return _Batch([])  # stopped before this batch began: close() owns the render
            self._in_batch = True
            self._started = True
        chunks: list[str] = []
        token = _RENDERING.set(self)
        try:
            flush = self._steps(chunks) if self._committed else self._hold_back(chunks)
            return _Batch(chunks, flush)
        except Exception as exc:
            self._done = True
            if self._committed:  # what was rendered goes out before the error's end
                self._pending.extend(self._taken)
                self._hand_over(chunks)
            return _Batch(chunks, error=self._rewritten(exc))
        finally:
            _RENDERING.reset(token)
            with self._lock:
                self._in_batch = False
                close_here = self._must_close()
            if close_here:
                self._close_render()

    def _hold_back(self, chunks: list[str]) -> bool:
        """First phase: hold the text until the first flush point; return whether to flush."""
        pending = self._pending
        head = _HEAD_END if self.flush_at_head else None
        for fragment in self._render:
            pending.append(fragment)
            self._size += len(fragment)
            if self._flush_asked or (head is not None and head.search(fragment) is not None):
                self._flush_asked = False
                self._committed = True
                self._hand_over(chunks)
                return True
            if self._size >= self._head_bytes:
                self._committed = True
                self._hand_over(chunks)
                return False
        # The whole page rendered before any flush point: the core frames it with its length.
        self._done = True
        self._hand_over(chunks)
        return False

    def _steps(self, chunks: list[str]) -> bool:
        """Second phase: render for up to :data:`BATCH_SECONDS`; return whether to flush."""
        fragments = self._render
        pending = self._pending
        taken = self._taken
        clock = time.perf_counter
        deadline = clock() + BATCH_SECONDS
        while True:
            began = clock()
            # One C-level step; it also stops at an empty fragment, which is what
            # {{ flush() }} renders as.
            taken.extend(itertools.islice(iter(fragments.__next__, ""), self._step))
            now = clock()
            slow = now - began > SLOW_STEP
            text = "".join(taken)
            taken.clear()
            pending.append(text)
            self._size += len(text)
            if inspect.getgeneratorstate(fragments) == inspect.GEN_CLOSED:  # the render ended
                self._done = True
                self._hand_over(chunks)
                return False
            if self._flush_asked:
                self._flush_asked = False
                self._hand_over(chunks)
                return True
            if self._size >= self._head_bytes or (slow and self._size):
                self._hand_over(chunks)
                if slow:
                    self._step = 1
                    return False
            # One fragment after a slow step, then twice as many after each fast one.
            self._step = 1 if slow else min(2 * self._step, THREAD_STEP)
            if now >= deadline or self._stop:
                return False

    def _hand_over(self, chunks: list[str]) -> None:
        text = "".join(self._pending)
        if text:
            chunks.append(text)
        self._pending.clear()
        self._size = 0

    def _rewritten(self, exc: Exception) -> BaseException:
        """``exc`` with its traceback showing template lines, as ``generate()`` does."""
        if self._environment is None:
            return exc
        try:
            self._environment.handle_exception()
        except BaseException as rewritten:  # handle_exception always raises
            return rewritten
        return exc  # pragma: no cover

    def _must_close(self) -> bool:
        # Called with the lock held: claim the one close of a render that ended or stopped.
        if (self._done or self._stop) and not self._closed and not self._in_batch:
            self._closed = True
            return True
        return False

    def _close_render(self) -> None:
        try:
            self._render.close()  # runs the render's `finally` blocks
        finally:
            _close_sync_generators(self._render_context)

    # -- on the event loop ---------------------------------------------------------------

    def flush_from_template(self) -> str:
        """What ``{{ flush() }}`` does on the thread path: mark the flush point (the batch
        hands the text over right after this fragment)."""
        self._flush_asked = True
        return ""

    async def close(self) -> None:
        self._stop = True
        with self._lock:
            close_here = self._must_close()
        if not close_here:
            return
        if self._started:
            # Closing runs user code (the render's and the context's `finally` blocks).
            await anyio.to_thread.run_sync(self._context.run, self._close_render)
        else:
            self._close_render()  # never started (HEAD): nothing of the render runs


async def _core_takes(queue: ChunkQueue) -> None:
    for _ in range(FLUSH_TURNS):
        if not queue.items:
            break
        await anyio.lowlevel.checkpoint()


def _close_sync_generators(context: Mapping[str, Any]) -> None:
    # Jinja does not close the iterator of a {% for %} it left early: close the context's
    # generators, so their `finally` runs now (closing a finished one does nothing).
    for value in context.values():
        if inspect.isgenerator(value) and value.gi_frame is not None and not value.gi_running:
            value.close()


def flush() -> str | Awaitable[str]:
    """The template global ``flush()``: ``{{ flush() }}`` sends what is rendered so far.

    Outside a streamed render (``render_async()``, for example) it does nothing. It renders as
    an empty string. On the async path it returns an awaitable, which Jinja awaits.
    """
    producer = _RENDERING.get(None)
    if producer is None:
        return ""
    return producer.flush_from_template()


def await_filter(value: Any) -> Any:
    """The template filter ``await``: ``{{ user|await }}`` renders the result of an awaitable.

    Jinja's async mode awaits the results of calls and attribute lookups, not plain variables;
    this filter returns the value as a filter result, which Jinja then awaits. Anything that is
    not awaitable passes through unchanged. On the thread path (sync Jinja) an awaitable
    cannot be awaited: ``TypeError``, which says to render with ``render="async"``.
    """
    if inspect.isawaitable(value) and not _async_render():
        if inspect.iscoroutine(value):
            value.close()
        raise TypeError("the await filter needs the async render path: pass render='async'")
    return value


def _async_render() -> bool:
    producer = _RENDERING.get(None)
    return producer is None or isinstance(producer, TemplateProducer)


class StreamingTemplateResponse(StreamingResponse):
    """A page streamed from a Jinja template while it renders, through the chunk pump.

    Usually made by :meth:`StreamingTemplates.stream`. ``template`` must come from an
    environment created with ``enable_async=True``. The two are kept as the attributes
    ``template`` and ``context``, as Starlette's template response does.

    ``render`` chooses how the page is rendered. ``"auto"`` (the default): in a worker thread,
    with the same template compiled in sync mode, when the context holds nothing async (no
    awaitable, async iterable or async callable among its values), so the event loop never
    waits for the render; with Jinja's async mode on the event loop otherwise, so ``context``
    may hold async iterables and awaitables. ``"thread"`` or ``"async"`` forces one path;
    ``"thread"`` with an async value in the context is a ``TypeError``. The attribute
    ``render_path`` says which path the response takes.

    Example::

        template = templates.get_template("report.html")
        return StreamingTemplateResponse(template, {"request": request, "rows": fetch_rows()})

    ``error_comment``: when rendering fails after the first flush, write an HTML comment
    (``True`` for the default text, or a text of your own) before the connection is aborted or
    the failure is reported in trailers. Off by default. ``compress`` is on by default (zstd,
    br or gzip as the browser prefers, each flush point sent decodable at once; ``False`` turns
    it off). The other keyword arguments are :class:`~streaming_responses.StreamingResponse`'s.
    """

    media_type = "text/html"

    def __init__(
        self,
        template: jinja2.Template,
        context: Mapping[str, Any],
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        render: RenderPath = "auto",
        error_comment: bool | str = False,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_shutdown: ShutdownPolicy | str = ShutdownPolicy.WAIT,
        compress: CompressOption = True,
    ) -> None:
        if not isinstance(template, jinja2.Template):
            raise TypeError(f"template must be a jinja2.Template, not {type(template).__name__}")
        if not template.environment.is_async:
            raise ValueError(
                "the template's environment must be created with enable_async=True to be streamed"
            )
        if not isinstance(context, Mapping):
            raise TypeError(f"context must be a mapping, not {type(context).__name__}")
        self.template = template
        self.context = context
        self.error_comment = error_comment_chunk(error_comment)
        sync = self._thread_template(template, context, render)
        #: The render path this response takes: ``"thread"`` or ``"async"``.
        self.render_path: Literal["thread", "async"] = "async" if sync is None else "thread"
        self._sync_template = sync
        content: Content
        if sync is None:
            content = render_fragments(template, context)
        else:
            content = sync.root_render_func(sync.new_context(dict(context)))
        self._setup(
            content, status_code, headers, media_type, background, StreamOptions.from_arguments(locals())
        )

    @staticmethod
    def _thread_template(
        template: jinja2.Template, context: Mapping[str, Any], render: RenderPath
    ) -> jinja2.Template | None:
        """The sync template the thread path renders, or ``None`` for the async path."""
        if render not in _RENDER_PATHS:
            raise ValueError(f"render must be 'auto', 'thread' or 'async', not {render!r}")
        if render == "async":
            return None
        key = async_value(context)
        if key is not None:
            if render == "thread":
                raise TypeError(
                    f"render='thread' cannot render the context value {key!r}: it is async "
                    "(awaitable, async iterable or async callable); use render='async' or 'auto'"
                )
            return None
        sync = sync_template(template)
        if sync is None and render == "thread":
            raise ValueError(
                "render='thread' needs a template loaded by name (get_template), not from_string()"
            )
        return sync

    def make_producer(self, content: Content) -> Producer:
        """The template's fragments, held back until the first flush point, then batched."""
        if isinstance(content, AsyncGenerator):
            return TemplateProducer(
                content, self.context, head_bytes=self.message_bytes, environment=self.template.environment
            )
        assert isinstance(content, Generator)
        assert self._sync_template is not None
        return ThreadTemplateProducer(
            content, self.context, head_bytes=self.message_bytes, environment=self._sync_template.environment
        )

    def pump_settings(self) -> PumpSettings:
        """The core's settings, with the error comment as the ``error_chunk`` when it is on."""
        settings = super().pump_settings()
        comment = self.error_comment
        if comment is None:
            return settings
        return replace(settings, error_chunk=lambda _error: comment)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} status_code={self.status_code} template={self.template.name!r}>"


class StreamingTemplates(Jinja2Templates):
    """Starlette's ``Jinja2Templates`` with an async environment and a streaming ``stream()``.

    Pass ``directory`` (one or more template folders) or ``env``, a ``jinja2.Environment``
    created with ``enable_async=True``. With ``directory``, autoescaping is on for ``.html``,
    ``.htm`` and ``.xml`` templates (``jinja2.select_autoescape()``, as Starlette does). The
    environment gets the globals ``url_for`` (Starlette's) and ``flush``, and the filter
    ``await``; names you already defined there are kept. ``TemplateResponse`` is inherited but
    cannot render with an async environment inside a running event loop: use :meth:`stream`.

    Example::

        templates = StreamingTemplates(directory="templates")

        async def report(request):
            return templates.stream(request, "report.html", {"rows": fetch_rows()})

    ``error_comment`` is passed to every :class:`StreamingTemplateResponse` this object makes.
    """

    def __init__(
        self,
        directory: str | PathLike[str] | Sequence[str | PathLike[str]] | None = None,
        *,
        context_processors: list[Callable[[Request], dict[str, Any]]] | None = None,
        env: jinja2.Environment | None = None,
        error_comment: bool | str = False,
    ) -> None:
        if (directory is None) == (env is None):
            raise TypeError("pass either directory= or env= to StreamingTemplates, not both or neither")
        if directory is not None:
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(directory),
                autoescape=jinja2.select_autoescape(),
                enable_async=True,
            )
        elif not isinstance(env, jinja2.Environment):
            raise TypeError(f"env must be a jinja2.Environment, not {type(env).__name__}")
        elif not env.is_async:
            raise ValueError(
                "env must be created with enable_async=True: StreamingTemplates renders with "
                "generate_async() (keep a separate environment for Jinja2Templates)"
            )
        error_comment_chunk(error_comment)  # refuse a bad value now, not at the first request
        self.error_comment = error_comment
        super().__init__(env=env, context_processors=context_processors)
        env.globals.setdefault("flush", flush)
        env.filters.setdefault("await", await_filter)

    def stream(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        render: RenderPath = "auto",
        timeout: float | None = None,
        idle_timeout: float | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_shutdown: ShutdownPolicy | str = ShutdownPolicy.WAIT,
        compress: CompressOption = True,
    ) -> StreamingTemplateResponse:
        """Stream the template ``name`` rendered with ``context`` as the response to ``request``.

        The context gets ``request`` (unless it has one) and what each context processor
        returns, as with ``TemplateResponse``; the given mapping itself is not changed. A
        template that does not exist raises ``jinja2.TemplateNotFound`` here, in the endpoint.
        ``render`` is :class:`StreamingTemplateResponse`'s (``"auto"``, ``"thread"``,
        ``"async"``).

        Example::

            return templates.stream(request, "items.html", {"items": stream_items()})
        """
        if context is not None and not isinstance(context, Mapping):
            raise TypeError(f"context must be a mapping or None, not {type(context).__name__}")
        merged = dict(context or {})
        merged.setdefault("request", request)
        for processor in self.context_processors:
            merged.update(processor(request))
        template = self.get_template(name)
        return StreamingTemplateResponse(
            template,
            merged,
            status_code,
            headers,
            media_type,
            background,
            render=render,
            error_comment=self.error_comment,
            timeout=timeout,
            idle_timeout=idle_timeout,
            on_outcome=on_outcome,
            on_shutdown=on_shutdown,
            compress=compress,
        )
