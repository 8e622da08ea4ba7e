"""Streaming decoders of the content codings, as a client runs them: bytes in as they arrive.

Used by the in-process and end-to-end tests and by the benchmark clients. Each decoder returns
what the bytes fed so far decode to, and says whether the coded stream has ended (a gzip member's
trailer, a zstd frame's end, Brotli's last meta-block): a body whose coded stream never ended
was cut off, however its HTTP framing ended.
"""

from __future__ import annotations

import sys
import zlib
from typing import Any

import brotli

if sys.version_info >= (3, 14):
    from compression import zstd  # pragma: no cover - the test environment runs 3.11
else:
    from backports import zstd

CODINGS = ("zstd", "br", "gzip")


class StreamDecoder:
    """Decodes one coded body incrementally.

    >>> import gzip
    >>> decoder = StreamDecoder("gzip")
    >>> decoder.feed(gzip.compress(b"hello")), decoder.finished
    (b'hello', True)
    """

    def __init__(self, coding: str) -> None:
        if coding not in CODINGS:
            raise ValueError(f"no decoder for {coding!r}")
        self.coding = coding
        self._decoder: Any
        if coding == "gzip":
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "zstd":
            self._decoder = zstd.ZstdDecompressor()
        else:
            self._decoder = brotli.Decompressor()
        self.unused = b""

    def feed(self, data: bytes) -> bytes:
        """The bytes ``data`` completes; raises the codec's error on a corrupt stream."""
        if not data:
            return b""
        decoder = self._decoder
        if self.coding == "gzip":
            out: bytes = decoder.decompress(data)
            self.unused += decoder.unused_data
        elif self.coding == "zstd":
            if decoder.eof:
                self.unused += data
                return b""
            out = decoder.decompress(data)
            self.unused += decoder.unused_data
        else:
            out = decoder.process(data)
        return out

    @property
    def finished(self) -> bool:
        """Whether the end of the coded stream was decoded."""
        decoder = self._decoder
        if self.coding == "br":
            return bool(decoder.is_finished())
        return bool(decoder.eof)


def decode(coding: str | None, data: bytes) -> bytes:
    """A whole body decoded (``coding`` ``None``: as it is); raises if the coded stream is cut off."""
    if coding is None:
        return data
    decoder = StreamDecoder(coding)
    out = decoder.feed(data)
    if not decoder.finished:
        raise ValueError(f"the {coding} stream ends before its end ({len(data)} bytes)")
    if decoder.unused:
        raise ValueError(f"{len(decoder.unused)} bytes after the end of the {coding} stream")
    return out
