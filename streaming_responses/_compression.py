"""Per-message compression of a streamed body: the encoders, their settings, and the option.

This module owns the three content codings a stream can be sent with (RFC 9110 §8.4.1: ``zstd``,
``br`` and ``gzip``), how each one is set up for streaming, and the reading of the ``compress=``
keyword. The rule that keeps it simple: an encoder is a small object with ``compress(data)``,
``flush()`` and ``finish()``, and the core calls it from its one emit path and nowhere else; every
message the core sends ends with ``flush()`` (or ``finish()``), so whatever a client has received
decodes completely and no event waits in a compressor's window.

Levels and windows were chosen by measurement for many concurrent streams (``benchmarks`` and
the figures in ``docs/compression.md``): a level that keeps up with the core, and windows and
hash tables small enough that an open stream holds about 0.1-0.35 MiB whatever its level.

* gzip (zlib, standard library): level 4, 16 KiB window (``wbits=14``), ``memLevel=7``;
* zstd (``compression.zstd`` on Python 3.14+, else ``backports.zstd``): level 3, 128 KiB
  window (``window_log=17``), ``hash_log=13``, ``chain_log=13``;
* Brotli (``brotli``): quality 3, 128 KiB window (``lgwin=17``). Qualities 0-2 flush so poorly
  that a small event grows instead of shrinking; quality 4 doubles the memory of a stream.

zstd and Brotli are optional (``pip install 'streaming-responses[compression]'``): an encoding
whose package is missing is simply not offered to clients.
"""

from __future__ import annotations

import functools
import importlib
import sys
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeAlias

from ._conditional import with_encoding
from ._exceptions import CompressionError, ResponseStateError
from ._framing import Framing, FramingDecision
from ._types import RawHeaders

#: The codings a stream can be compressed with, in the order that breaks a tie of q-values.
CODINGS: tuple[str, ...] = ("zstd", "br", "gzip")
#: The level each coding runs at unless a response names another (chosen by benchmark).
DEFAULT_LEVELS: Mapping[str, int] = {"zstd": 3, "br": 3, "gzip": 4}
#: The levels a response may ask for, per coding (inclusive). zstd's 20-22 ("ultra") need
#: windows far beyond the bounded one used here, and Brotli's 0-1 need a larger window and
#: flush so poorly that a small event grows: they are refused rather than quietly changed.
LEVEL_RANGES: Mapping[str, tuple[int, int]] = {"zstd": (1, 19), "br": (2, 11), "gzip": (1, 9)}
#: A body complete before the start and shorter than this is sent as it is: with the headers it
#: fits in one TCP segment (MSS 1460 on Ethernet) either way, so compressing it saves no packet
#: and costs 7-18 µs of CPU per response (measured for each coding on 1 KiB of JSON).
MIN_SIZE = 1024

GZIP_WBITS = 14
GZIP_MEM_LEVEL = 7
ZSTD_WINDOW_LOG = 17
ZSTD_HASH_LOG = 13
ZSTD_CHAIN_LOG = 13
BROTLI_LGWIN = 17

#: Where each optional coding comes from, for the install hint of an explicit request.
PACKAGES: Mapping[str, str] = {"zstd": "backports.zstd", "br": "brotli", "gzip": "the standard library"}

#: ``compress=``: off, negotiate among every installed coding, the codings allowed in preference
#: order, or those codings with their levels (``None``: the default level).
CompressOption: TypeAlias = "bool | Sequence[str] | Mapping[str, int | None]"
#: The parsed option: ``(coding, level)`` pairs in preference order; empty means off.
Codings: TypeAlias = tuple[tuple[str, int], ...]


class Encoder(Protocol):
    """One stream's compressor. ``compress`` may keep bytes back; ``flush`` returns everything
    needed to decode all input so far; ``finish`` ends the coded stream (no call after it)."""

    coding: str

    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def finish(self) -> bytes: ...


class GzipEncoder:
    """gzip (RFC 1952) with zlib; each flush is a ``Z_SYNC_FLUSH`` (an empty stored block).

    >>> encoder = GzipEncoder(4)
    >>> import zlib; zlib.decompress(encoder.compress(b"hi") + encoder.flush(), 31)
    b'hi'
    """

    __slots__ = ("_zlib",)
    coding = "gzip"

    def __init__(self, level: int) -> None:
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, 16 + GZIP_WBITS, GZIP_MEM_LEVEL)

    def compress(self, data: bytes) -> bytes:
        return self._zlib.compress(data)

    def flush(self) -> bytes:
        return self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._zlib.flush(zlib.Z_FINISH)


