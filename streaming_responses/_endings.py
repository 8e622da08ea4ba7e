"""Pure decisions about how a response ends: trailers, and what to send (or not) at the end.

Everything here takes plain data and returns plain data; nothing awaits and nothing touches
ASGI ``send`` or ``receive``. The core (``_core.py``) gathers the facts when the body stops (the
response's :class:`~._state.Phase`, whether the client is gone, what the exception was) and
acts on the :class:`Ending` that :func:`decide_ending` returns. The rule that keeps it honest:
an ending is clean (a terminated body) only when the body is complete, when a shutdown policy
asks for a clean end, or when trailer fields that say the stream failed can reach the client;
every other failure after the start aborts the connection (RFC 9110 §6.5, §9.3.2's spirit: a
truncated body must never look complete).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._exceptions import ResponseStateError, StreamShutdown, StreamTimeout
from ._negotiation import header_tokens
from ._outcome import Outcome
from ._shutdown import ShutdownPolicy
from ._state import Phase

#: Trailer fields the core sends when trailers can reach the client.
STATUS_TRAILER = b"stream-status"
ERROR_TRAILER = b"stream-error"
TRAILER_DECLARATION = (b"trailer", STATUS_TRAILER + b", " + ERROR_TRAILER)


def trailers_eligible(scope: Mapping[str, Any]) -> bool:
    """Whether trailer fields sent by the core would reach this client.

    All three must hold: the server offers the ASGI ``http.response.trailers`` extension; the
    request says ``TE: trailers`` (RFC 9110 §10.1.4: otherwise a server may drop them); and the
    protocol is HTTP/2 or HTTP/3, where trailers end a stream cleanly. Declaring trailers where
    the extension is absent truncates the response on today's servers, hence the strict test.
    """
    extensions = scope.get("extensions") or {}
    if "http.response.trailers" not in extensions:
        return False
    if scope.get("http_version") not in ("2", "3"):
        return False
    return b"trailers" in header_tokens(scope.get("headers") or (), b"te")


def status_trailers(error: BaseException | None) -> list[tuple[bytes, bytes]]:
    """The trailer fields that end a stream: complete, or error plus the exception class name."""
    if error is None:
        return [(STATUS_TRAILER, b"complete")]
    name = type(error).__name__.encode("ascii", "replace")
    return [(STATUS_TRAILER, b"error"), (ERROR_TRAILER, name)]


def failure_outcome(error: BaseException) -> Outcome:
    """The outcome an exception stands for: a timeout, a cut-off shutdown, or an error."""
    if isinstance(error, StreamTimeout):
        return Outcome.TIMEOUT
    if isinstance(error, StreamShutdown):
        return Outcome.SHUTDOWN
    return Outcome.ERROR


@dataclass(frozen=True)
class Ending:
    """What the core does to end one response, in this order, and the outcome it reports.

    * ``propagate``: nothing was sent; raise the exception to the application's handlers.
    * ``start``: send the response start first (a stream shut down before its first chunk).
    * ``error_chunk`` / ``shutdown_chunk``: send the adapter's bytes for that ending.
    * ``finish``: end the body cleanly (``more_body=False``), then the trailers if ``trailers``
      (they say ``complete``, or ``error`` when there is an exception).
    * ``abort``: raise after the start, so the server drops the connection; also what happens
      when a planned clean end could not be sent in time.
    * ``log``: the failure happened after the start: log it once.
    """

    outcome: Outcome
    propagate: bool = False
    start: bool = False
    error_chunk: bool = False
    shutdown_chunk: bool = False
    finish: bool = False
    trailers: bool = False
    abort: bool = False
    log: bool = False


def decide_ending(
    *,
    phase: Phase,
    failure: Outcome | None,
    client_gone: bool,
    shutdown_requested: bool = False,
    cancelled: bool = False,
    policy: ShutdownPolicy = ShutdownPolicy.WAIT,
    trailers_allowed: bool = False,
    has_error_chunk: bool = False,
    has_shutdown_chunk: bool = False,
) -> Ending:
    """Decide how a response ends, from where it is and why its body stopped.

    ``failure`` is the outcome of the exception that stopped the body (see
    :func:`failure_outcome`), ``None`` when none did. ``cancelled`` says the server cancelled
    the response task (its own shutdown); the core re-raises that cancellation afterwards.

    >>> decide_ending(phase=Phase.STREAMING, failure=Outcome.ERROR, client_gone=False)
    Ending(outcome=<Outcome.ERROR: 'error'>, propagate=False, start=False, error_chunk=False, \
shutdown_chunk=False, finish=False, trailers=False, abort=True, log=True)
    """
    if cancelled:
        if phase is Phase.FINISHED:
            return Ending(Outcome.COMPLETE)
        if policy is ShutdownPolicy.END and phase is Phase.STREAMING and not client_gone:
            return _clean_shutdown(phase, trailers_allowed, has_shutdown_chunk)
        return Ending(Outcome.DISCONNECTED)
    if failure is None:
        if phase is Phase.FINISHED:
            return Ending(Outcome.COMPLETE)
        if client_gone:
            return Ending(Outcome.DISCONNECTED)
        if not shutdown_requested:
            raise ResponseStateError("the body ended without finishing the response")
        if policy is not ShutdownPolicy.ABORT:
            return _clean_shutdown(phase, trailers_allowed, has_shutdown_chunk)
        failure = Outcome.SHUTDOWN
    if phase is Phase.PENDING:
        return Ending(failure, propagate=True)
    courteous = phase is Phase.STREAMING and not client_gone
    clean = courteous and trailers_allowed  # trailers can say it failed (RFC 9110 §6.5)
    return Ending(
        failure,
        error_chunk=courteous and has_error_chunk,
        finish=clean,
        trailers=clean,
        abort=not clean,
        log=True,
    )


def _clean_shutdown(phase: Phase, trailers_allowed: bool, has_shutdown_chunk: bool) -> Ending:
    return Ending(
        Outcome.SHUTDOWN,
        start=phase is Phase.PENDING,
        shutdown_chunk=has_shutdown_chunk,
        finish=True,
        trailers=trailers_allowed,
    )
