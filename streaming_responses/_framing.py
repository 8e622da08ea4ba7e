"""Pure decisions about the wire: framing, trailer eligibility, chunk coercion.

Everything here takes plain data and returns plain data; nothing awaits and nothing touches
ASGI ``send`` or ``receive``. The core (``_core.py``) asks these functions and acts on the
answers, so every rule of RFC 9110/9112 that shapes a response is tested without an event loop.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Trailer fields the core sends when trailers can reach the client.
STATUS_TRAILER = b"stream-status"
ERROR_TRAILER = b"stream-error"
TRAILER_DECLARATION = (b"trailer", STATUS_TRAILER + b", " + ERROR_TRAILER)


class Framing(enum.Enum):
    """How the body of a response is delimited on the wire."""

    #: A ``Content-Length`` header gives the exact size (RFC 9110 §8.6).
    CONTENT_LENGTH = "content-length"
    #: The size is not known up front: HTTP/1.1 chunked coding, or DATA frames until END_STREAM.
    CHUNKED = "chunked"
    #: No body may be sent: HEAD, 1xx, 204 and 304 (RFC 9110 §6.4.1).
    NO_BODY = "no-body"


@dataclass(frozen=True)
class FramingDecision:
    """The framing chosen for one response, and the ``Content-Length`` to declare (if any)."""

    framing: Framing
    content_length: int | None


def body_allowed(method: str, status_code: int) -> bool:
    """Whether a response to ``method`` with ``status_code`` may carry body bytes.

    >>> body_allowed("HEAD", 200), body_allowed("GET", 304), body_allowed("GET", 200)
    (False, False, True)
    """
    if method == "HEAD":
        return False
    return not (status_code < 200 or status_code in (204, 304))


def decide_framing(
    *,
    method: str,
    status_code: int,
    declared_length: int | None,
    complete_length: int | None,
) -> FramingDecision:
    """Choose the framing of a response.

    ``declared_length`` is the length the application promised (``content_length=``);
    ``complete_length`` is the size of the whole body when it was finished before the first
    send, else ``None``. A declared length always wins, and is kept for HEAD so that the
    headers match those of a GET (RFC 9110 §9.3.2).
    """
    if not body_allowed(method, status_code):
        keep = declared_length if method == "HEAD" else None
        return FramingDecision(Framing.NO_BODY, keep)
    if declared_length is not None:
        return FramingDecision(Framing.CONTENT_LENGTH, declared_length)
    if complete_length is not None:
        return FramingDecision(Framing.CONTENT_LENGTH, complete_length)
    return FramingDecision(Framing.CHUNKED, None)


def parse_content_length(value: Any, *, source: str = "content_length") -> int:
    """Validate a declared body length; raise ``ValueError`` naming ``source`` if it is bad."""
    if isinstance(value, bool):
        raise TypeError(f"{source} must be an int, not bool")
    if isinstance(value, int):
        number = value
    elif isinstance(value, (str, bytes)):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        stripped = text.strip()
        if not stripped.isdigit() or not stripped.isascii():
            raise ValueError(f"{source} must be a non-negative integer, got {text!r}")
        number = int(stripped)
    else:
        raise TypeError(f"{source} must be an int, not {type(value).__name__}")
    if number < 0:
        raise ValueError(f"{source} must be a non-negative integer, got {number}")
    return number


def parse_timeout(value: float | None, name: str) -> float | None:
    """Validate a ``timeout=`` or ``idle_timeout=`` argument (seconds, positive, or None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def coerce_chunk(chunk: object, charset: str) -> bytes:
    """Turn one produced item into body bytes.

    bytes pass through; ``str`` is encoded with the response charset; ``bytearray`` and
    ``memoryview`` are copied (the producer may reuse its buffer after yielding it). Anything
    else is a bug in the producer and raises ``TypeError`` naming the type, never dropped.
    """
    kind = type(chunk)
    if kind is bytes:
        return chunk  # type: ignore[return-value]
    if kind is str:
        return chunk.encode(charset)  # type: ignore[attr-defined,no-any-return]
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        return bytes(chunk)
    if isinstance(chunk, str):
        return chunk.encode(charset)
    raise TypeError(f"a streamed chunk must be bytes, str or memoryview, not {kind.__name__} ({chunk!r:.80})")


def header_tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> set[bytes]:
    """The comma-separated tokens of every ``name`` header, lower-cased, parameters dropped.

    >>> sorted(header_tokens([(b"te", b"trailers, deflate;q=0.5")], b"te"))
    [b'deflate', b'trailers']
    """
    tokens: set[bytes] = set()
    for key, value in headers:
        if key.lower() != name:
            continue
        for item in value.split(b","):
            token = item.split(b";", 1)[0].strip().lower()
            if token:
                tokens.add(token)
    return tokens


def trailers_eligible(scope: Mapping[str, Any]) -> bool:
    """Whether trailer fields sent by the core would reach this client.

    All three must hold: the server offers the ASGI ``http.response.trailers`` extension; the
    request says ``TE: trailers`` (RFC 9110 §10.1.4: otherwise a server may drop them); and the
    protocol is HTTP/2 or HTTP/3, where trailers end a stream cleanly. Declaring trailers where
    the extension is absent truncates the response on today's servers, hence the strict test.
    """
    extensions = scope.get("extensions") or {}
    if "http.response.trailers" not in extensions:
        return False
    if scope.get("http_version") not in ("2", "3"):
        return False
    return b"trailers" in header_tokens(scope.get("headers") or (), b"te")


def status_trailers(error: BaseException | None) -> list[tuple[bytes, bytes]]:
    """The trailer fields that end a stream: complete, or error plus the exception class name."""
    if error is None:
        return [(STATUS_TRAILER, b"complete")]
    name = type(error).__name__.encode("ascii", "replace")
    return [(STATUS_TRAILER, b"error"), (ERROR_TRAILER, name)]
