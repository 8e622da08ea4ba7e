"""Where one response is: its phase, whether its client is gone, and what it has sent.

This module owns the state of one streamed response as one object, so that a single place
answers "where is this response?" instead of flags spread over the pump. The rule that keeps it
simple: every change of phase is a method that checks the phase it comes from and raises
:class:`~streaming_responses.ResponseStateError` on an out-of-order step; the facts gathered
on the way (the client left, a shutdown was asked for, bytes sent) are recorded here and read
by the pure ending decision (``_endings.py``). Nothing here awaits or sends.
"""

from __future__ import annotations

import enum

from ._exceptions import ResponseStateError
from ._framing import Framing


class Phase(enum.Enum):
    """Where one response is in its life."""

    PENDING = "pending"  # nothing sent yet: an error still reaches the exception handlers
    STREAMING = "streaming"  # headers sent: an error can only be signalled on the wire
    FINISHED = "finished"  # the final body message (and trailers) went out
    FAILED = "failed"  # ended by an error, a timeout, a disconnect or a cut-off shutdown


class Gone(enum.Enum):
    """Why the client is taken as gone: nothing more is sent to it, not even an error."""

    #: ``http.disconnect`` arrived (or a duplex producer saw ``ClientDisconnect``).
    DISCONNECTED = "disconnected"
    #: One ``send()`` took longer than ``send_timeout``: the client stopped reading.
    STOPPED_READING = "stopped-reading"


class ResponseState:
    """The state of one response: its :class:`Phase` and the facts its ending depends on.

    >>> state = ResponseState()
    >>> state.start(Framing.CHUNKED); state.sent(5); state.finish()
    >>> state.phase, state.bytes_sent, state.started
    (<Phase.FINISHED: 'finished'>, 5, True)
    """

    __slots__ = (
        "bytes_sent",
        "framing",
        "gone",
        "last_send",
        "phase",
        "shutdown_requested",
        "trailers_allowed",
    )

    def __init__(self) -> None:
        self.phase = Phase.PENDING
        #: The framing of the response start, once it was sent (stays set after a failure).
        self.framing: Framing | None = None
        #: Body bytes handed to the server (what the client can have received at most).
        self.bytes_sent = 0
        #: When the last body message was sent (``anyio.current_time()``), for keep-alives.
        self.last_send = 0.0
        #: Whether trailer fields can reach this client (``_endings.trailers_eligible``).
        self.trailers_allowed = False
        #: Why the client is gone, or ``None`` while it is there.
        self.gone: Gone | None = None
        #: Whether server shutdown (or ``end_all_streams()``) asked this response to end.
        self.shutdown_requested = False

    @property
    def started(self) -> bool:
        """Whether the response start was sent (also once the response has ended)."""
        return self.framing is not None

    @property
    def finished(self) -> bool:
        """Whether the final body message (and trailers) went out."""
        return self.phase is Phase.FINISHED

    @property
    def ended(self) -> bool:
        """Whether the response finished or failed: nothing more can happen to it."""
        return self.phase is Phase.FINISHED or self.phase is Phase.FAILED

    def start(self, framing: Framing) -> None:
        """Record that the response start was sent with ``framing``."""
        self._require(Phase.PENDING, "send the response start")
        self.phase = Phase.STREAMING
        self.framing = framing

    def sent(self, nbytes: int) -> None:
        """Record ``nbytes`` of body handed to the server."""
        if self.phase is not Phase.STREAMING:
            self._require(Phase.STREAMING, "send body bytes")
        self.bytes_sent += nbytes

    def finish(self) -> None:
        """Record that the final body message went out."""
        self._require(Phase.STREAMING, "finish the body")
        self.phase = Phase.FINISHED

    def fail(self) -> None:
        """Record that the response ended without finishing (a no-op once it failed)."""
        if self.phase is Phase.FINISHED:
            raise ResponseStateError("cannot fail a response that already finished")
        self.phase = Phase.FAILED

    def client_left(self, why: Gone) -> None:
        """Record that the client is gone; the first reason is kept.

        A client that leaves after the final body message is not gone from this response: a
        complete response stays complete, with no reason recorded.
        """
        if self.gone is None and self.phase is not Phase.FINISHED:
            self.gone = why

    def _require(self, expected: Phase, step: str) -> None:
        if self.phase is not expected:
            raise ResponseStateError(
                f"cannot {step}: the response is {self.phase.value}, not {expected.value}"
            )
