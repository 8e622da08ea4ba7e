"""Framing decisions, tested from tables without an event loop."""

from __future__ import annotations

import pytest

from streaming_responses._framing import (
    BatchPlan,
    Failure,
    Framing,
    FramingDecision,
    Opening,
    body_allowed,
    decide_framing,
    decide_opening,
    plan_batch,
)


@pytest.mark.parametrize(
    ("method", "status", "allowed"),
    [
        ("GET", 200, True),
        ("POST", 500, True),
        ("HEAD", 200, False),
        ("GET", 204, False),
        ("GET", 304, False),
        ("GET", 101, False),
        ("GET", 205, True),
    ],
)
def test_body_allowed_follows_rfc_9110(method: str, status: int, allowed: bool) -> None:
    assert body_allowed(method, status) is allowed


def test_a_declared_length_wins_over_a_complete_body() -> None:
    decision = decide_framing(method="GET", status_code=200, declared_length=10, complete_length=3)
    assert decision == FramingDecision(Framing.CONTENT_LENGTH, 10)


def test_a_body_complete_before_the_first_send_gets_its_length() -> None:
    decision = decide_framing(method="GET", status_code=200, declared_length=None, complete_length=0)
    assert decision == FramingDecision(Framing.CONTENT_LENGTH, 0)


def test_an_unknown_length_is_chunked() -> None:
    decision = decide_framing(method="GET", status_code=200, declared_length=None, complete_length=None)
    assert decision == FramingDecision(Framing.CHUNKED, None)


def test_head_keeps_the_declared_length_but_sends_no_body() -> None:
    decision = decide_framing(method="HEAD", status_code=200, declared_length=42, complete_length=None)
    assert decision == FramingDecision(Framing.NO_BODY, 42)


def test_a_304_declares_no_length_even_when_one_was_given() -> None:
    decision = decide_framing(method="GET", status_code=304, declared_length=42, complete_length=None)
    assert decision == FramingDecision(Framing.NO_BODY, None)


# -- what the sender does with each batch -------------------------------------------------------

CHUNKED = FramingDecision(Framing.CHUNKED, None)


def length(n: int) -> FramingDecision:
    return FramingDecision(Framing.CONTENT_LENGTH, n)


# (started, declared, sent, size, last, failed) -> plan
BATCHES = [
    # Before the start: a failure reaches the application, nothing is sent.
    ((False, None, 0, 0, True, True), BatchPlan(failure=Failure.PRODUCER)),
    ((False, None, 0, 3, True, True), BatchPlan(failure=Failure.PRODUCER, produced=3)),
    # A body complete before the first send goes out whole, with its length.
    ((False, None, 0, 5, True, False), BatchPlan(length(5), send=True, final=True)),
    ((False, None, 0, 0, True, False), BatchPlan(length(0), send=True, final=True)),
    ((False, 5, 0, 5, True, False), BatchPlan(length(5), send=True, final=True)),
    # ... unless it does not match the declared length: a 500, not a short body.
    ((False, 5, 0, 3, True, False), BatchPlan(failure=Failure.TOO_SHORT, produced=3)),
    ((False, 5, 0, 7, True, False), BatchPlan(failure=Failure.TOO_LONG, produced=7)),
    # A first batch already past the declared length fails before the start too.
    ((False, 5, 0, 7, False, False), BatchPlan(failure=Failure.TOO_LONG, produced=7)),
    # More to come: start chunked (or with the declared length) and send.
    ((False, None, 0, 4, False, False), BatchPlan(CHUNKED, send=True)),
    ((False, 10, 0, 4, False, False), BatchPlan(length(10), send=True)),
    ((False, None, 0, 0, False, False), BatchPlan(CHUNKED)),
    # Streaming: send more, finish, or fail after sending what is there.
    ((True, None, 4, 4, False, False), BatchPlan(send=True)),
    ((True, None, 4, 0, False, False), BatchPlan()),
    ((True, None, 4, 4, True, False), BatchPlan(send=True, final=True)),
    ((True, None, 4, 0, True, False), BatchPlan(send=True, final=True)),
    ((True, None, 4, 4, True, True), BatchPlan(send=True, failure=Failure.PRODUCER, produced=8)),
    ((True, None, 4, 0, True, True), BatchPlan(failure=Failure.PRODUCER, produced=4)),
    ((True, 10, 4, 6, True, False), BatchPlan(send=True, final=True)),
    ((True, 10, 4, 2, True, False), BatchPlan(send=True, failure=Failure.TOO_SHORT, produced=6)),
    ((True, 10, 4, 0, True, False), BatchPlan(failure=Failure.TOO_SHORT, produced=4)),
    # The bytes past a declared length are never sent.
    ((True, 10, 4, 7, False, False), BatchPlan(failure=Failure.TOO_LONG, produced=11)),
    ((True, 10, 4, 7, True, False), BatchPlan(failure=Failure.TOO_LONG, produced=11)),
    ((True, 10, 4, 7, True, True), BatchPlan(failure=Failure.TOO_LONG, produced=11)),
    ((True, 10, 4, 6, True, True), BatchPlan(send=True, failure=Failure.PRODUCER, produced=10)),
]


@pytest.mark.parametrize(("facts", "expected"), BATCHES)
def test_each_batch_is_planned_from_what_is_known(
    facts: tuple[bool, int | None, int, int, bool, bool], expected: BatchPlan
) -> None:
    started, declared, sent, size, last, failed = facts
    plan = plan_batch(
        started=started,
        status_code=200,
        declared_length=declared,
        sent=sent,
        size=size,
        last=last,
        failed=failed,
    )
    assert plan == expected


@pytest.mark.parametrize("size", [0, 1, 100])
@pytest.mark.parametrize("sent", [0, 5])
def test_a_final_batch_never_ends_a_body_that_is_shorter_than_declared(sent: int, size: int) -> None:
    plan = plan_batch(
        started=True, status_code=200, declared_length=200, sent=sent, size=size, last=True, failed=False
    )
    assert not plan.final
    assert plan.failure is Failure.TOO_SHORT


# -- when an immediate-start stream opens -----------------------------------------------------


@pytest.mark.parametrize(
    ("start_immediately", "queued", "finished", "failed", "may_wait", "expected"),
    [
        # not an immediate-start stream: plan_batch decides
        (False, False, False, False, True, Opening.BATCH),
        (False, True, True, False, False, Opening.BATCH),
        # the producer failed before producing anything: the error reaches the application
        (True, False, True, True, True, Opening.BATCH),
        (True, False, True, True, False, Opening.BATCH),
        # it produced something (and maybe failed right after): the stream opens
        (True, True, False, False, True, Opening.START),
        (True, True, True, True, True, Opening.START),
        # it ended without a chunk: the (empty) stream opens
        (True, False, True, False, True, Opening.START),
        # nothing yet: wait while it may, then open anyway (it is really waiting)
        (True, False, False, False, True, Opening.WAIT),
        (True, False, False, False, False, Opening.START),
    ],
)
def test_an_immediate_start_waits_for_the_producer_to_produce_fail_or_really_wait(
    start_immediately: bool, queued: bool, finished: bool, failed: bool, may_wait: bool, expected: Opening
) -> None:
    decision = decide_opening(
        start_immediately=start_immediately,
        queued=queued,
        finished=finished,
        failed=failed,
        may_wait=may_wait,
    )
    assert decision is expected
