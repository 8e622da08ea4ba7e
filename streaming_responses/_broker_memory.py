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
  is safe to publish from any thread;
* what expires (a topic given :meth:`MemoryBackend.expire`, a claimed value, a held member) has
  its deadline on one heap, and whatever is due goes at the next call that looks: nothing
  expired is ever seen, and nothing is kept long after it expired while the broker is in use.
"""

from __future__ import annotations

import heapq
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
        #: What expires, by kind ("topic", "value", "held") and name: its current deadline.
        self._deadlines: dict[tuple[str, str], float] = {}
        #: The same deadlines as a heap, with stale entries (a deadline set again) skipped.
        self._due: list[tuple[float, str, str]] = []
        self._values: dict[str, str] = {}
        self._held: dict[str, dict[str, float]] = {}

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

    def _set_deadline(self, kind: str, name: str, deadline: float) -> None:
        self._deadlines[(kind, name)] = deadline
        heapq.heappush(self._due, (deadline, kind, name))

    def _expire_due(self, now: float) -> None:
        """Forget whatever expired by ``now`` (lock held)."""
        due = self._due
        while due and due[0][0] <= now:
            deadline, kind, name = heapq.heappop(due)
            if self._deadlines.get((kind, name)) != deadline:
                continue  # set again since: a later entry of the heap stands for it
            del self._deadlines[(kind, name)]
            if kind == "topic":
                self._topics.pop(name, None)
            elif kind == "value":
                self._values.pop(name, None)
            else:
                self._held.pop(name, None)

    def append_nowait(self, topic: str, event: ServerSentEvent) -> ServerSentEvent:
        """Store ``event`` and deliver it to this process's subscribers; never waits."""
        fanout = self._fanout
        assert fanout is not None, "attach() a fan-out first"
        with self._lock:
            if self._due:
                self._expire_due(time.monotonic())
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
            now = time.monotonic()
            self._expire_due(now)
            kept = self._topics.get(topic)
            if kept is None:
                # Never published to in this epoch (an id made up for it), or expired.
                raise EventsLost(last_event_id, "not in this topic's history (expired, or never published)")
            self._trim(kept, now)
            if after < kept.trimmed:
                raise EventsLost(last_event_id, "older than the history keeps")
            entries = kept.entries
            start = len(entries)
            while start and entries[start - 1].position > after:
                start -= 1
            return list(islice(entries, start, None))

    # -- what resumable streams need -------------------------------------------------------

    async def expire(self, topic: str, seconds: float) -> None:
        with self._lock:
            now = time.monotonic()
            if topic in self._topics:
                self._set_deadline("topic", topic, now + max(seconds, 0.0))
            self._expire_due(now)

    async def ends(self, topic: str) -> tuple[Entry | None, Entry | None]:
        with self._lock:
            now = time.monotonic()
            self._expire_due(now)
            kept = self._topics.get(topic)
            if kept is None:
                return None, None
            self._trim(kept, now)
            if not kept.entries:
                return None, None
            return kept.entries[0], kept.entries[-1]

    async def claim(self, name: str, value: str, seconds: float) -> str:
        with self._lock:
            now = time.monotonic()
            self._expire_due(now)
            current = self._values.setdefault(name, value)
            if current == value:
                self._set_deadline("value", name, now + seconds)
                self._expire_due(now)
            return current

    async def hold(self, name: str, member: str, seconds: float) -> int:
        with self._lock:
            now = time.monotonic()
            self._expire_due(now)
            held = self._held.setdefault(name, {})
            if seconds > 0:
                held[member] = now + seconds
            else:
                held.pop(member, None)
            count = self._count_held(name, now)
            if count:
                self._set_deadline("held", name, max(self._held[name].values()))
            return count

    async def holders(self, name: str) -> int:
        with self._lock:
            now = time.monotonic()
            self._expire_due(now)
            return self._count_held(name, now)

    def _count_held(self, name: str, now: float) -> int:
        """The members of ``name`` held at ``now``, forgetting those that ran out (lock held)."""
        held = self._held.get(name)
        if held is None:
            return 0
        for member in [member for member, deadline in held.items() if deadline <= now]:
            del held[member]
        if not held:
            del self._held[name]
            self._deadlines.pop(("held", name), None)
        return len(held)

    def kept(self, topic: str) -> int:
        """How many events of ``topic`` the history holds now."""
        with self._lock:
            kept = self._topics.get(topic)
            return 0 if kept is None else len(kept.entries)

    async def aclose(self) -> None:
        return None