class ZstdEncoder:
    """Zstandard (RFC 8878); each flush ends a block, the frame ends with :meth:`finish`."""

    __slots__ = ("_block", "_frame", "_zstd")
    coding = "zstd"

    def __init__(self, level: int) -> None:
        zstd = _zstd_module()
        parameter = zstd.CompressionParameter
        options = {
            parameter.compression_level: level,
            parameter.window_log: ZSTD_WINDOW_LOG,
            parameter.hash_log: ZSTD_HASH_LOG,
            parameter.chain_log: ZSTD_CHAIN_LOG,
        }
        self._zstd = zstd.ZstdCompressor(options=options)
        self._block = zstd.ZstdCompressor.FLUSH_BLOCK
        self._frame = zstd.ZstdCompressor.FLUSH_FRAME

    def compress(self, data: bytes) -> bytes:
        result: bytes = self._zstd.compress(data)
        return result

    def flush(self) -> bytes:
        result: bytes = self._zstd.flush(self._block)
        return result

    def finish(self) -> bytes:
        result: bytes = self._zstd.flush(self._frame)
        return result


class BrotliEncoder:
    """Brotli (RFC 7932); each flush makes the output so far decodable."""

    __slots__ = ("_brotli",)
    coding = "br"

    def __init__(self, level: int) -> None:
        import brotli

        self._brotli = brotli.Compressor(quality=level, lgwin=BROTLI_LGWIN)

    def compress(self, data: bytes) -> bytes:
        result: bytes = self._brotli.process(data)
        return result

    def flush(self) -> bytes:
        result: bytes = self._brotli.flush()
        return result

    def finish(self) -> bytes:
        result: bytes = self._brotli.finish()
        return result


_ENCODERS: Mapping[str, type[GzipEncoder | ZstdEncoder | BrotliEncoder]] = {
    "gzip": GzipEncoder,
    "zstd": ZstdEncoder,
    "br": BrotliEncoder,
}


def _zstd_module() -> Any:
    # The standard library has had compression.zstd since Python 3.14 (PEP 784); backports.zstd
    # is the same module for older versions.
    if sys.version_info >= (3, 14):  # pragma: no cover - the development environment runs 3.11
        return importlib.import_module("compression.zstd")
    return importlib.import_module("backports.zstd")


@functools.cache
def installed(coding: str) -> bool:
    """Whether the package behind ``coding`` can be imported here (gzip always can).

    >>> installed("gzip")
    True
    """
    if coding == "gzip":
        return True
    try:
        if coding == "zstd":
            _zstd_module()
        elif coding == "br":
            importlib.import_module("brotli")
        else:
            return False
    except ImportError:
        return False
    return True


def make_encoder(coding: str, level: int) -> Encoder:
    """A fresh encoder for one stream (the coding's package must be installed)."""
    return _ENCODERS[coding](level)


class MessageCoder:
    """One response's content coding on the core's emit path.

    It makes its encoder when the response starts (:meth:`start`), codes each message and ends
    it with a flush, or with the coding's end for the last one (:meth:`code`), and counts the
    coded bytes. A failure of the encoder raises :class:`~streaming_responses.CompressionError`
    once; after it nothing more is coded, and above all the coded stream is never ended.

    >>> coder = MessageCoder("gzip", 4)
    >>> coder.start()
    >>> import zlib; zlib.decompress(coder.code(b"hello", more=False), 31), coder.encoded > 0
    (b'hello', True)
    """

    __slots__ = ("_encoder", "coding", "encoded", "failed", "level")

    def __init__(self, coding: str, level: int) -> None:
        self.coding = coding
        self.level = level
        self._encoder: Encoder | None = None
        #: Whether the encoder failed: nothing more is coded.
        self.failed = False
        #: Coded bytes returned so far.
        self.encoded = 0

    @property
    def started(self) -> bool:
        """Whether the encoder exists (the response started coded)."""
        return self._encoder is not None

    def start(self) -> None:
        """Make the encoder (once)."""
        if self._encoder is None:
            self._encoder = make_encoder(self.coding, self.level)

    def code(self, body: bytes, *, more: bool) -> bytes:
        """``body`` coded and flushed (``more``), or coded and the coded stream ended."""
        encoder = self._encoder
        if encoder is None:
            raise ResponseStateError("the coder codes only after the response started")
        if self.failed:
            return b""
        try:
            if not more:
                coded = encoder.compress(body) + encoder.finish()
            elif body:
                coded = encoder.compress(body) + encoder.flush()
            else:
                return b""  # every message ended with a flush: nothing is pending
        except Exception as exc:
            self.failed = True
            raise CompressionError(self.coding, exc) from exc
        self.encoded += len(coded)
        return coded


