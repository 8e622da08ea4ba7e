"""Pure decisions about how a body is delimited: its framing, and what to do with each batch.

Everything here takes plain data and returns plain data; nothing awaits and nothing touches
ASGI ``send`` or ``receive``. The core (``_core.py``) asks these functions and acts on the
answers, so every rule of RFC 9110/9112 that shapes a body on the wire is tested from tables
without an event loop (``tests/test__framing.py``). How a response *ends* is decided in
``_endings.py``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


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


# -- one batch at a time ------------------------------------------------------------------------


class Failure(enum.Enum):
    """Why a batch ends the body as a failure."""

    #: The producer raised: its exception is the error.
    PRODUCER = "producer"
    #: The body ran past the declared length: the extra bytes are never sent.
    TOO_LONG = "too-long"
    #: The body ended before the declared length.
    TOO_SHORT = "too-short"


@dataclass(frozen=True)
class BatchPlan:
    """What the sender does with one batch of chunks, in this order.

    ``start``: send the response start with this framing first (``None``: already sent, or
    not at all). ``send``: send the batch's bytes; ``final``: as the last body message, which
    finishes the response. ``failure``: after that, the body fails, and ``produced`` is how
    many body bytes it held (for :class:`~streaming_responses.ContentLengthError`; 0 when
    nothing failed, so the plans of a streaming body are a few shared constants).
    """

    start: FramingDecision | None = None
    send: bool = False
    final: bool = False
    failure: Failure | None = None
    produced: int = 0


def plan_batch(
    *,
    started: bool,
    status_code: int,
    declared_length: int | None,
    sent: int,
    size: int,
    last: bool,
    failed: bool,
) -> BatchPlan:
    """Decide what to do with a batch of ``size`` bytes taken from the producer.

    ``sent`` is the number of body bytes already sent; ``last`` says the producer has ended
    and this batch holds everything that is left; ``failed`` that it ended by raising. The
    rules: before the start, a failure reaches the application (nothing is sent) and a body
    that is complete gets its own length; a declared length is enforced before any byte past
    it is sent, and an early end is a failure; nothing is ever sent as final unless the body
    is really complete.

    >>> plan_batch(started=False, status_code=200, declared_length=None, sent=0, size=5,
    ...            last=True, failed=False)
    BatchPlan(start=FramingDecision(framing=<Framing.CONTENT_LENGTH: 'content-length'>, \
content_length=5), send=True, final=True, failure=None, produced=0)
    """
    total = sent + size
    if not started:
        if failed:
            return BatchPlan(failure=Failure.PRODUCER, produced=total)
        if declared_length is not None and (total > declared_length or (last and total != declared_length)):
            # Known before the start: a clean 500 instead of a stream that is cut short.
            too_long = total > declared_length
            return BatchPlan(failure=Failure.TOO_LONG if too_long else Failure.TOO_SHORT, produced=total)
        complete = size if last else None
        start = decide_framing(
            method="GET", status_code=status_code, declared_length=declared_length, complete_length=complete
        )
        plan = _plan_started(declared_length, total, size, last, failed)
        return BatchPlan(start, plan.send, plan.final, plan.failure, plan.produced)
    return _plan_started(declared_length, total, size, last, failed)


# The plans of a body that goes on or ends well: shared, as the sender asks once per message.
_SEND_MORE = BatchPlan(send=True)
_NOTHING = BatchPlan()
_SEND_FINAL = BatchPlan(send=True, final=True)


def _plan_started(declared_length: int | None, total: int, size: int, last: bool, failed: bool) -> BatchPlan:
    if declared_length is not None and total > declared_length:
        return BatchPlan(failure=Failure.TOO_LONG, produced=total)
    if not last:
        return _SEND_MORE if size else _NOTHING
    if not failed and (declared_length is None or total == declared_length):
        return _SEND_FINAL
    # Ended by the producer's error, or before the declared length.
    return BatchPlan(send=size > 0, failure=Failure.PRODUCER if failed else Failure.TOO_SHORT, produced=total)


# -- when an immediate-start stream opens -------------------------------------------------------


class Opening(enum.Enum):
    """What the sender of a stream that starts at once (``start_immediately``) does next."""

    #: Give the producer another loop turn (or, in a thread, a little longer) first.
    WAIT = "wait"
    #: Send the response start (and the opening chunk) now.
    START = "start"
    #: Leave the start to :func:`plan_batch`: the stream does not start at once, or its
    #: producer failed before producing anything, which must reach the application.
    BATCH = "batch"


def decide_opening(
    *, start_immediately: bool, queued: bool, finished: bool, failed: bool, may_wait: bool
) -> Opening:
    """Decide whether a stream that starts at once sends its headers now.

    Headers go out before the first chunk for streams whose clients need them early
    (server-sent events: ``EventSource.onopen``), but not before the producer had its chance to
    fail: it runs until it produced something (``queued``), ended (``finished``, ``failed``), or
    really waits, which the core tells by ``may_wait`` running out (a few loop turns for
    producers on the loop, a short grace for one in a worker thread). So validation in a
    generator before its first item (``HTTPException(404)`` for an unknown model) still gives
    a real status, and a stream that is slow to produce still opens at once.

    >>> decide_opening(start_immediately=True, queued=False, finished=True, failed=True, may_wait=True)
    <Opening.BATCH: 'batch'>
    >>> decide_opening(start_immediately=True, queued=False, finished=False, failed=False, may_wait=False)
    <Opening.START: 'start'>
    """
    if not start_immediately:
        return Opening.BATCH
    if failed and not queued:
        return Opening.BATCH
    if queued or finished:
        return Opening.START
    return Opening.WAIT if may_wait else Opening.START
