"""The seam between the event broker and its engines: what a backend does, and nothing more.

This module owns the protocol every broker backend implements (:class:`BrokerBackend`) and the
plain data that crosses it. The rule that keeps backends thin: a backend only talks to its
engine. It appends an event and returns its position, replays the events after a position (or
raises :class:`~._exceptions.EventsLost`), and follows new events into the process's
:class:`~._broker_fanout.Fanout`. Subscriptions, buffers, the drop rule, ids with several
topics and everything HTTP live elsewhere; an ``EventSourceResponse`` is what sends.

Resumable streams (``_resumable.py``) need a few more engine features, each one small method
with the same meaning on every engine: a topic that expires (:meth:`BrokerBackend.expire`), the
first and last events of a topic (:meth:`BrokerBackend.ends`), a value set only if absent, with
an expiry (:meth:`BrokerBackend.claim`), and names held for a while, counted across processes
(:meth:`BrokerBackend.hold`, :meth:`BrokerBackend.holders`: a lease and a presence). Names are
the caller's, checked by it; a backend only keeps them apart from topics (a name contains
``#``, which no topic can).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ._events import ServerSentEvent

if TYPE_CHECKING:
    from ._broker_fanout import Fanout

#: Where an event is in its topic: comparable, strictly increasing per topic. Redis: the stream
#: id ``(milliseconds, sequence)``; in process: ``(sequence, 0)``.
Position = tuple[int, int]


class Entry(NamedTuple):
    """One event of a topic as a backend hands it over: its position and the event to send.

    The event's ``id`` is already the one-topic id (``topic@position``), so a subscription of
    one topic sends it as it is: encoded once per process, never once per subscriber.
    """

    position: Position
    event: ServerSentEvent


class BrokerBackend(Protocol):
    """What an engine behind :class:`~streaming_responses.EventBroker` provides.

    ``where`` names the engine in messages (``memory://``, ``redis://127.0.0.1:6379/0``).
    Every coroutine runs on the subscriber's or publisher's event loop.
    """

    where: str

    def attach(self, fanout: Fanout) -> None:
        """Deliver the new events of followed topics to ``fanout`` from now on."""

    def forked(self) -> None:
        """Called in a process forked from the one that made the backend: forget the parent's
        connections and give ids no other process gives."""

    async def append(self, topic: str, event: ServerSentEvent) -> ServerSentEvent:
        """Store ``event`` (which has no id) in ``topic``; return it with its one-topic id."""

    def parse_position(self, topic: str, token: str) -> Position | None:
        """The position a token of one of this backend's ids names, or ``None`` (not ours)."""

    def format_position(self, topic: str, position: Position) -> str:
        """The token of ``position`` in an id (the inverse of :meth:`parse_position`)."""

    async def follow(self, topics: Sequence[str]) -> None:
        """Make sure new events of ``topics`` reach the fan-out; return once each has a position.

        The fan-out's position of a topic is then where the events it will be given start.
        """

    async def replay(self, topic: str, token: str, last_event_id: str) -> list[Entry]:
        """The kept events of ``topic`` after the position ``token`` names, oldest first.

        Raises :class:`~._exceptions.EventsLost` (naming ``last_event_id``) unless the
        history holds every event after it.
        """

    async def expire(self, topic: str, seconds: float) -> None:
        """Drop ``topic`` (its events and its epoch) ``seconds`` from now; at once if ``<= 0``.

        Later calls set a new time. Appending does not change it. A topic that holds nothing
        is left alone.
        """

    async def ends(self, topic: str) -> tuple[Entry | None, Entry | None]:
        """The first and the last event the history of ``topic`` holds (``None``: none)."""

    async def claim(self, name: str, value: str, seconds: float) -> str:
        """Store ``value`` under ``name`` for ``seconds`` unless another value is stored there.

        Returns the value stored now: ``value`` (stored, or already there: then its expiry is
        set again to ``seconds``) or the other value, which is left as it is.
        """

    async def hold(self, name: str, member: str, seconds: float) -> int:
        """Hold ``member`` of ``name`` for ``seconds`` from now (``<= 0``: let go of it now).

        Returns how many members of ``name`` are held afterwards (those not yet run out).
        """

    async def holders(self, name: str) -> int:
        """How many members of ``name`` are held now."""

    async def aclose(self) -> None:
        """Release the engine's connections (the broker ends its subscriptions itself)."""
