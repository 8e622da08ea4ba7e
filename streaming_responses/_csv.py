"""``CSVResponse``: rows to CSV bytes, in batches, through the chunk pump.

This module owns CSV encoding: the csv module's quoting for any dialect, the optional BOM, the
response charset, and the formula-injection escape. The rule that keeps it simple: the encoder
(:class:`CSVEncoder`) is plain code tested without an event loop; the response class only
validates its arguments and hands a producer to the core.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Mapping, Sequence
from numbers import Number
from typing import Any, ClassVar

from starlette.background import BackgroundTask

from ._compression import CompressOption
from ._core import OutcomeCallback
from ._disposition import content_disposition
from ._options import StreamOptions
from ._producers import Producer
from ._records import RowReader, check_rows_content, tabular_producer
from ._shutdown import ShutdownPolicy
from ._streaming import StreamingResponse
from ._types import Content

#: OWASP "CSV injection": a spreadsheet treats a cell starting with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\x00")
#: Row types the csv writer takes as they are (anything else goes through ``RowReader``).
_PLAIN_ROW = frozenset({list, tuple})
#: Codecs that write a byte order mark of their own at the start of the stream.
_SELF_MARKING = frozenset({"utf-16", "utf-32", "utf-8-sig"})


def escape_formula(cell: Any) -> Any:
    """Prefix a text cell that a spreadsheet would run as a formula with ``'``.

    Numbers are left alone (``-5`` stays a number); other values are judged by their text.

    >>> escape_formula("=SUM(A1:A9)"), escape_formula(-5), escape_formula("plain")
    ("'=SUM(A1:A9)", -5, 'plain')
    """
    if cell is None or isinstance(cell, Number):
        return cell
    text = cell if isinstance(cell, str) else str(cell)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return cell


class CSVEncoder:
    """Encodes rows as CSV into one reusable ``io.StringIO``; hands it out as bytes.

    >>> encoder = CSVEncoder(columns=("name", "note"))
    >>> encoder.add({"name": "Ada", "note": 'says "hi", twice'})
    >>> encoder.finish()
    b'name,note\\r\\nAda,"says ""hi"", twice"\\r\\n'
    """

    def __init__(
        self,
        *,
        columns: Sequence[str] | None = None,
        header: bool = True,
        dialect: str | csv.Dialect | type[csv.Dialect] = "excel",
        encoding: str = "utf-8",
        bom: bool = False,
        escape_formulas: bool = False,
        **fmtparams: Any,
    ) -> None:
        try:
            codec = codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise ValueError(f"encoding {encoding!r} is not a known text encoding") from None
        self._buffer = io.StringIO()
        try:
            self._writer = csv.writer(self._buffer, dialect, **fmtparams)
        except csv.Error as exc:
            raise ValueError(f"bad CSV dialect or format parameters: {exc}") from None
        self._encode = codecs.getincrementalencoder(encoding)("strict").encode
        self._reader = RowReader(columns)
        self._header = header
        self._escape = escape_formulas
        self.encoding = encoding
        self.count = 0
        self._first_in_batch = 1
        if bom and codec.name not in _SELF_MARKING:
            self._buffer.write("\ufeff")
        if header and self._reader.columns is not None:
            self._write_header(self._reader.columns)
        self._header_due = header and self._reader.columns is None

    def _write_header(self, columns: Sequence[str]) -> None:
        self._writer.writerow([escape_formula(name) for name in columns] if self._escape else columns)

    def add(self, row: object) -> None:
        """Encode one row; raise ``TypeError``/``ValueError`` naming its 1-based position."""
        position = self.count + 1
        cells = self._reader.cells(row, position)
        if self._header_due:
            self._header_due = False
            if self._reader.columns is not None:
                self._write_header(self._reader.columns)
        if self._escape:
            cells = [escape_formula(cell) for cell in cells]
        try:
            self._writer.writerow(cells)
        except csv.Error as exc:
            raise ValueError(f"row {position} cannot be written as CSV: {exc}") from None
        self.count = position

    def add_many(self, rows: list[Any]) -> None:
        """Encode ``rows`` in order; plain lists and tuples go to ``writerows`` in one call."""
        if self._header_due and rows:
            self.add(rows[0])
            rows = rows[1:]
        if self._escape or not all(map(_PLAIN_ROW.__contains__, map(type, rows))):
            for row in rows:
                self.add(row)
            return
        buffer = self._buffer
        mark = buffer.tell()
        try:
            self._writer.writerows(rows)
        except csv.Error:
            # Write them again one by one: the row that fails is then named by its position.
            buffer.seek(mark)
            buffer.truncate()
            for row in rows:
                self.add(row)
        else:
            self.count += len(rows)

    def pending(self) -> int:
        """Characters waiting in the buffer."""
        return self._buffer.tell()

    def take(self) -> bytes:
        """Empty the buffer and return its encoded bytes."""
        buffer = self._buffer
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        first, self._first_in_batch = self._first_in_batch, self.count + 1
        try:
            return self._encode(text)
        except UnicodeEncodeError as exc:
            rows = f"row {first}" if first >= self.count else f"rows {first} to {self.count}"
            raise ValueError(
                f"{exc.object[exc.start : exc.end]!r} in {rows} cannot be encoded as {self.encoding}"
            ) from None

    def finish(self) -> bytes:
        """What is buffered, after a header that was still due (an empty table with columns)."""
        self._header_due = False
        return self.take() + self._encode("", True)


class CSVResponse(StreamingResponse):
    """Stream rows as CSV: correct quoting, batched encoding, any dialect.

    ``content`` is a sync or async iterable of rows. A row is a sequence of cells, a mapping
    (``columns=`` gives the header and order; without it, the first mapping's keys), a dataclass
    instance or a pydantic model (its fields). ``None`` is an empty cell. Sync iterables are
    iterated and encoded in worker threads, about 64 KiB per chunk.

    Example::

        @app.get("/report.csv")
        def report():
            rows = ({"id": n, "name": f"item {n}"} for n in range(100_000))
            return CSVResponse(rows, filename="report.csv", bom=True)

    Keyword arguments: ``columns``, ``header`` (``False`` omits the header row), ``filename``
    (sends ``Content-Disposition: attachment``), ``dialect`` and any csv format parameter
    (``delimiter=";"``), ``encoding`` (also the Content-Type charset), ``bom`` (one byte order
    mark at the start, for Excel), ``escape_formulas`` (prefix cells starting with ``= + - @``,
    tab, CR or NUL with ``'``), ``compress`` (on by default: zstd, br or gzip as the client
    prefers; ``False`` turns it off), and ``timeout``, ``idle_timeout``, ``on_outcome``,
    ``on_shutdown`` as for :class:`StreamingResponse`. A bad row raises ``TypeError`` or
    ``ValueError`` naming its 1-based position: a 500 before the first chunk, an aborted
    stream after it.
    """

    media_type = "text/csv"
    #: Bytes per message and per encoded batch. Small enough that a stalled download holds
    #: little (about 500 KiB of server memory per slow client, measured with 200 of them).
    message_bytes: ClassVar[int] = 32 * 1024

    def __init__(
        self,
        content: Content,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = "text/csv",
        background: BackgroundTask | None = None,
        *,
        columns: Sequence[str] | None = None,
        header: bool = True,
        filename: str | None = None,
        dialect: str | csv.Dialect | type[csv.Dialect] = "excel",
        encoding: str = "utf-8",
        bom: bool = False,
        escape_formulas: bool = False,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_shutdown: ShutdownPolicy | str = ShutdownPolicy.WAIT,
        compress: CompressOption = True,
        **fmtparams: Any,
    ) -> None:
        check_rows_content(content, "CSVResponse")
        self.encoder = CSVEncoder(
            columns=columns,
            header=header,
            dialect=dialect,
            encoding=encoding,
            bom=bom,
            escape_formulas=escape_formulas,
            **fmtparams,
        )
        self.charset = encoding
        merged = dict(headers or {})
        if filename is not None:
            if any(name.lower() == "content-disposition" for name in merged):
                raise TypeError("pass either filename= or a Content-Disposition header, not both")
            merged["content-disposition"] = content_disposition(filename, "attachment")
        self._setup(
            content, status_code, merged, media_type, background, StreamOptions.from_arguments(locals())
        )

    def make_producer(self, content: Content) -> Producer:
        """Rows encoded as CSV in batches: async rows on the loop, sync rows in worker threads."""
        # Batches of one message: a stalled download holds one batch queued, no more.
        return tabular_producer(content, self.encoder, self.message_bytes)
