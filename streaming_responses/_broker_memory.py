"""The in-process broker backend: a bounded history per topic in this process's memory.

This module owns the embedded engine behind ``EventBroker()`` and ``memory://``: positions,
the history and its trimming. The rules that keep it exact:

* one sequence number counts every event of the broker, so positions strictly increase per
  topic (and across topics, which orders a replay of several topics);
* an id's position carries the broker's *epoch*, a random token made when the broker is
  created and made anew in a process forked from it (gunicorn ``--preload``): an id from
  another process, another broker or before a restart never matches, and gives ``EventsLost``
  instead of a replay of the wrong events;
* resuming after a position is exact when no event after it was trimmed: each topic remembers
  the position of the newest event it trimmed;
* one lock covers appending (and the hand-over to the fan-out), following and replaying, so it
  is safe to publish from any thread.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence
from itertools import islice

from ._broker_backend import Entry, Position
from ._broker_fanout import Fanout
from ._events import ServerSentEvent
from ._exceptions import EventsLost

_TOKEN = re.compile(r"([0-9a-f]{12})\.([0-9]{1,19})")


class _History:
    """The kept events of one topic, oldest first, and the newest position trimmed away."""

    __slots__ = ("entries", "stamps", "trimmed")

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self.stamps: deque[float] = deque()  # time.monotonic() of each entry, for max_age
        self.trimmed: Position = (0, 0)


class MemoryBackend:
    """Events kept in this process (see the module docstring).

    Example::

        backend = MemoryBackend(history=100, max_age=None)
    """

    where = "memory://"

    def __init__(self, history: int, max_age: float | None) -> None:
        self.history = history
        self.max_age = max_age
        self._lock = threading.Lock()
        self._fanout: Fanout | None = None
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch = secrets.token_hex(6)
        self._sequence = 0
        self._topics: dict[str, _History] = {}

    def forked(self) -> None:
        """In a child process: a new epoch, so no id of the parent or a sibling resumes here."""
        self._lock = threading.Lock()
        self._new_epoch()

    def attach(self, fanout: Fanout) -> None:
        self._fanout = fanout

    # -- positions ------------------------------------------------------------------------

    def parse_position(self, topic: str, token: str) -> Position | None:
        match = _TOKEN.fullmatch(token)
        if match is None or match.group(1) != self.epoch:
            return None
        return (int(match.group(2)), 0)

    def format_position(self, topic: str, position: Position) -> str:
        return f"{self.epoch}.{position[0]}"

    # -- the engine -------------------------------------------------------------------------

    def _trim(self, kept: _History, now: float) -> None:
        entries, stamps = kept.entries, kept.stamps
        while len(entries) > self.history:
            kept.trimmed = entries.popleft().position
            stamps.popleft()
        if self.max_age is not None:
            oldest = now - self.max_age
            while stamps and stamps[0] < oldest:
                kept.trimmed = entries.popleft().position
                stamps.popleft()

    def append_nowait(self, topic: str, event: ServerSentEvent) -> ServerSentEvent:
        """Store ``event`` and deliver it to this process's subscribers; never waits."""
        fanout = self._fanout
        assert fanout is not None, "attach() a fan-out first"
        with self._lock:
            self._sequence += 1
            position = (self._sequence, 0)
            event = event.with_id(f"{topic}@{self.epoch}.{self._sequence}")
            entry = Entry(position, event)
            kept = self._topics.get(topic)
            if kept is None:
                kept = self._topics[topic] = _History()
            kept.entries.append(entry)
            kept.stamps.append(time.monotonic())
            self._trim(kept, kept.stamps[-1])
            fanout.deliver(topic, (entry,))
        return event

    async def append(self, topic: str, event: ServerSentEvent) -> ServerSentEvent:
        return self.append_nowait(topic, event)

    async def follow(self, topics: Sequence[str]) -> None:
        fanout = self._fanout
        assert fanout is not None, "attach() a fan-out first"
        with self._lock:
            for topic in topics:
                if fanout.position(topic) is None:
                    fanout.start_at(topic, (self._sequence, 0))

    async def replay(self, topic: str, token: str, last_event_id: str) -> list[Entry]:
        after = self.parse_position(topic, token)
        if after is None:  # pragma: no cover - the subscription parsed it already
            raise EventsLost(last_event_id, "not an id of this broker")
        with self._lock:
            if after[0] > self._sequence:
                raise EventsLost(last_event_id, "never published by this broker")
            kept = self._topics.get(topic)
            if kept is None:
                return []
            self._trim(kept, time.monotonic())
            if after < kept.trimmed:
                raise EventsLost(last_event_id, "older than the history keeps")
            entries = kept.entries
            start = len(entries)
            while start and entries[start - 1].position > after:
                start -= 1
            return list(islice(entries, start, None))

    def kept(self, topic: str) -> int:
        """How many events of ``topic`` the history holds now."""
        with self._lock:
            kept = self._topics.get(topic)
            return 0 if kept is None else len(kept.entries)

    async def aclose(self) -> None:
        return None
