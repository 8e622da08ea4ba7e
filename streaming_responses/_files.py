"""``FileResponse``: files served with every HTTP feature, through the chunk pump.

This module owns the file side of a response: finding the file (or its precompressed sibling),
reading it off the event loop in large blocks, and turning the decision of
:func:`._conditional.decide` into a status, headers and a producer. It never calls ``send``: every
answer, 304, 412 and 416 included, is handed to the core like any other body, and on granian
the core sends whole files with ``http.response.pathsend``.

The rule that keeps it simple: ``prepare`` gathers facts (the request headers, one ``stat``)
and asks the pure functions of ``_conditional.py``; the only I/O after that is the producer's reads,
and a read that comes back short ends the stream as an error, never as a complete body.
"""

from __future__ import annotations

import inspect
import os
import secrets
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from mimetypes import guess_type
from typing import Any, ClassVar, Protocol, TypeAlias

import anyio
import anyio.to_thread
from starlette.background import BackgroundTask

from ._compression import CompressOption
from ._conditional import (
    ENCODING_SUFFIXES,
    MAX_RANGES,
    FileDecision,
    RangeNotSatisfiable,
    Validators,
    content_range,
    decide,
    format_http_date,
    make_etag,
    multipart_plan,
    parse_http_date,
    with_encoding,
)
from ._core import OutcomeCallback, PumpSettings
from ._disposition import content_disposition
from ._exceptions import FileChangedError, FileResponseError
from ._negotiation import negotiate_encoding
from ._options import StreamOptions
from ._producers import ChunkQueue, Producer
from ._shutdown import ShutdownPolicy
from ._streaming import CallPlan, StreamingResponse
from ._types import Content, RawHeaders, Scope

#: One piece of a body: literal bytes (multipart framing), or a half-open range of the file
#: (``stop`` is ``None``: read to the end of a file object of unknown size).
Segment: TypeAlias = "bytes | tuple[int, int | None]"

# Headers that describe the representation: dropped from 304 (RFC 9110 §15.4.5), 412 and 416
# answers, which carry no representation.
_REPRESENTATION_HEADERS = frozenset({b"content-type", b"content-disposition", b"content-encoding"})
# Headers this module computes for each answer; a value set by hand is replaced.
_COMPUTED_HEADERS = frozenset({b"content-length", b"content-range", b"etag", b"last-modified"})


# -- readers: one interface over a path, a sync file object and an async one ------------------


class _Reader(Protocol):
    blocks_read: int

    async def read(self, offset: int, size: int) -> bytes: ...

    async def close(self) -> None: ...

    def describe(self) -> str: ...


class _PathReader:
    """Reads a path with ``os.pread`` in worker threads; opens it with the first read."""

    def __init__(self, path: str, expected: os.stat_result | None) -> None:
        self.path = path
        self.expected = expected
        self.blocks_read = 0
        self._fd: int | None = None

    def describe(self) -> str:
        return f"the file at path {self.path}"

    def _open(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise FileChangedError(f"File at path {self.path} does not exist.") from None
        except OSError as exc:
            raise FileResponseError(f"File at path {self.path} cannot be read: {exc.strerror}") from exc
        self._fd = fd
        expected = self.expected
        if expected is not None:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino, now.st_size, now.st_mtime_ns) != (
                expected.st_dev,
                expected.st_ino,
                expected.st_size,
                expected.st_mtime_ns,
            ):
                raise FileChangedError(f"File at path {self.path} changed between its stat and its opening.")
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return fd

    def _read(self, offset: int, size: int) -> bytes:
        fd = self._fd if self._fd is not None else self._open()
        return os.pread(fd, size, offset)

    async def read(self, offset: int, size: int) -> bytes:
        # One thread hop per block: the open rides along with the first read.
        data = await anyio.to_thread.run_sync(self._read, offset, size)
        self.blocks_read += 1
        return data

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _as_bytes(data: object, where: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{where}.read() returned {type(data).__name__}, not bytes: open the file in binary mode")


class _FileObjectReader:
    """What the readers of file objects share: the object, where the body starts in it, and
    where the last read left it (a read elsewhere seeks first)."""

    def __init__(self, file: Any, base: int) -> None:
        self.file = file
        self.base = base
        self.position = 0
        self.blocks_read = 0

    def describe(self) -> str:
        return f"the file object {self.file!r:.80}"


class _SyncFileReader(_FileObjectReader):
    """A sync binary file object, read (and sought) in worker threads."""

    def _read(self, offset: int, size: int) -> bytes:
        if offset != self.position:
            self.file.seek(self.base + offset)
        data = _as_bytes(self.file.read(size), type(self.file).__name__)
        self.position = offset + len(data)
        return data

    async def read(self, offset: int, size: int) -> bytes:
        data = await anyio.to_thread.run_sync(self._read, offset, size)
        self.blocks_read += 1
        return data

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.file.close)


