"""The decisions of resumable streams, as pure functions of plain data.

This module owns what a resumable stream decides, and nothing it does: how a job ended, when a
job nobody watches is abandoned, what an attach does with the stream it found, how the ending
is written into a topic and read back, and which ids are ids. The rule that keeps it simple:
no function here awaits, reads a clock or touches the broker, so each is tested from a table
(``tests/test__resumable_rules.py``); ``_resumable.py`` gathers the facts and acts.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass

#: A stream id: 16 characters of the URL-safe base64 alphabet (``secrets.token_urlsafe(12)``).
STREAM_ID = re.compile(r"[A-Za-z0-9_-]{16}")
#: The event type of the first event of a stream's topic (never sent to a client).
START_EVENT = "streaming_responses.start"
#: The event type of the last event of a stream's topic: its data says how the job ended.
END_EVENT = "streaming_responses.end"
#: Event types a producer may not use: they mark where a stream starts and ends.
RESERVED_EVENTS = frozenset({START_EVENT, END_EVENT})


class JobEnding(enum.Enum):
    """How a resumable stream ended: the value of its final event and of ``on_outcome``.

    ``COMPLETE`` is the only ending of a whole answer; every other one means the answer was
    cut. ``LOST`` is never a job's ending: an attach gets it when the history no longer holds
    the events that client needs (the stream outgrew the broker's ``history``).
    """

    #: The producer ran to its end; every item was published.
    COMPLETE = "complete"
    #: The producer raised, or its worker stopped without a word (killed, lost Redis).
    ERROR = "error"
    #: ``cancel()`` stopped it.
    CANCELLED = "cancelled"
    #: No client was attached for ``abandon_after`` seconds.
    ABANDONED = "abandoned"
    #: It ran longer than ``max_duration`` seconds.
    TIMEOUT = "timeout"
    #: Its worker shut down (SIGTERM, ``end_all_streams()``, ``aclose()``).
    SHUTDOWN = "shutdown"
    #: Attach only: the events this client needs are no longer in the history.
    LOST = "lost"


def check_stream_id(value: object) -> str | None:
    """``value`` if it is a stream id this library makes, else ``None``.

    >>> check_stream_id("3q2-7wEjrkQYQzVH")
    '3q2-7wEjrkQYQzVH'
    >>> check_stream_id("../etc") is None
    True
    """
    if isinstance(value, str) and STREAM_ID.fullmatch(value) is not None:
        return value
    return None


def job_ending(requested: JobEnding | None, *, cancelled: bool, failed: bool) -> JobEnding:
    """How a job ended, from why it was asked to stop and how its producer stopped.

    ``requested`` is the ending asked for (``cancel()``, abandonment, ``max_duration``, a
    shutdown), ``cancelled`` whether the cancellation reached the job, ``failed`` whether the
    producer (or publishing) raised anything else. A stop that was asked for names the
    ending even when the producer raised while it stopped; a stop asked for too late (the
    producer had finished) does not; a cancellation nobody asked for is the event loop
    shutting down.

    >>> job_ending(JobEnding.CANCELLED, cancelled=True, failed=False)
    <JobEnding.CANCELLED: 'cancelled'>
    >>> job_ending(None, cancelled=False, failed=False)
    <JobEnding.COMPLETE: 'complete'>
    """
    if requested is not None and (cancelled or failed):
        return requested
    if failed:
        return JobEnding.ERROR
    if cancelled:
        return JobEnding.SHUTDOWN
    return JobEnding.COMPLETE


def abandon_check(
    now: float, unattended_since: float | None, attached: int, abandon_after: float | None
) -> tuple[float | None, bool]:
    """Where the unattended clock of a job stands after one look, and whether to abandon it.

    ``unattended_since`` is when the job was last seen with no client attached (its start
    counts: a job nobody attaches to is abandoned too), ``None`` while clients are attached.

    >>> abandon_check(10.0, None, 0, 5.0)
    (10.0, False)
    >>> abandon_check(16.0, 10.0, 0, 5.0)
    (10.0, True)
    >>> abandon_check(16.0, 10.0, 1, 5.0)
    (None, False)
    """
    if attached > 0:
        return None, False
    since = now if unattended_since is None else unattended_since
    return since, abandon_after is not None and now - since >= abandon_after


def heartbeat_interval(lease: float, abandon_after: float | None) -> float:
    """Seconds between two heartbeats of a job: five per lease, and four per ``abandon_after``.

    >>> heartbeat_interval(5.0, None)
    1.0
    >>> heartbeat_interval(5.0, 2.0)
    0.5
    """
    interval = lease / 5
    if abandon_after is not None:
        interval = min(interval, abandon_after / 4)
    return max(interval, 0.01)


class AttachPlan(enum.Enum):
    """What an attach does with the stream it looked up (:func:`plan_attach`)."""

    #: No such stream (never made, or expired): 404.
    NOT_FOUND = "not-found"
    #: The client already had the final event (its ``Last-Event-ID`` is the ending's): 204,
    #: which tells an ``EventSource`` to stop reconnecting.
    SEEN_END = "seen-end"
    #: The history no longer holds the start of the stream: the ``LOST`` ending at once.
    LOST = "lost"
    #: Replay after ``resume_after``, then follow live events to the ending.
    STREAM = "stream"


@dataclass(frozen=True)
class Attach:
    """An attach's plan, and the id to resume after when it streams."""

    plan: AttachPlan
    resume_after: str | None = None


def plan_attach(
    *, found: bool, start_id: str | None, end_id: str | None, last_event_id: str | None
) -> Attach:
    """What to do for an attach, from what the history holds of the stream.

    ``start_id`` is the id of the stream's first event if the history still holds it,
    ``end_id`` the id of its final event if it has ended. Without a ``last_event_id`` a
    client gets the whole stream, from its start.

    >>> plan_attach(found=True, start_id="t@e.1", end_id=None, last_event_id=None)
    Attach(plan=<AttachPlan.STREAM: 'stream'>, resume_after='t@e.1')
    >>> plan_attach(found=True, start_id="t@e.1", end_id="t@e.9", last_event_id="t@e.9").plan
    <AttachPlan.SEEN_END: 'seen-end'>
    """
    if not found:
        return Attach(AttachPlan.NOT_FOUND)
    if last_event_id is not None and last_event_id == end_id:
        return Attach(AttachPlan.SEEN_END)
    resume_after = last_event_id or start_id
    if resume_after is None:
        return Attach(AttachPlan.LOST)
    return Attach(AttachPlan.STREAM, resume_after)


def end_marker_data(ending: JobEnding) -> str:
    """The data of a stream's final event in its topic.

    >>> end_marker_data(JobEnding.CANCELLED)
    '{"outcome":"cancelled"}'
    """
    return json.dumps({"outcome": ending.value}, separators=(",", ":"))


def read_end_marker(data: str | None) -> JobEnding:
    """The ending a final event's data names; an unreadable one is an ``ERROR`` (never complete).

    >>> read_end_marker('{"outcome":"complete"}')
    <JobEnding.COMPLETE: 'complete'>
    >>> read_end_marker("garbage")
    <JobEnding.ERROR: 'error'>
    """
    try:
        value = json.loads(data or "")
        return JobEnding(value["outcome"])
    except (ValueError, TypeError, KeyError):
        return JobEnding.ERROR
