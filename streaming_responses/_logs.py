"""What the library writes to its log about a failed stream, and how the server's copy is dropped.

This module owns the one record the ``streaming_responses`` logger writes for a stream that
failed after its headers were sent, and :class:`DuplicateStreamErrorFilter`, which drops the
server's second report of the same exception. The rule that keeps it simple: the record is
made from the response's :class:`~._outcome.StreamOutcome` (plus the class and the request
line) and nothing else, so the log, the ``on_outcome`` metrics and a trace tell one story.
"""

from __future__ import annotations

import logging

from ._outcome import StreamOutcome

logger = logging.getLogger("streaming_responses")

#: Set on an exception once its stream's record is written; :class:`DuplicateStreamErrorFilter`
#: reads it. An attribute on the exception itself, because the server re-raises that object.
_LOGGED_MARK = "_streaming_responses_logged"


def log_failed_stream(outcome: StreamOutcome, response_class: str, method: str, path: str) -> None:
    """Write the one ``ERROR`` record of a stream that failed after its start.

    The message reads as a sentence, and the same facts are attributes of the record (for a
    JSON formatter): ``stream_class``, ``stream_outcome``, ``stream_bytes``,
    ``stream_duration``, ``stream_method``, ``stream_path``. The traceback comes with it, once.

    Example (what a plain formatter prints before the traceback)::

        GET /report: StreamingResponse failed (error) after 6 bytes in 0.501 s:
        RuntimeError: the database went away
    """
    error = outcome.error
    if error is not None and getattr(error, _LOGGED_MARK, False):
        return  # the same failure relayed by a second response (StreamingHTTPMiddleware's)
    logger.error(
        "%s %s: %s failed (%s) after %d bytes in %.3f s: %s",
        method,
        path,
        response_class,
        outcome.kind.value,
        outcome.bytes_sent,
        outcome.duration,
        "no exception" if error is None else f"{type(error).__name__}: {error}",
        exc_info=error,
        extra={
            "stream_class": response_class,
            "stream_outcome": outcome.kind.value,
            "stream_bytes": outcome.bytes_sent,
            "stream_duration": outcome.duration,
            "stream_method": method,
            "stream_path": path,
        },
    )
    if error is not None:
        setattr(error, _LOGGED_MARK, True)


class DuplicateStreamErrorFilter(logging.Filter):
    """Drops a log record whose exception ``streaming_responses`` has already logged.

    After the headers, the only honest way to fail an HTTP/1.1 body is to raise to the server,
    which aborts the connection and logs the exception a second time ("Exception in ASGI
    application" on uvicorn, "Error in ASGI Framework" on hypercorn). Add this filter to the
    server's error logger to keep the library's record alone; every other record passes.

    Example::

        import logging
        from streaming_responses import DuplicateStreamErrorFilter

        logging.getLogger("uvicorn.error").addFilter(DuplicateStreamErrorFilter())
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        if not exc_info or exc_info[1] is None:
            return True
        return not _already_logged(exc_info[1])


def _already_logged(error: BaseException) -> bool:
    # A middleware's task group may hand the server an exception group around ours.
    members = getattr(error, "exceptions", None)
    if isinstance(members, tuple) and members and all(isinstance(m, BaseException) for m in members):
        return all(_already_logged(member) for member in members)
    return bool(getattr(error, _LOGGED_MARK, False))