class _AsyncFileReader(_FileObjectReader):
    """An async file object (aiofiles, anyio): its ``read()`` does its own thread hop."""

    async def read(self, offset: int, size: int) -> bytes:
        if offset != self.position:
            await self.file.seek(self.base + offset)
        data = _as_bytes(await self.file.read(size), type(self.file).__name__)
        self.position = offset + len(data)
        self.blocks_read += 1
        return data

    async def close(self) -> None:
        close: Callable[[], object] | None = getattr(self.file, "aclose", None) or getattr(
            self.file, "close", None
        )
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result


class FileProducer(Producer):
    """Reads the segments of a body from a file into the core's queue, a block at a time.

    The queue holds at most one block ahead of the one being sent, so memory stays bounded by
    a few blocks however slow the client is. A read that returns nothing before a range is
    complete raises :class:`FileChangedError`.
    """

    def __init__(self, reader: _Reader, segments: Sequence[Segment], chunk_size: int) -> None:
        self.reader = reader
        self.segments = segments
        self.chunk_size = chunk_size

    @property
    def blocks_read(self) -> int:
        """How many blocks were read so far (for tests and metrics)."""
        return self.reader.blocks_read

    async def run(self, queue: ChunkQueue) -> None:
        reader = self.reader
        chunk_size = self.chunk_size
        try:
            for segment in self.segments:
                if isinstance(segment, bytes):
                    await queue.push(segment)
                    continue
                offset, stop = segment
                while stop is None or offset < stop:
                    wanted = chunk_size if stop is None else min(chunk_size, stop - offset)
                    data = await reader.read(offset, wanted)
                    if not data:
                        if stop is None:
                            break
                        raise FileChangedError(
                            f"{reader.describe()} ended at byte {offset}, before byte {stop} that was "
                            "expected: it shrank while it was being sent"
                        )
                    offset += len(data)
                    await queue.push(data)
        finally:
            with anyio.CancelScope(shield=True):
                await self.reader.close()

    async def close(self) -> None:
        await self.reader.close()


# -- what one request gets ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Selected:
    """The representation chosen for one request, and how to read it."""

    size: int | None
    mtime: float | None
    mtime_ns: int | None
    encoding: str | None
    #: The file to read and to pathsend, for path sources.
    path: str | None = None
    #: The stat the opened file must still match (``None`` when the application gave it).
    expected: os.stat_result | None = None
    #: Where a file object's body starts; ``None`` when it cannot seek (no ranges then).
    base: int | None = 0


@dataclass(frozen=True)
class _Plan:
    status_code: int
    raw_headers: RawHeaders
    length: int | None
    segments: tuple[Segment, ...]
    pathsend: str | None


def _stat_regular(path: str) -> os.stat_result | None:
    try:
        result = os.stat(path)
    except OSError:
        return None
    return result if stat.S_ISREG(result.st_mode) else None


