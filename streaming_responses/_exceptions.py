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
    """The response ran longer than ``timeout`` or waited longer than ``idle_timeout``.

    ``kind`` is ``"timeout"`` (the whole response) or ``"idle_timeout"`` (between two chunks).
    """

    def __init__(self, kind: str, seconds: float) -> None:
        self.kind = kind
        self.seconds = seconds
        what = "the response took" if kind == "timeout" else "the producer was silent for"
        super().__init__(f"{what} longer than {kind}={seconds:g}s")


class ResponseStateError(StreamError, RuntimeError):
    """A step happened out of order: the response was sent twice, or written after it ended."""
