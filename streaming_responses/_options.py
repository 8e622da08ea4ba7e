"""The keywords every response class shares, checked in one place.

This module owns :class:`StreamOptions`, the settings that mean the same on every response
class (``content_length``, ``timeout``, ``idle_timeout``, ``send_timeout``, ``duplex``,
``on_outcome``, ``on_shutdown``, ``compress``), and the check of each. The rule that keeps it
simple: a class keeps its explicit keyword signature (FastAPI reads it for OpenAPI), and hands
its arguments here as they are with :meth:`StreamOptions.from_arguments`; adding a keyword to
every class is a field and a check here, the place the core reads it, and the signatures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._compression import Codings, parse_compress
from ._loops import running_loop_name
from ._outcome import OutcomeCallback
from ._shutdown import ShutdownPolicy


def parse_content_length(value: Any, *, source: str = "content_length") -> int:
    """Validate a declared body length; raise ``ValueError`` naming ``source`` if it is bad."""
    if isinstance(value, bool):
        raise TypeError(f"{source} must be an int, not bool")
    if isinstance(value, int):
        number = value
    elif isinstance(value, (str, bytes)):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        stripped = text.strip()
        if not stripped.isdigit() or not stripped.isascii():
            raise ValueError(f"{source} must be a non-negative integer, got {text!r}")
        number = int(stripped)
    else:
        raise TypeError(f"{source} must be an int, not {type(value).__name__}")
    if number < 0:
        raise ValueError(f"{source} must be a non-negative integer, got {number}")
    return number


def parse_timeout(value: float | None, name: str) -> float | None:
    """Validate a ``timeout=`` or ``idle_timeout=`` argument (seconds, positive, or None)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def parse_shutdown_policy(value: ShutdownPolicy | str) -> ShutdownPolicy:
    """``on_shutdown=`` as a :class:`ShutdownPolicy`, refusing anything else by name."""
    if isinstance(value, ShutdownPolicy):
        return value
    try:
        return ShutdownPolicy(value)
    except ValueError:
        choices = ", ".join(repr(policy.value) for policy in ShutdownPolicy)
        raise ValueError(f"on_shutdown must be one of {choices}, not {value!r}") from None


def _check_send_timeout(value: float | None, name: str) -> float | None:
    seconds = parse_timeout(value, name)
    if seconds is not None and running_loop_name() == "trio":
        # hypercorn's trio worker (the one trio ASGI server) writes to the socket inside a
        # shielded cancel scope, so a send to a client that stopped reading cannot be given up.
        raise ValueError(
            f"{name} cannot work on trio: the server's socket writes cannot be interrupted there, so a "
            "client that stopped reading cannot be dropped; leave it out, or serve with an asyncio worker"
        )
    return seconds


def _check_flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}")
    return value


def _check_callback(value: object, name: str) -> OutcomeCallback | None:
    if value is not None and not callable(value):
        raise TypeError(
            f"{name} must be a callable taking a StreamOutcome, or None, not {type(value).__name__}"
        )
    return value


def _check_length(value: object, name: str) -> int | None:
    return None if value is None else parse_content_length(value, source=name)


#: How each option is checked, by keyword.
_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "content_length": _check_length,
    "timeout": parse_timeout,
    "idle_timeout": parse_timeout,
    "send_timeout": _check_send_timeout,
    "duplex": _check_flag,
    "on_outcome": _check_callback,
    "on_shutdown": lambda value, _name: parse_shutdown_policy(value),
    "compress": parse_compress,
}


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """The shared settings of one response, checked.

    Example::

        options = StreamOptions.from_arguments({"timeout": 30, "on_shutdown": "end"})
        assert options.timeout == 30.0 and options.on_shutdown is ShutdownPolicy.END
    """

    #: The exact body size, sent as ``Content-Length`` and enforced.
    content_length: int | None = None
    #: Seconds the whole response may take.
    timeout: float | None = None
    #: Seconds the producer may be silent between two chunks.
    idle_timeout: float | None = None
    #: Seconds one ``send()`` may take before the client is taken as gone.
    send_timeout: float | None = None
    #: The producer reads the request body itself: the core does not listen for the disconnect.
    duplex: bool = False
    #: Called with the :class:`~streaming_responses.StreamOutcome` when the response ends.
    on_outcome: OutcomeCallback | None = None
    #: What server shutdown does to the response.
    on_shutdown: ShutdownPolicy = ShutdownPolicy.WAIT
    #: The content codings the stream may be compressed with, with their levels, in preference
    #: order (``compress=``); empty: never compressed.
    compress: Codings = ()

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> StreamOptions:
        """The options among a constructor's arguments (pass its ``locals()``), each checked.

        Names that are not options (``content``, ``self``, a class's own keywords) are ignored;
        options a class does not take keep their defaults.
        """
        values = {name: check(arguments[name], name) for name, check in _CHECKS.items() if name in arguments}
        return cls(**values)

    def replace(self, **changes: Any) -> StreamOptions:
        """A copy with ``changes`` applied, each checked."""
        return dataclasses.replace(
            self, **{name: _CHECKS[name](value, name) for name, value in changes.items()}
        )
