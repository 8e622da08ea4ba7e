"""``JSONLinesResponse``: one JSON document per line, encoded in batches, through the chunk pump.

This module owns the JSON Lines framing of streamed items: one line per item, lines gathered
into one buffer per batch, and errors that name the item's 1-based position. What an item
becomes, which encoder writes it and what is refused is the JSON policy's (``_json.py``), the
same as for event data. The rule that keeps it simple: :class:`JSONLinesEncoder` is plain code
tested without an event loop; the response class only hands a producer to the core.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.background import BackgroundTask

from ._compression import CompressOption
from ._core import OutcomeCallback
from ._json import pick
from ._options import StreamOptions
from ._producers import Producer
from ._records import check_rows_content, tabular_producer
from ._shutdown import ShutdownPolicy
from ._streaming import StreamingResponse
from ._types import Content


class JSONLinesEncoder:
    """Encodes items as JSON Lines into one reusable buffer, handed out as bytes per batch.

    >>> encoder = JSONLinesEncoder("json")
    >>> encoder.add({"id": 1, "tags": ["a"]}); encoder.add(None)
    >>> encoder.finish()
    b'{"id":1,"tags":["a"]}\\nnull\\n'
    """

    def __init__(self, encoder: str = "auto") -> None:
        picked = pick(encoder)
        self.name = picked.name
        self._line = picked.line
        # One bytearray: each line is copied in and freed at once. Keeping a batch of lines as
        # separate bytes objects (for a join) made glibc return and re-fault heap pages for
        # every batch, which cost more than the encoding itself.
        self._buffer = bytearray()
        self.count = 0

    def add(self, item: object) -> None:
        """Encode one item; raise ``TypeError``/``ValueError`` naming its 1-based position."""
        try:
            self._buffer += self._line(item)
        except (TypeError, ValueError) as exc:
            raise _item_error(exc, self.count + 1) from None
        self.count += 1

    def add_many(self, items: list[Any]) -> None:
        """Encode ``items`` in order, as ``add`` would one by one."""
        line = self._line
        buffer = self._buffer
        count = self.count
        try:
            for item in items:
                buffer += line(item)
                count += 1
        except (TypeError, ValueError) as exc:
            raise _item_error(exc, count + 1) from None
        finally:
            self.count = count

    def pending(self) -> int:
        """Bytes waiting in the batch."""
        return len(self._buffer)

    def take(self) -> bytes:
        """Empty the batch and return its bytes."""
        buffer = self._buffer
        if not buffer:
            return b""
        out = bytes(buffer)
        buffer.clear()
        return out

    finish = take


def _item_error(exc: TypeError | ValueError, position: int) -> Exception:
    kind = TypeError if isinstance(exc, TypeError) else ValueError
    return kind(f"item {position} cannot be encoded as JSON: {exc}")


class JSONLinesResponse(StreamingResponse):
    """Stream items as JSON Lines (``application/jsonl``): one JSON document per line.

    ``content`` is a sync or async iterable of dicts, lists, primitives, dataclasses or pydantic
    models (serialised as FastAPI would: pydantic models by alias, datetimes in ISO 8601; see
    docs/json.md). NaN and infinities raise ``ValueError`` naming the item's 1-based position
    instead of writing invalid JSON. Items are encoded in batches (about 64 KiB per chunk);
    sync iterables in worker threads.

    Example::

        @app.get("/events", response_class=JSONLinesResponse)
        async def events():
            async for event in feed():
                yield {"kind": event.kind, "at": event.at}

    ``encoder`` picks ``"orjson"``, ``"pydantic-core"`` or ``"json"`` (``"auto"``: the fastest
    installed). ``compress`` is on by default (zstd, br or gzip as the client prefers; ``False``
    turns it off). ``timeout``, ``idle_timeout``, ``on_outcome`` and ``on_shutdown`` are as for
    :class:`StreamingResponse`.
    """

    media_type = "application/jsonl"

    def __init__(
        self,
        content: Content,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = "application/jsonl",
        background: BackgroundTask | None = None,
        *,
        encoder: str = "auto",
        timeout: float | None = None,
        idle_timeout: float | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_shutdown: ShutdownPolicy | str = ShutdownPolicy.WAIT,
        compress: CompressOption = True,
    ) -> None:
        check_rows_content(content, "JSONLinesResponse")
        self.encoder = JSONLinesEncoder(encoder)
        self._setup(
            content, status_code, headers, media_type, background, StreamOptions.from_arguments(locals())
        )

    def make_producer(self, content: Content) -> Producer:
        """Items encoded as JSON Lines in batches: async items on the loop, sync ones in threads."""
        return tabular_producer(content, self.encoder)