def offered(codings: Codings) -> Codings:
    """The codings of ``codings`` whose package is installed, in the same order."""
    return tuple(pair for pair in codings if installed(pair[0]))


#: ``compress=True`` read once: every response that negotiates shares this tuple (an open event
#: stream keeps its options for as long as it runs).
EVERY_CODING: Codings = tuple((coding, DEFAULT_LEVELS[coding]) for coding in CODINGS)


def parse_compress(value: object, name: str = "compress") -> Codings:
    """Read a ``compress=`` argument; raise ``TypeError``/``ValueError`` naming what is wrong.

    >>> parse_compress(False), parse_compress(("gzip",))
    ((), (('gzip', 4),))
    >>> parse_compress({"br": 5, "gzip": None})
    (('br', 5), ('gzip', 4))
    """
    if value is False:
        return ()
    if value is True:
        return EVERY_CODING
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"{name} must be True, False, or a sequence of encodings such as ({value!r},), "
            f"not the {type(value).__name__} {value!r}"
        )
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Sequence):
        items = [(coding, None) for coding in value]
    else:
        raise TypeError(
            f"{name} must be True, False, a sequence of encodings or a mapping of encodings to "
            f"levels, not {type(value).__name__}"
        )
    codings: list[tuple[str, int]] = []
    for coding, level in items:
        if coding not in DEFAULT_LEVELS:
            known = ", ".join(repr(known) for known in CODINGS)
            raise ValueError(f"{name} names the unknown encoding {coding!r}; the encodings are {known}")
        if any(coding == seen for seen, _ in codings):
            raise ValueError(f"{name} names the encoding {coding!r} twice")
        codings.append((coding, _check_level(coding, level, name)))
    return tuple(codings)


def _check_level(coding: str, level: object, name: str) -> int:
    if level is None:
        return DEFAULT_LEVELS[coding]
    low, high = LEVEL_RANGES[coding]
    if isinstance(level, bool) or not isinstance(level, int):
        raise TypeError(f"{name}: the level of {coding!r} must be an int or None, not {type(level).__name__}")
    if not low <= level <= high:
        raise ValueError(f"{name}: the level of {coding!r} must be from {low} to {high}, got {level}")
    return level


def coded_start(
    headers: RawHeaders, coding: str, decision: FramingDecision, coded_length: int | None
) -> tuple[RawHeaders, FramingDecision]:
    """The headers and framing of a response start whose body is sent with ``coding``.

    ``Content-Encoding`` names the coding; an ``ETag`` becomes that of the coded representation
    (RFC 9110 §8.8.3: it must differ from the identity's); the identity's length is never sent:
    ``coded_length`` is the coded body's length when the whole body was coded before the start,
    else the body is chunked. A declared ``content_length=`` is still enforced by the core, on
    the body before coding.

    >>> identity = FramingDecision(Framing.CONTENT_LENGTH, 9)
    >>> headers, framing = coded_start([(b"etag", b'"v1"')], "br", identity, None)
    >>> headers, framing.framing
    ([(b'etag', b'"v1-br"'), (b'content-encoding', b'br')], <Framing.CHUNKED: 'chunked'>)
    """
    coded: RawHeaders = []
    for name, value in headers:
        if name.lower() == b"etag":
            value = with_encoding(value.decode("latin-1"), coding).encode("latin-1")
        coded.append((name, value))
    coded.append((b"content-encoding", coding.encode("ascii")))
    if decision.framing is Framing.NO_BODY:
        return coded, decision
    if coded_length is None:
        return coded, FramingDecision(Framing.CHUNKED, None)
    return coded, FramingDecision(Framing.CONTENT_LENGTH, coded_length)
