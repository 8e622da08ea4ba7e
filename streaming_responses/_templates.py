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
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from os import PathLike
from typing import Any, ClassVar

import anyio.lowlevel

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
from ._producers import ChunkQueue, IdleHandOver, Producer, fill_queue
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

#: The template producer of the render running in the current task (read by ``flush()``).
_RENDERING: contextvars.ContextVar[TemplateProducer] = contextvars.ContextVar("streaming_responses_render")


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
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - only under trio: one hand-over per fragment
            await fill_queue(self._render, queue)
            return
        parts = self._pending
        append = parts.append
        chunk_bytes = self._head_bytes
        size = 0
        idle = IdleHandOver(loop, parts.__len__, lambda: self._put_pending(queue))
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


async def flush() -> str:
    """The template global ``flush()``: ``{{ flush() }}`` sends what is rendered so far.

    Outside a streamed render (``render_async()``, for example) it does nothing. It renders as
    an empty string.
    """
    producer = _RENDERING.get(None)
    if producer is not None:
        await producer.flush()
    return ""


async def await_filter(value: Any) -> Any:
    """The template filter ``await``: ``{{ user|await }}`` renders the result of an awaitable.

    Jinja's async mode awaits the results of calls and attribute lookups, not plain variables;
    this filter awaits one explicitly. Anything that is not awaitable passes through unchanged.
    """
    if inspect.isawaitable(value):
        return await value
    return value


class StreamingTemplateResponse(StreamingResponse):
    """A page streamed from a Jinja template while it renders, through the chunk pump.

    Usually made by :meth:`StreamingTemplates.stream`. ``template`` must come from an
    environment created with ``enable_async=True``; it is rendered with ``generate_async()``,
    so ``context`` may hold async iterables and awaitables. The two are kept as the attributes
    ``template`` and ``context``, as Starlette's template response does.

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
        self._setup(
            render_fragments(template, context),
            status_code,
            headers,
            media_type,
            background,
            StreamOptions.from_arguments(locals()),
        )

    def make_producer(self, content: Content) -> Producer:
        """The template's fragments, held back until the first flush point, then batched."""
        assert isinstance(content, AsyncGenerator)
        return TemplateProducer(
            content, self.context, head_bytes=self.message_bytes, environment=self.template.environment
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
            error_comment=self.error_comment,
            timeout=timeout,
            idle_timeout=idle_timeout,
            on_outcome=on_outcome,
            on_shutdown=on_shutdown,
            compress=compress,
        )