def _stat_path(
    path: str, given: os.stat_result | None, encodings: Sequence[str]
) -> dict[str | None, os.stat_result]:
    """The stat of the file and of each existing precompressed sibling (run in a thread)."""
    found: dict[str | None, os.stat_result] = {}
    if given is None:
        try:
            result = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise FileResponseError(f"File at path {path} does not exist.") from None
        except OSError as exc:
            raise FileResponseError(f"File at path {path} cannot be read: {exc.strerror}") from exc
        if not stat.S_ISREG(result.st_mode):
            raise FileResponseError(f"File at path {path} is not a file.")
        found[None] = result
    for encoding in encodings:
        sibling = _stat_regular(path + ENCODING_SUFFIXES[encoding])
        if sibling is not None:
            found[encoding] = sibling
    return found


def _file_facts(file: Any, want_base: bool) -> tuple[os.stat_result | None, int | None]:
    """The fstat of a sync file object's regular file (if any) and its position (run in a thread)."""
    result: os.stat_result | None = None
    fileno = getattr(file, "fileno", None)
    if fileno is not None and not inspect.iscoroutinefunction(fileno):
        try:
            result = os.fstat(fileno())
        except (OSError, ValueError):  # io.UnsupportedOperation is both
            result = None
        if result is not None and not stat.S_ISREG(result.st_mode):
            result = None
    base: int | None = None
    seekable = getattr(file, "seekable", None)
    if want_base and seekable is not None and not inspect.iscoroutinefunction(seekable) and seekable():
        base = file.tell()
    return result, base


async def _async_base(file: Any) -> int | None:
    """Where an async file object's body starts, or ``None`` when it cannot seek."""
    if not (callable(getattr(file, "seek", None)) and callable(getattr(file, "tell", None))):
        return None
    try:
        position: int = await file.tell()
    except (OSError, ValueError):
        return None
    return position


def _pathsend(selected: _Selected) -> str | None:
    # ASGI "Path Send": the path must be absolute; the core sends it where the server offers it.
    return None if selected.path is None else os.path.abspath(selected.path)


def _append_vary(headers: RawHeaders, token: str) -> None:
    for index, (name, value) in enumerate(headers):
        if name == b"vary":
            present = {item.strip().lower() for item in value.decode("latin-1").split(",")}
            if token.lower() not in present and "*" not in present:
                headers[index] = (name, value + b", " + token.encode("latin-1"))
            return
    headers.append((b"vary", token.encode("latin-1")))


