"""The state of one response: phases in order, and the facts its ending is decided from."""

from __future__ import annotations

import pytest

from streaming_responses import Framing, ResponseStateError
from streaming_responses._state import Gone, Phase, ResponseState


def test_a_response_goes_from_pending_to_streaming_to_finished() -> None:
    state = ResponseState()
    phases = [state.phase]
    assert not state.started
    assert not state.ended
    state.start(Framing.CHUNKED)
    state.sent(3)
    state.sent(4)
    phases.append(state.phase)
    assert phases == [Phase.PENDING, Phase.STREAMING]
    assert state.started
    assert state.bytes_sent == 7
    state.finish()
    assert state.finished
    assert state.ended
    assert state.framing is Framing.CHUNKED


@pytest.mark.parametrize("step", ["finish", "sent"])
def test_nothing_happens_to_the_body_before_the_start(step: str) -> None:
    state = ResponseState()
    with pytest.raises(ResponseStateError, match="the response is pending, not streaming"):
        state.finish() if step == "finish" else state.sent(1)


def test_a_response_starts_once_and_finishes_once() -> None:
    state = ResponseState()
    state.start(Framing.CONTENT_LENGTH)
    with pytest.raises(ResponseStateError, match="cannot send the response start"):
        state.start(Framing.CHUNKED)
    state.finish()
    with pytest.raises(ResponseStateError, match="cannot finish the body"):
        state.finish()
    with pytest.raises(ResponseStateError, match="already finished"):
        state.fail()


def test_a_pending_response_can_fail_and_stays_unstarted() -> None:
    state = ResponseState()
    state.fail()
    state.fail()
    assert state.phase is Phase.FAILED
    assert state.ended
    assert not state.started


def test_a_failed_stream_still_knows_it_was_started() -> None:
    state = ResponseState()
    state.start(Framing.CHUNKED)
    state.fail()
    assert state.started
    assert state.framing is Framing.CHUNKED
    with pytest.raises(ResponseStateError):
        state.sent(1)


def test_the_first_reason_the_client_is_gone_is_kept() -> None:
    state = ResponseState()
    state.client_left(Gone.STOPPED_READING)
    state.client_left(Gone.DISCONNECTED)
    assert state.gone is Gone.STOPPED_READING


def test_a_client_leaving_after_the_final_body_message_leaves_no_reason() -> None:
    state = ResponseState()
    state.start(Framing.CONTENT_LENGTH)
    state.finish()
    state.client_left(Gone.DISCONNECTED)
    assert state.gone is None
