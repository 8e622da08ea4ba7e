"""Ending decisions: trailers, and how a response ends, tested from tables without an event loop."""

from __future__ import annotations

import pytest

from streaming_responses import Outcome, ShutdownPolicy, StreamShutdown, StreamTimeout
from streaming_responses._endings import (
    ERROR_TRAILER,
    STATUS_TRAILER,
    Ending,
    decide_ending,
    failure_outcome,
    status_trailers,
    trailers_eligible,
)
from streaming_responses._exceptions import ResponseStateError
from streaming_responses._state import Phase


def scope_for(
    *, http_version: str = "2", te: bytes | None = b"trailers", extension: bool = True
) -> dict[str, object]:
    headers = [(b"te", te)] if te is not None else []
    return {
        "http_version": http_version,
        "headers": headers,
        "extensions": {"http.response.trailers": {}} if extension else {},
    }


def test_trailers_are_eligible_on_http2_with_the_extension_and_te_trailers() -> None:
    assert trailers_eligible(scope_for())
    assert trailers_eligible(scope_for(http_version="3"))


@pytest.mark.parametrize(
    "scope",
    [
        scope_for(http_version="1.1"),
        scope_for(te=None),
        scope_for(te=b"gzip"),
        scope_for(extension=False),
        {"http_version": "2", "headers": [(b"te", b"trailers")]},
    ],
)
def test_trailers_are_not_eligible_when_any_condition_is_missing(scope: dict[str, object]) -> None:
    assert not trailers_eligible(scope)


def test_status_trailers_say_complete_or_name_the_error() -> None:
    assert status_trailers(None) == [(STATUS_TRAILER, b"complete")]
    assert status_trailers(KeyError("x")) == [(STATUS_TRAILER, b"error"), (ERROR_TRAILER, b"KeyError")]


def test_failure_outcome_names_timeouts_and_shutdowns() -> None:
    assert failure_outcome(StreamTimeout("idle_timeout", 1)) is Outcome.TIMEOUT
    assert failure_outcome(StreamShutdown()) is Outcome.SHUTDOWN
    assert failure_outcome(ValueError("x")) is Outcome.ERROR


P, S, F, X = Phase.PENDING, Phase.STREAMING, Phase.FINISHED, Phase.FAILED
END, ABORT, WAIT = ShutdownPolicy.END, ShutdownPolicy.ABORT, ShutdownPolicy.WAIT
ERROR, TIMEOUT = Outcome.ERROR, Outcome.TIMEOUT

# (phase, failure, client gone, shutdown requested, policy, trailers allowed) -> ending,
# with an error chunk and a shutdown chunk available.
ENDINGS = [
    # A finished body is complete, whatever came after it.
    ((F, None, False, False, WAIT, False), Ending(Outcome.COMPLETE)),
    ((F, None, True, True, END, True), Ending(Outcome.COMPLETE)),
    # The client left: nothing more is sent, not even an error.
    ((S, None, True, False, WAIT, True), Ending(Outcome.DISCONNECTED)),
    ((P, None, True, False, WAIT, False), Ending(Outcome.DISCONNECTED)),
    ((S, None, True, True, ABORT, False), Ending(Outcome.DISCONNECTED)),
    # Before the start, a failure reaches the application's exception handlers.
    ((P, ERROR, False, False, WAIT, True), Ending(ERROR, propagate=True)),
    ((P, TIMEOUT, False, False, WAIT, False), Ending(TIMEOUT, propagate=True)),
    # After it: the error chunk, then trailers where they reach the client, else an abort.
    ((S, ERROR, False, False, WAIT, False), Ending(ERROR, error_chunk=True, abort=True, log=True)),
    (
        (S, ERROR, False, False, WAIT, True),
        Ending(ERROR, error_chunk=True, finish=True, trailers=True, log=True),
    ),
    ((S, TIMEOUT, False, False, WAIT, False), Ending(TIMEOUT, error_chunk=True, abort=True, log=True)),
    # A client that stopped reading gets no courtesy: straight to the abort.
    ((S, TIMEOUT, True, False, WAIT, True), Ending(TIMEOUT, abort=True, log=True)),
    ((X, ERROR, False, False, WAIT, True), Ending(ERROR, abort=True, log=True)),
    # Shutdown, END: the last chunk and a clean end (started first if need be).
    (
        (S, None, False, True, END, False),
        Ending(Outcome.SHUTDOWN, shutdown_chunk=True, finish=True),
    ),
    (
        (S, None, False, True, END, True),
        Ending(Outcome.SHUTDOWN, shutdown_chunk=True, finish=True, trailers=True),
    ),
    (
        (P, None, False, True, END, False),
        Ending(Outcome.SHUTDOWN, start=True, shutdown_chunk=True, finish=True),
    ),
    # Shutdown, ABORT: a failure, so it cannot look complete.
    ((S, None, False, True, ABORT, False), Ending(Outcome.SHUTDOWN, error_chunk=True, abort=True, log=True)),
    ((P, None, False, True, ABORT, False), Ending(Outcome.SHUTDOWN, propagate=True)),
]


@pytest.mark.parametrize(("facts", "expected"), ENDINGS)
def test_each_ending_is_decided_from_the_state_of_the_response(
    facts: tuple[Phase, Outcome | None, bool, bool, ShutdownPolicy, bool], expected: Ending
) -> None:
    phase, failure, gone, shutdown, policy, trailers = facts
    ending = decide_ending(
        phase=phase,
        failure=failure,
        client_gone=gone,
        shutdown_requested=shutdown,
        policy=policy,
        trailers_allowed=trailers,
        has_error_chunk=True,
        has_shutdown_chunk=True,
    )
    assert ending == expected


def test_no_error_chunk_is_planned_when_the_adapter_has_none() -> None:
    ending = decide_ending(phase=S, failure=ERROR, client_gone=False, has_error_chunk=False)
    assert ending == Ending(ERROR, abort=True, log=True)


# (phase, client gone, policy) -> ending, when the server cancelled the response task
CANCELLED = [
    ((S, False, END), Ending(Outcome.SHUTDOWN, shutdown_chunk=True, finish=True)),
    ((S, True, END), Ending(Outcome.DISCONNECTED)),
    ((S, False, WAIT), Ending(Outcome.DISCONNECTED)),
    ((S, False, ABORT), Ending(Outcome.DISCONNECTED)),
    ((P, False, END), Ending(Outcome.DISCONNECTED)),
    ((F, False, END), Ending(Outcome.COMPLETE)),
]


@pytest.mark.parametrize(("facts", "expected"), CANCELLED)
def test_a_cancelled_response_ends_cleanly_only_when_its_policy_says_end(
    facts: tuple[Phase, bool, ShutdownPolicy], expected: Ending
) -> None:
    phase, gone, policy = facts
    ending = decide_ending(
        phase=phase, failure=None, client_gone=gone, cancelled=True, policy=policy, has_shutdown_chunk=True
    )
    assert ending == expected


def test_a_body_that_stopped_for_no_reason_is_a_bug_of_the_core() -> None:
    with pytest.raises(ResponseStateError, match="without finishing"):
        decide_ending(phase=S, failure=None, client_gone=False)