class FileResponse(StreamingResponse):
    """A file, served with conditional requests, ranges and precompressed siblings.

    A drop-in superset of :class:`starlette.responses.FileResponse`: the same eight positional
    arguments, the same ``RuntimeError`` (here :class:`FileResponseError`) for a missing path
    or a directory. On top of it: 304 and 412 answers to conditional requests, ``If-Range``,
    multipart ranges with a cap, precompressed ``.br``/``.gz`` siblings, file objects as
    sources, a file that shrinks mid-response reported as an error, and
    ``http.response.pathsend`` where the server offers it (granian).

    Example::

        @app.get("/report")
        async def report():
            return FileResponse("reports/2024.pdf", filename="Report 2024.pdf")

        @app.get("/assets/app.js")
        async def script():
            # app.js.br / app.js.gz, when present, are sent to clients that accept them.
            return FileResponse("static/app.js", precompressed=True)

        FileResponse(open("data.bin", "rb"))  # a file object; the response closes it

    Keyword arguments:

    * ``chunk_size``: bytes per read (default :attr:`chunk_size`); it also bounds what is read
      ahead of a slow client.
    * ``precompressed``: look for ``<path>.br`` and ``<path>.gz`` and send the one the client
      prefers (``Accept-Encoding``), with ``Content-Encoding``, ``Vary: Accept-Encoding`` and
      an ETag of its own.
    * ``size``: the length of a file object's body from its current position, sent as
      ``Content-Length`` (found with ``fstat`` for a real file when not given).
    * ``max_ranges``: how many ranges one Range header may ask for before it is ignored.
    * ``compress``: off by default (serve ``precompressed`` siblings instead); when on, a whole
      file answer (200) is compressed as it is read, as for
      :class:`~streaming_responses.StreamingResponse`. Ranges, pathsend and files that
      already have a ``Content-Encoding`` are never compressed.
    * ``timeout``, ``idle_timeout``, ``on_outcome``, ``on_shutdown``: as for
      :class:`~streaming_responses.StreamingResponse`.
    """

    #: Bytes per read. Measured on loopback with uvicorn (1 GiB, quiet machine): 2 MiB blocks
    #: send 8.9x faster than Starlette and hold about 6 MiB for a slow client; 1 MiB halves
    #: that memory at about half the CPU saving, 4 MiB and more gain little.
    chunk_size: int = 2 * 1024 * 1024
    #: The core's queue bound; FileResponse sets it to ``chunk_size`` for each response.
    message_bytes: ClassVar[int] = 2 * 1024 * 1024
    #: Range specs one request may ask for; more and the Range header is ignored (a 200).
    max_ranges: int = MAX_RANGES

    def __init__(
        self,
        path: str | os.PathLike[str] | Any,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        filename: str | None = None,
        stat_result: os.stat_result | None = None,
        content_disposition_type: str = "attachment",
        *,
        chunk_size: int | None = None,
        precompressed: bool = False,
        size: int | None = None,
        max_ranges: int | None = None,
        timeout: float | None = None,
        idle_timeout: float | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_shutdown: ShutdownPolicy | str = ShutdownPolicy.WAIT,
        compress: CompressOption = False,
    ) -> None:
        self.path = path
        self.file: Any = None
        self._path: str | None = None
        if isinstance(path, (str, os.PathLike)):
            fspath = os.fspath(path)
            if not isinstance(fspath, str):
                raise TypeError(f"path must be a str or os.PathLike[str], not bytes ({fspath!r:.80})")
            self._path = fspath
            if size is not None:
                raise TypeError("size= is for file objects; the size of a path comes from the file")
        elif callable(getattr(path, "read", None)):
            self.file = path
            if precompressed:
                raise ValueError("precompressed=True needs a path: the siblings are found by file name")
        else:
            raise TypeError(
                f"path must be a str, an os.PathLike or a binary file object with read(), "
                f"not {type(path).__name__}"
            )
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise ValueError(f"size must be a non-negative int or None, got {size!r}")
        if stat_result is not None and not isinstance(stat_result, os.stat_result):
            raise TypeError(f"stat_result must be an os.stat_result, not {type(stat_result).__name__}")
        if filename is not None and not isinstance(filename, str):
            raise TypeError(f"filename must be a str or None, not {type(filename).__name__}")
        self.chunk_size = self._positive(chunk_size, "chunk_size", type(self).chunk_size)
        self.max_ranges = self._positive(max_ranges, "max_ranges", type(self).max_ranges)
        self.filename = filename
        self.stat_result = stat_result
        self.size = size
        self.precompressed = bool(precompressed)
        self.content_disposition_type = content_disposition_type
        if media_type is None:
            name = filename or self._path or getattr(self.file, "name", None)
            guessed = guess_type(name)[0] if isinstance(name, str) else None
            media_type = guessed or "application/octet-stream"
        self.content = ()
        self._setup_response(
            status_code, headers, media_type, background, StreamOptions.from_arguments(locals())
        )
        self.headers.setdefault("accept-ranges", "bytes")
        if filename is not None:
            self.headers.setdefault(
                "content-disposition", content_disposition(filename, content_disposition_type)
            )

    @staticmethod
    def _positive(value: int | None, name: str, default: int) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
        return value

    # -- per request -------------------------------------------------------------------------

    async def prepare(self, scope: Scope) -> CallPlan:
        """The plan of one request: the status, headers and length it gets, and its reader."""
        try:
            plan, reader = await self._prepare(scope)
        except BaseException:
            if self.file is not None:
                with anyio.CancelScope(shield=True):
                    await self._close_file()
            raise
        settings = replace(
            self.pump_settings(),
            status_code=plan.status_code,
            raw_headers=plan.raw_headers,
            declared_length=plan.length,
            pathsend=plan.pathsend,
        )
        return CallPlan(settings, FileProducer(reader, plan.segments, self.chunk_size))

    def make_producer(self, content: Content) -> Producer:
        """Not used: a file's producer depends on the request (see :meth:`prepare`)."""
        raise NotImplementedError("FileResponse builds its producer per request, in prepare()")

    async def _close_file(self) -> None:
        if inspect.iscoroutinefunction(getattr(self.file, "read", None)):
            await _AsyncFileReader(self.file, 0).close()
        else:
            await _SyncFileReader(self.file, 0).close()

    def pump_settings(self) -> PumpSettings:
        """The settings handed to the core; :meth:`prepare` adds what the request decided."""
        return replace(super().pump_settings(), message_bytes=self.chunk_size)

    async def _select(self, request_headers: Sequence[tuple[str, str]]) -> _Selected:
        """Find the representation to serve: one thread hop for the stats a request needs."""
        if self._path is not None:
            return await self._select_path(self._path, request_headers)
        return await self._select_file_object(self.file)

    async def _select_path(self, path: str, request_headers: Sequence[tuple[str, str]]) -> _Selected:
        encodings = tuple(ENCODING_SUFFIXES) if self.precompressed else ()
        given = self.stat_result
        if given is None or encodings:
            found = await anyio.to_thread.run_sync(_stat_path, path, given, encodings)
        else:
            found = {}
        accept = [value for name, value in request_headers if name == "accept-encoding"]
        encoding = negotiate_encoding(
            ", ".join(accept) if accept else None, [e for e in encodings if e in found]
        )
        if encoding is None:
            chosen = given if given is not None else found[None]
            expected = None if given is not None else chosen
            return _Selected(chosen.st_size, chosen.st_mtime, chosen.st_mtime_ns, None, path, expected)
        chosen = found[encoding]
        sibling = path + ENCODING_SUFFIXES[encoding]
        return _Selected(chosen.st_size, chosen.st_mtime, chosen.st_mtime_ns, encoding, sibling, chosen)

    async def _select_file_object(self, file: Any) -> _Selected:
        is_async = inspect.iscoroutinefunction(getattr(file, "read", None))
        given = self.stat_result
        facts, base = await anyio.to_thread.run_sync(_file_facts, file, not is_async)
        if is_async:
            base = await _async_base(file)
        source = given if given is not None else facts
        size = self.size
        if size is None and source is not None:
            size = max(source.st_size - (base or 0), 0)
        mtime = None if source is None else source.st_mtime
        mtime_ns = None if source is None else source.st_mtime_ns
        return _Selected(size, mtime, mtime_ns, None, base=base)

    async def _prepare(self, scope: Scope) -> tuple[_Plan, _Reader]:
        request_headers = [
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in scope.get("headers", ())
        ]
        selected = await self._select(request_headers)
        plan = self._plan_for(scope.get("method", "GET"), request_headers, selected)
        reader: _Reader
        if selected.path is not None:
            reader = _PathReader(selected.path, selected.expected)
        elif inspect.iscoroutinefunction(getattr(self.file, "read", None)):
            reader = _AsyncFileReader(self.file, selected.base or 0)
        else:
            reader = _SyncFileReader(self.file, selected.base or 0)
        return plan, reader

    def _validators(self, selected: _Selected) -> tuple[Validators, RawHeaders]:
        """The validators for the decisions, and the ETag/Last-Modified headers that carry them."""
        given_etag = self.headers.get("etag")
        given_modified = self.headers.get("last-modified")
        etag: str | None
        if given_etag is not None:
            etag = with_encoding(given_etag, selected.encoding)
        elif selected.size is not None and selected.mtime_ns is not None:
            etag = make_etag(selected.size, selected.mtime_ns, selected.encoding)
        else:
            etag = None
        modified_header = given_modified
        if modified_header is None and selected.mtime is not None:
            modified_header = format_http_date(selected.mtime)
        modified = None if modified_header is None else parse_http_date(modified_header)
        headers: RawHeaders = []
        if etag is not None:
            headers.append((b"etag", etag.encode("latin-1")))
        if modified_header is not None:
            headers.append((b"last-modified", modified_header.encode("latin-1")))
        return Validators(etag, modified), headers

    def _plan_for(
        self, method: str, request_headers: Sequence[tuple[str, str]], selected: _Selected
    ) -> _Plan:
        validators, validator_headers = self._validators(selected)
        base = [(name, value) for name, value in self.raw_headers if name not in _COMPUTED_HEADERS]
        base.extend(validator_headers)
        if self.precompressed:
            _append_vary(base, "Accept-Encoding")
        if selected.encoding is not None:
            base = [(name, value) for name, value in base if name != b"content-encoding"]
            base.append((b"content-encoding", selected.encoding.encode("latin-1")))
        size = selected.size
        if size is None or selected.base is None:
            # RFC 9110 §14.3: a source that cannot seek, or of unknown length, serves no ranges.
            base = [(name, b"none" if name == b"accept-ranges" else value) for name, value in base]
        whole: tuple[Segment, ...] = ((0, size),)
        if self.status_code != 200:
            # RFC 9110 §13.2.1: preconditions apply to what would be a 2xx; an error page or a
            # custom status is sent whole, as Starlette does.
            return _Plan(self.status_code, base, size, whole, _pathsend(selected))
        try:
            decision = decide(
                method,
                request_headers,
                validators=validators,
                size=size,
                now=time.time(),
                ranges_allowed=selected.base is not None,
                max_ranges=self.max_ranges,
                # The parts of a multipart body cannot each carry the Content-Encoding of the
                # whole, so an encoded representation honours a single range only.
                multiple_ranges_allowed=selected.encoding is None,
            )
        except RangeNotSatisfiable as exc:
            headers = [(name, value) for name, value in base if name not in _REPRESENTATION_HEADERS]
            headers.append((b"content-range", exc.content_range.encode("latin-1")))
            return _Plan(416, headers, 0, (), None)
        return self._answer(decision, base, selected)

    def _answer(self, decision: FileDecision, base: RawHeaders, selected: _Selected) -> _Plan:
        status = decision.status_code
        size = selected.size
        if status == 200:
            return _Plan(200, base, size, ((0, size),), _pathsend(selected))
        if status in (304, 412):
            headers = [(name, value) for name, value in base if name not in _REPRESENTATION_HEADERS]
            return _Plan(status, headers, None if status == 304 else 0, (), None)
        assert status == 206
        assert size is not None
        ranges = decision.ranges
        if len(ranges) == 1:
            start, stop = ranges[0]
            headers = [*base, (b"content-range", content_range(start, stop, size).encode("latin-1"))]
            return _Plan(206, headers, stop - start, ((start, stop),), None)
        content_type = next(
            (value.decode("latin-1") for name, value in base if name == b"content-type"), None
        )
        multipart = multipart_plan(ranges, size, content_type, secrets.token_hex(16))
        headers = [(name, value) for name, value in base if name != b"content-type"]
        headers.append((b"content-type", multipart.content_type.encode("latin-1")))
        segments: list[Segment] = []
        for head, part in zip(multipart.heads, multipart.ranges, strict=True):
            segments.extend((head, part))
        segments.append(multipart.tail)
        return _Plan(206, headers, multipart.length, tuple(segments), None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} status_code={self.status_code} path={self.path!r}>"
