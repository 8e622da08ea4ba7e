"""Rows and records: how one user-supplied row becomes cells, and how rows become batches.

This module owns two things every tabular adapter (CSV, JSON Lines) shares:

* the pure reading of a row: a sequence, a mapping, a dataclass instance or a pydantic model,
  each turned into the values of known columns, with a clear error naming the row's position
  (1-based: the first row of ``content`` is row 1; a header row is not counted);
* batching: a :class:`BatchEncoder` encodes many rows into one reusable buffer, and two
  drivers hand its batches to the core. Sync iterables are wrapped in a generator the core runs
  in its worker threads (:func:`sync_batches`); async iterables run in
  :class:`AsyncBatchProducer`, which hands over whatever is encoded as soon as the source has
  to wait. The rule that keeps it simple: nothing here sends, and nothing here decides framing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from ._loops import current_loop
from ._producers import ChunkQueue, IdleHandOver, Producer, ResumeAfterItems

#: Encoded characters (about bytes) gathered into one chunk before it is handed to the core.
BATCH_SIZE = 64 * 1024
#: A sync row that took at least this long (seconds) to arrive is handed over at once, with
#: its batch: a slow source gains nothing from batching and must not be held back.
SLOW_ROW = 0.001
#: Sync rows are gathered into groups of at most this many and handed to the encoder's
#: ``add_many`` together, which encodes a group of plain rows in one C call.
ROW_GROUP = 128

_TEXT_TYPES = (str, bytes, bytearray, memoryview)


def record_fields(row: object) -> tuple[str, ...] | None:
    """The field names of a dataclass instance or pydantic model, else ``None``.

    >>> @dataclasses.dataclass
    ... class Point:
    ...     x: int
    ...     y: int
    >>> record_fields(Point(1, 2)), record_fields((1, 2))
    (('x', 'y'), None)
    """
    kind = type(row)
    pydantic_fields = getattr(kind, "__pydantic_fields__", None)
    if isinstance(pydantic_fields, dict) and not isinstance(row, type):
        return tuple(pydantic_fields)
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return tuple(field.name for field in dataclasses.fields(row))
    return None


def describe_row(row: object) -> str:
    """A short description of a row for error messages."""
    return f"{type(row).__name__} {row!r:.60}"


class RowReader:
    """Turns rows into cell lists in column order, learning the columns from the first record.

    ``columns`` given up front fixes the header and order; without it the first mapping's keys
    (or the first record's fields) become the columns. Mappings may leave columns out (an empty
    cell) but may not bring keys outside them.

    >>> reader = RowReader(None)
    >>> reader.cells({"a": 1, "b": None}, 1), reader.columns
    ([1, None], ('a', 'b'))
    >>> reader.cells(["x", 2], 2)
    ['x', 2]
    """

    def __init__(self, columns: Sequence[str] | None) -> None:
        if columns is not None:
            if isinstance(columns, (str, bytes)) or not all(isinstance(name, str) for name in columns):
                raise TypeError("columns must be a sequence of str, for example ('id', 'name')")
            columns = tuple(columns)
            if len(set(columns)) != len(columns):
                raise ValueError(f"columns has duplicate names: {columns!r}")
        self.columns: tuple[str, ...] | None = columns
        self._column_set: frozenset[str] = frozenset(columns or ())

    def learn(self, row: object) -> tuple[str, ...] | None:
        """Set the columns from ``row`` (a mapping or record) if they are not known yet."""
        if self.columns is None:
            names = tuple(str(key) for key in row) if isinstance(row, Mapping) else record_fields(row)
            if names is not None:
                self.columns = names
                self._column_set = frozenset(names)
        return self.columns

    def cells(self, row: object, position: int) -> Sequence[Any]:
        """The cells of ``row`` (the ``position``-th row) in column order."""
        kind = type(row)
        if kind is list or kind is tuple:
            return row  # type: ignore[return-value]
        if kind is dict or isinstance(row, Mapping):
            return self._mapping_cells(row, position)  # type: ignore[arg-type]
        if isinstance(row, _TEXT_TYPES):
            raise TypeError(
                f"row {position} is a {kind.__name__}, not a row: a row is a sequence of cells "
                f"(wrap it: [{row!r:.40}]), a mapping, a dataclass or a pydantic model"
            )
        names = record_fields(row)
        if names is not None:
            columns = self.columns if self.columns is not None else self.learn(row)
            assert columns is not None
            try:
                return [getattr(row, name) for name in columns]
            except AttributeError as exc:
                raise ValueError(f"row {position} ({describe_row(row)}) has no field {exc.name!r}") from None
        if isinstance(row, Sequence):
            return row
        raise TypeError(
            f"row {position} is a {kind.__name__} ({row!r:.60}); a row must be a sequence of cells, "
            "a mapping, a dataclass or a pydantic model"
        )

    def _mapping_cells(self, row: Mapping[Any, Any], position: int) -> list[Any]:
        columns = self.columns if self.columns is not None else self.learn(row)
        assert columns is not None
        if not row.keys() <= self._column_set:
            unknown = next(key for key in row if key not in self._column_set)
            raise ValueError(
                f"row {position} has the key {unknown!r}, which is not one of the columns {columns!r}"
            )
        get = row.get
        return [get(name) for name in columns]


class BatchEncoder(Protocol):
    """Encodes rows into one reusable buffer; hands the buffer out as bytes."""

    #: How many rows were added so far.
    count: int

    def add(self, row: object) -> None:
        """Encode one row into the buffer; raise TypeError/ValueError naming its position."""

    def add_many(self, rows: list[Any]) -> None:
        """Encode ``rows`` in order, as ``add`` would one by one (the same errors)."""

    def pending(self) -> int:
        """About how many bytes wait in the buffer."""

    def take(self) -> bytes:
        """Empty the buffer and return its bytes (possibly empty)."""

    def finish(self) -> bytes:
        """The last bytes of the body: what is buffered, and anything owed at the end."""


def sync_batches(rows: Iterable[Any], encoder: BatchEncoder, batch_size: int = BATCH_SIZE) -> Iterator[bytes]:
    """Encode ``rows`` and yield them in batches of about ``batch_size`` bytes.

    Run by the core in its worker threads, so the encoding happens there too, a batch per
    thread hop. Rows reach the encoder in groups of up to ``ROW_GROUP`` (its ``add_many``). A
    row that was slow to arrive (``SLOW_ROW``) is encoded and handed over at once with the rows
    before it, so a slow source streams row by row instead of waiting for a full batch.

    >>> class Lines:
    ...     count = 0
    ...     def __init__(self): self.parts = []
    ...     def add_many(self, rows): self.parts.extend(rows)
    ...     def pending(self): return len(self.parts)
    ...     def take(self): out, self.parts = "".join(self.parts).encode(), []; return out
    ...     finish = take
    >>> list(sync_batches(["a", "b", "c"], Lines(), batch_size=1))
    [b'abc']
    """
    iterator = iter(rows)
    add_many = encoder.add_many
    pending = encoder.pending
    take = encoder.take
    clock = time.monotonic
    group: list[Any] = []
    keep = group.append
    try:
        last = clock()
        for row in iterator:
            keep(row)
            now = clock()
            slow = now - last >= SLOW_ROW
            if slow or len(group) >= ROW_GROUP:
                add_many(group)
                group.clear()
                if slow or pending() >= batch_size:
                    yield take()
                    now = clock()
            last = now
        add_many(group)
        tail = encoder.finish()
        if tail:
            yield tail
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def declare_asyncio() -> None:
    """Tell sniffio, in the current task's context only, that it runs on asyncio.

    ``anyio.run`` does this for the tasks it starts; servers start their loop with asyncio
    itself, so every anyio call in a producer (FastAPI's ``anyio.sleep(0)`` after each item
    among them) has sniffio detect the library anew, which cost 0.6 µs per call here. Call it
    only from a task known to run on asyncio. Without sniffio, anyio asks asyncio directly.
    """
    try:
        import sniffio
    except ImportError:  # pragma: no cover - sniffio is installed in the test environment
        return
    if sniffio.current_async_library_cvar.get() is None:
        sniffio.current_async_library_cvar.set("asyncio")


class AsyncBatchProducer(Producer):
    """An async iterable of rows, encoded in batches of what is available.

    Rows that arrive without the source waiting are encoded into one batch. As soon as the
    source has to wait (it did not produce a row during a whole event-loop turn), what is
    encoded is handed to the core, so nothing is held back behind a slow row. A bare
    ``await asyncio.sleep(0)`` between rows (FastAPI adds one after each) does not split a batch.
    """

    def __init__(self, rows: AsyncIterable[Any], encoder: BatchEncoder, batch_size: int = BATCH_SIZE) -> None:
        self._rows = rows
        self._iterator: AsyncIterator[Any] | None = None
        self._encoder = encoder
        self._batch_size = batch_size

    async def run(self, queue: ChunkQueue) -> None:
        encoder = self._encoder
        iterator = self._iterator = aiter(self._rows)
        if current_loop().name == "asyncio":
            declare_asyncio()
        # FastAPI's bare yield after each row is skipped while rows flow (ResumeAfterItems,
        # counting the rows the encoder took in), so a row costs no loop turn of its own.
        await ResumeAfterItems(self._fill(iterator, queue), queue, lambda: encoder.count)
        tail = encoder.finish()
        if tail:
            await queue.push(tail)

    async def _fill(self, iterator: AsyncIterator[Any], queue: ChunkQueue) -> None:
        encoder = self._encoder
        batch_size = self._batch_size
        add = encoder.add
        pending = encoder.pending

        def hand_over() -> None:
            chunk = encoder.take()
            if chunk:
                queue.put(chunk)

        idle = IdleHandOver(lambda: encoder.count, hand_over)
        try:
            async for row in iterator:
                add(row)
                if pending() >= batch_size:
                    queue.put(encoder.take())
                elif idle.handle is None:
                    idle.arm()
                if queue.produced - queue.taken >= queue.bound:  # by this batch, or an idle hand-over
                    await queue.wait_for_space()
        finally:
            idle.cancel()

    async def close(self) -> None:
        target: object = self._iterator if self._iterator is not None else self._rows
        aclose = getattr(target, "aclose", None)
        if aclose is not None:
            await aclose()


def tabular_producer(content: object, encoder: BatchEncoder, batch_size: int = BATCH_SIZE) -> Producer:
    """The producer for a tabular response: async rows in :class:`AsyncBatchProducer`, sync
    rows (lists included, so that encoding never blocks the event loop) in worker threads,
    in batches of about ``batch_size`` bytes."""
    from ._producers import SyncIterableProducer

    if isinstance(content, AsyncIterable):
        return AsyncBatchProducer(content, encoder, batch_size)
    assert isinstance(content, Iterable)
    return SyncIterableProducer(sync_batches(content, encoder, batch_size))


def check_rows_content(content: object, what: str) -> None:
    """Refuse ``content`` that cannot be a source of rows, with a clear ``TypeError``."""
    if isinstance(content, (str, bytes, bytearray, memoryview, Mapping)):
        raise TypeError(
            f"{what} content must be an iterable of rows (sync or async), not a single "
            f"{type(content).__name__}"
        )
    if not isinstance(content, (Iterable, AsyncIterable)):
        raise TypeError(
            f"{what} content must be an iterable or async iterable of rows, not {type(content).__name__}"
        )
