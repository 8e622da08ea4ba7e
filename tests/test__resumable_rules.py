"""The decisions of resumable streams, from tables: no event loop, no broker, no clock."""

from __future__ import annotations

import secrets

import pytest

from streaming_responses._resumable_rules import (
    END_EVENT,
    RESERVED_EVENTS,
    START_EVENT,
    Attach,
    AttachPlan,
    JobEnding,
    abandon_check,
    check_stream_id,
    end_marker_data,
    heartbeat_interval,
    job_ending,
    plan_attach,
    read_end_marker,
)

C = JobEnding


@pytest.mark.parametrize(
    ("requested", "cancelled", "failed", "ending"),
    [
        # Nobody asked it to stop.
        (None, False, False, C.COMPLETE),
        (None, False, True, C.ERROR),
        (None, True, False, C.SHUTDOWN),  # cancelled from outside: the event loop is closing
        # A stop that was asked for names the ending, also when the producer raised meanwhile.
        (C.CANCELLED, True, False, C.CANCELLED),
        (C.CANCELLED, False, True, C.CANCELLED),
        (C.ABANDONED, True, False, C.ABANDONED),
        (C.TIMEOUT, True, False, C.TIMEOUT),
        (C.SHUTDOWN, True, False, C.SHUTDOWN),
        # Asked too late: the producer had already finished every item.
        (C.CANCELLED, False, False, C.COMPLETE),
        (C.TIMEOUT, False, False, C.COMPLETE),
    ],
)
def test_how_a_job_ended(
    requested: JobEnding | None, cancelled: bool, failed: bool, ending: JobEnding
) -> None:
    assert job_ending(requested, cancelled=cancelled, failed=failed) is ending


@pytest.mark.parametrize(
    ("now", "since", "attached", "abandon_after", "result"),
    [
        (0.0, 0.0, 0, 5.0, (0.0, False)),  # just started, nobody yet
        (4.9, 0.0, 0, 5.0, (0.0, False)),
        (5.0, 0.0, 0, 5.0, (0.0, True)),  # nobody attached since the start
        (5.0, 0.0, 1, 5.0, (None, False)),  # a client is there: the clock stops
        (7.0, None, 0, 5.0, (7.0, False)),  # the last client just left: the clock starts
        (11.9, 7.0, 0, 5.0, (7.0, False)),
        (12.0, 7.0, 0, 5.0, (7.0, True)),
        (12.0, 7.0, 2, 5.0, (None, False)),  # back before the time ran out
        (1e9, 0.0, 0, None, (0.0, False)),  # abandon_after=None: never
    ],
)
def test_when_a_job_nobody_watches_is_abandoned(
    now: float,
    since: float | None,
    attached: int,
    abandon_after: float | None,
    result: tuple[float | None, bool],
) -> None:
    assert abandon_check(now, since, attached, abandon_after) == result


@pytest.mark.parametrize(
    ("lease", "abandon_after", "interval"),
    [(5.0, None, 1.0), (5.0, 60.0, 1.0), (5.0, 2.0, 0.5), (1.0, None, 0.2), (0.01, None, 0.01)],
)
def test_heartbeats_come_five_times_a_lease_and_four_times_per_abandon_after(
    lease: float, abandon_after: float | None, interval: float
) -> None:
    assert heartbeat_interval(lease, abandon_after) == interval


S, E = "t@e.1", "t@e.9"


@pytest.mark.parametrize(
    ("found", "start_id", "end_id", "last_event_id", "attach"),
    [
        (False, None, None, None, Attach(AttachPlan.NOT_FOUND)),
        (False, None, None, "t@e.4", Attach(AttachPlan.NOT_FOUND)),
        # Without an id: the whole stream, from its start (a page that was reloaded).
        (True, S, None, None, Attach(AttachPlan.STREAM, S)),
        (True, S, E, None, Attach(AttachPlan.STREAM, S)),
        # With an id: the events after it, also after the stream ended.
        (True, S, None, "t@e.4", Attach(AttachPlan.STREAM, "t@e.4")),
        (True, S, E, "t@e.4", Attach(AttachPlan.STREAM, "t@e.4")),
        # The client had the final event: nothing more to send.
        (True, S, E, E, Attach(AttachPlan.SEEN_END)),
        # The history no longer holds the start: only a client with an id can go on.
        (True, None, None, None, Attach(AttachPlan.LOST)),
        (True, None, E, None, Attach(AttachPlan.LOST)),
        (True, None, None, "t@e.7", Attach(AttachPlan.STREAM, "t@e.7")),
    ],
)
def test_what_an_attach_does_with_the_stream_it_found(
    found: bool, start_id: str | None, end_id: str | None, last_event_id: str | None, attach: Attach
) -> None:
    assert plan_attach(found=found, start_id=start_id, end_id=end_id, last_event_id=last_event_id) == attach


@pytest.mark.parametrize("ending", [e for e in JobEnding if e is not JobEnding.LOST])
def test_an_ending_written_into_a_topic_reads_back_as_itself(ending: JobEnding) -> None:
    assert read_end_marker(end_marker_data(ending)) is ending


@pytest.mark.parametrize("data", [None, "", "complete", "[]", '{"outcome": "finished"}', '{"other": 1}', "{"])
def test_an_ending_that_cannot_be_read_is_an_error_never_complete(data: str | None) -> None:
    assert read_end_marker(data) is JobEnding.ERROR


def test_stream_ids_are_what_the_library_makes_and_nothing_else() -> None:
    for _ in range(100):
        made = secrets.token_urlsafe(12)
        assert check_stream_id(made) == made
    for bad in [
        "",
        "short",
        "a" * 17,
        "../../etc/passwd",
        "abc def ghi jklm",
        "é" * 16,
        1234,
        None,
        b"a" * 16,
    ]:
        assert check_stream_id(bad) is None, bad


def test_the_start_and_end_event_types_are_reserved() -> None:
    assert {START_EVENT, END_EVENT} == RESERVED_EVENTS
    assert "end" not in RESERVED_EVENTS  # the name clients see stays free for producers
