"""The exceptions the library raises.

Each names what went wrong in its message, so that a log line alone is enough to act on.
All of them derive from :class:`StreamError`, so one ``except`` clause can catch the family.
"""

from __future__ import annotations


class StreamError(Exception):
    """Base class of every error raised by streaming_responses."""


class ContentLengthError(StreamError):
    """The body did not match the declared ``content_length``.

    Raised when a producer yields more bytes than declared (the extra bytes are never sent) or
    ends with fewer. Either way the client sees a response that ends short, never one that
    looks complete.
    """

    def __init__(self, declared: int, produced: int, *, ended: bool) -> None:
        self.declared = declared
        self.produced = produced
        if ended:
            detail = f"the body ended after {produced} bytes"
        else:
            detail = f"the body ran past it, reaching {produced} bytes"
        super().__init__(f"content_length={declared} was declared but {detail}")


class StreamTimeout(StreamError, TimeoutError):
    """The response ran longer than ``timeout``, or waited longer than ``idle_timeout`` or
    ``send_timeout``.

    ``kind`` is ``"timeout"`` (the whole response), ``"idle_timeout"`` (between two chunks) or
    ``"send_timeout"`` (one ``send()``: the client stopped reading).
    """

    def __init__(self, kind: str, seconds: float) -> None:
        self.kind = kind
        self.seconds = seconds
        what = {
            "timeout": "the response took",
            "idle_timeout": "the producer was silent for",
            "send_timeout": "the client did not read for",
        }.get(kind, "waited")
        super().__init__(f"{what} longer than {kind}={seconds:g}s")


class StreamShutdown(StreamError):
    """The server shut down (or :func:`~streaming_responses.end_all_streams` was called) and
    the response's shutdown policy was to cut it off, so it cannot look complete."""

    def __init__(self) -> None:
        super().__init__("the stream was cut off because the server is shutting down")


class ResponseStateError(StreamError, RuntimeError):
    """A step happened out of order: the response was sent twice, or written after it ended."""
