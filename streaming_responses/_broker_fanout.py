"""Fan-out to the subscribers of one process: bounded buffers, the drop rule, exact joins.

This module owns the local half of the broker: :class:`Fanout` (which subscriptions of this
process follow which topic, and where each topic's delivered events are) and
:class:`Subscription` (one subscriber's buffer and iterator). The rules that keep it simple:

* a backend hands each new event to :meth:`Fanout.deliver` once; the fan-out appends the same
  event object to every buffer, so an event is encoded once per process, not per subscriber;
* a subscription joins in a fixed order (follow the topics, register and take each topic's
  position, then replay after the ``Last-Event-ID``), and afterwards passes on an event only
  if its position is past the last one it passed on for that topic. Positions strictly
  increase per topic, so the replay and the live events overlap without a duplicate or a gap;
* memory is bounded: a subscription holds at most ``subscriber_buffer`` live events it has not
  taken yet, and one that would need more is dropped, loudly (:class:`SubscriberTooSlow`);
* one lock guards the subscriber lists and buffers, so publishing from any thread is safe; a
  waiting subscriber is woken on its own event loop.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

from ._broker_backend import BrokerBackend, Entry, Position
from ._broker_ids import format_id, parse_id
from ._events import ServerSentEvent
from ._exceptions import BrokerClosed, BrokerError, EventsLost, SubscriberTooSlow
from ._loops import Callback, Waker, current_loop

#: Takes the bytes of one live event for an event stream; False when its subscriber must be
#: dropped instead (see :meth:`Subscription.hand_live_events_to`).
Sink = Callable[[bytes], bool]


class _Topic:
    """The subscribers of one topic in this process and the position of its last delivered event."""

    __slots__ = ("position", "subscribers")

    def __init__(self) -> None:
        #: ``None`` until a backend follows the topic (or delivers its first event).
        self.position: Position | None = None
        # A dict keeps insertion order, copies under the lock and removes in O(1).
        self.subscribers: dict[Subscription, None] = {}


class Fanout:
    """The subscriptions of one process, by topic; a backend delivers new events here."""

    def __init__(self, subscriber_buffer: int) -> None:
        self.subscriber_buffer = subscriber_buffer
        self.lock = threading.Lock()
        self._topics: dict[str, _Topic] = {}
        self._closed = False

    @property
    def subscribers(self) -> int:
        """How many subscriptions have joined and are open (one of several topics counts once)."""
        with self.lock:
            return len({sub for topic in self._topics.values() for sub in topic.subscribers if sub._ready})

    def position(self, topic: str) -> Position | None:
        """Where the events delivered for ``topic`` are (``None``: not followed)."""
        state = self._topics.get(topic)
        return None if state is None else state.position

    def start_at(self, topic: str, position: Position) -> bool:
        """Set where a newly followed topic starts; False if it already had a position.

        Subscriptions registered on the topic before it had a position start there too.
        """
        with self.lock:
            state = self._topics.setdefault(topic, _Topic())
            if state.position is not None:
                return False
            state.position = position
            for sub in state.subscribers:
                sub._after.setdefault(topic, position)
            return True

    def followed(self) -> dict[str, Position]:
        """The topics that have subscribers and a position: what a reading backend reads.

        A topic is forgotten when its last subscriber leaves, so a backend stops reading it at
        its next read and starts afresh when someone follows it again.
        """
        with self.lock:
            return {
                name: state.position for name, state in self._topics.items() if state.position is not None
            }

    def add(self, subscription: Subscription) -> None:
        """Register ``subscription`` on its topics, starting where each topic's deliveries are."""
        with self.lock:
            if self._closed:
                raise BrokerClosed("subscribe")
            for name in subscription.topics:
                state = self._topics.setdefault(name, _Topic())
                state.subscribers[subscription] = None
                if state.position is not None:
                    subscription._after[name] = state.position

    def remove(self, subscription: Subscription) -> None:
        """Unregister ``subscription``; forget a topic it was the last subscriber of (lock held)."""
        topics = self._topics
        for name in subscription.topics:
            state = topics.get(name)
            if state is not None:
                state.subscribers.pop(subscription, None)
                if not state.subscribers:
                    del topics[name]

    def deliver(self, topic: str, entries: Sequence[Entry], position: Position | None = None) -> None:
        """Hand new events of ``topic`` (in order) to its subscribers.

        ``position`` is where the topic's deliveries are afterwards (default: the last entry's);
        a backend passes it when it read entries that are not events. Entries that are not past
        the topic's position are skipped, so a late or repeated read never delivers twice.
        """
        with self.lock:
            state = self._topics.get(topic)
            if state is None or state.position is None:
                # Not followed (yet): a read that began before the topic was forgotten and
                # followed again. Its subscribers start where follow() puts them.
                return
            current = state.position
            if entries and entries[0].position <= current:
                entries = [entry for entry in entries if entry.position > current]
            if entries:
                state.position = entries[-1].position
            if position is not None and position > state.position:
                state.position = position
            if not entries or not state.subscribers:
                return
            bound = self.subscriber_buffer
            dropped = [sub for sub in state.subscribers if not sub._push(topic, entries, bound)]
            for sub in dropped:
                self.remove(sub)

    def fail(self, topics: Iterable[str] | None, error: BrokerError) -> None:
        """End the subscriptions of ``topics`` (all: ``None``) with ``error``; forget the topics."""
        with self.lock:
            names = list(self._topics) if topics is None else [t for t in topics if t in self._topics]
            failed: dict[Subscription, None] = {}
            for name in names:
                failed.update(self._topics[name].subscribers)
            for sub in failed:
                self.remove(sub)
                sub._fail(error)

    def close_all(self) -> None:
        """End every subscription: their iteration stops after the events already taken."""
        with self.lock:
            self._closed = True
            subscriptions = {sub for state in self._topics.values() for sub in state.subscribers}
            self._topics.clear()
            for sub in subscriptions:
                sub._end()


class Subscription:
    """One subscriber's view of a broker: an async iterator of :class:`ServerSentEvent`.

    It yields the events after its ``Last-Event-ID`` first (replayed from the history), then
    live ones as they are published, each exactly once. It joins the broker when it is
    entered (``async with``) or first iterated; that is where :class:`EventsLost` is raised
    for an id that cannot be resumed exactly. Use it as an async context manager (or call
    :meth:`close`) so that it leaves the broker when the stream ends; one that is forgotten is
    dropped once its buffer fills up.

    Example::

        async with broker.subscribe(last_event_id(request)) as events:
            async for event in events:
                yield event
    """

    __slots__ = (
        "_after",
        "_backend",
        "_buffer",
        "_closed",
        "_dropped",
        "_error",
        "_fanout",
        "_joined",
        "_last_event_id",
        "_loop",
        "_ready",
        "_replay",
        "_single",
        "_sink",
        "_thread",
        "_waiter",
        "topics",
    )

    def __init__(
        self,
        fanout: Fanout,
        backend: BrokerBackend,
        topics: tuple[str, ...],
        last_event_id: str | None,
    ) -> None:
        self._fanout = fanout
        self._backend = backend
        #: The topics this subscription follows, in the order its ids name them.
        self.topics = topics
        self._single = len(topics) == 1
        self._last_event_id = last_event_id or None
        self._joined = False
        self._ready = False  # joined: every event from here on reaches the buffer
        self._replay: deque[tuple[str, Entry]] = deque()
        self._buffer: deque[tuple[str, Entry]] = deque()
        #: The position of the last event passed on (or resumed from) per topic.
        self._after: dict[str, Position] = {}
        self._dropped = False
        self._closed = False
        self._error: BrokerError | None = None
        self._waiter: Waker | None = None
        #: Schedules a callback on the subscriber's loop from any thread (the loop seam).
        self._loop: Callable[[Callback], object] | None = None
        self._thread = 0
        #: Where live events go instead of the buffer, once an event stream took this
        #: subscription over (:meth:`hand_live_events_to`).
        self._sink: Sink | None = None

    @property
    def pending(self) -> int:
        """How many events are waiting to be taken (replay included; duplicates not yet removed)."""
        return len(self._replay) + len(self._buffer)

    @property
    def dropped(self) -> bool:
        """Whether the broker dropped this subscription for falling behind."""
        return self._dropped

    @property
    def subscriber_buffer(self) -> int:
        """How many live events this subscription may hold untaken before it is dropped."""
        return self._fanout.subscriber_buffer

    def live_only(self) -> Subscription:
        """A new subscription to the same topics, of live events only (the reset pattern)."""
        return Subscription(self._fanout, self._backend, self.topics, None)

    async def join(self) -> None:
        """Join the broker now (what entering or the first iteration does); idempotent.

        Raises :class:`EventsLost` for a ``Last-Event-ID`` that cannot be resumed exactly.
        """
        if not self._joined:
            await self._join()

    # -- joining ----------------------------------------------------------------------------

    async def _join(self) -> None:
        """Register, follow the topics, then replay after the ``Last-Event-ID`` (see the module)."""
        self._joined = True
        if self._closed:
            raise BrokerClosed("subscribe")
        backend = self._backend
        resume: dict[str, tuple[str, Position]] = {}
        last_event_id = self._last_event_id
        if last_event_id is not None:
            # Checked before anything is followed, so a foreign id costs nothing.
            for topic, token in parse_id(last_event_id, self.topics).items():
                position = backend.parse_position(topic, token)
                if position is None:
                    raise EventsLost(last_event_id, "not an id of this broker (another broker or process?)")
                resume[topic] = (token, position)
        try:
            # Registered first: a topic with a subscriber is never forgotten, so from the
            # position each topic has now (or gets in follow()) every new event reaches us.
            self._fanout.add(self)
            await backend.follow(self.topics)
            if self._error is not None:  # failed while it joined (the engine went away)
                raise self._error
            missing = [topic for topic in self.topics if topic not in self._after]
            if missing:  # pragma: no cover - follow() gives every topic a position
                raise BrokerError(f"topics {missing} have no position after follow()")
            if last_event_id is not None:
                replayed: list[tuple[str, Entry]] = []
                for topic, (token, position) in resume.items():
                    entries = await backend.replay(topic, token, last_event_id)
                    replayed.extend((topic, entry) for entry in entries)
                    self._after[topic] = position
                if not self._single:
                    replayed.sort(key=lambda item: item[1].position)
                self._replay.extend(replayed)
            self._ready = True
        except BaseException:
            self.close()
            raise

    # -- iteration --------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ServerSentEvent:
        if not self._joined:
            await self._join()
        while True:
            if self._dropped:
                raise SubscriberTooSlow(self._fanout.subscriber_buffer)
            if self._error is not None:
                raise self._error
            if self._replay:
                topic, entry = self._replay.popleft()
                return self._passed_on(topic, entry)
            buffer = self._buffer
            while buffer:
                topic, entry = buffer.popleft()
                if entry.position > self._after[topic]:
                    return self._passed_on(topic, entry)
            if self._closed:
                raise StopAsyncIteration
            with self._fanout.lock:
                # Decide to sleep under the lock deliveries take, so a wake-up cannot be lost.
                if self._buffer or self._dropped or self._closed or self._error is not None:
                    continue
                waiter = self._new_waiter()
            await waiter.wait()

    def _new_waiter(self) -> Waker:
        """A wake-up for the task about to wait (lock held); remembers its loop and thread."""
        loop = current_loop()
        if self._loop is None:
            self._loop = loop.thread_caller()
            self._thread = threading.get_ident()
        waiter = self._waiter = loop.waker()
        return waiter

    # -- handing live events straight to an event stream ---------------------------------------

    def replayed(self) -> list[ServerSentEvent]:
        """Take the events replayed after the ``Last-Event-ID`` (call once joined)."""
        replay = self._replay
        events = [self._passed_on(topic, entry) for topic, entry in replay]
        replay.clear()
        return events

    def hand_live_events_to(self, sink: Sink) -> None:
        """From now on, give each live event's bytes to ``sink`` instead of buffering them.

        This is how an event stream that sends a subscription as it is (``EventSourceResponse
        (broker.subscribe(...))``) gets each event from the fan-out without a task switch of
        its own: ``sink(chunk)`` queues the bytes for the response's sender and returns
        ``False``, queuing nothing, when that subscriber already holds ``subscriber_buffer``
        events it has not sent (the drop rule). The live events buffered before the switch
        go to the sink first, in order; take the replayed ones before, with :meth:`replayed`.
        A sink is called in the publisher's thread: :meth:`on_loop` tells whether that is the
        subscriber's event loop.
        """
        with self._fanout.lock:
            if self._loop is None:
                self._loop = current_loop().thread_caller()
                self._thread = threading.get_ident()
            buffer = self._buffer
            while buffer:
                topic, entry = buffer.popleft()
                if entry.position > self._after[topic] and not sink(self._passed_on(topic, entry).encode()):
                    self._fanout.remove(self)
                    self._drop()
                    return
            if not (self._dropped or self._closed or self._error is not None):
                self._sink = sink

    def on_loop(self) -> bool:
        """Whether the calling thread is the subscriber's event loop's (for a sink's wake-up)."""
        return threading.get_ident() == self._thread

    def call_on_loop(self, callback: Callback) -> None:
        """Run ``callback`` on the subscriber's loop, from any thread (nothing if it closed)."""
        call_soon = self._loop
        if call_soon is not None:
            with contextlib.suppress(RuntimeError):
                call_soon(callback)

    async def until_ended(self) -> None:
        """Wait until the subscription ends; raise what ended it, if it did not just close.

        :class:`SubscriberTooSlow` when it was dropped, the broker's error when its engine
        failed; a subscription that was closed (the broker closed, or :meth:`close`) returns.
        """
        while True:
            if self._dropped:
                raise SubscriberTooSlow(self._fanout.subscriber_buffer)
            if self._error is not None:
                raise self._error
            if self._closed:
                return
            with self._fanout.lock:
                if self._dropped or self._closed or self._error is not None:
                    continue
                waiter = self._new_waiter()
            await waiter.wait()

    def _passed_on(self, topic: str, entry: Entry) -> ServerSentEvent:
        self._after[topic] = entry.position
        if self._single:
            return entry.event
        backend = self._backend
        after = self._after
        return entry.event.with_id(
            format_id([(name, backend.format_position(name, after[name])) for name in self.topics])
        )

    # -- called by the fan-out, with its lock held, from any thread --------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        if threading.get_ident() == self._thread:
            waiter.set()
        else:
            call_soon = self._loop
            assert call_soon is not None
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                call_soon(waiter.set)

    def _push(self, topic: str, entries: Sequence[Entry], bound: int) -> bool:
        """Queue live events; return False when this subscriber must be dropped."""
        sink = self._sink
        if sink is not None:
            after = self._after
            for entry in entries:
                if entry.position > after[topic] and not sink(self._passed_on(topic, entry).encode()):
                    self._drop()
                    return False
            return True
        buffer = self._buffer
        if len(buffer) + len(entries) > bound:
            self._drop()
            return False
        if len(entries) == 1:
            buffer.append((topic, entries[0]))
        else:
            buffer.extend([(topic, entry) for entry in entries])
        if self._waiter is not None:
            self._wake()
        return True

    def _drop(self) -> None:
        self._dropped = True
        self._sink = None
        self._buffer.clear()
        self._replay.clear()
        self._wake()

    def _fail(self, error: BrokerError) -> None:
        if not self._dropped and not self._closed:
            self._error = error
        self._sink = None
        self._buffer.clear()
        self._wake()

    def _end(self) -> None:
        self._closed = True
        self._sink = None
        self._wake()

    # -- leaving ----------------------------------------------------------------------------

    def close(self) -> None:
        """Leave the broker; iteration ends after the events already taken. Idempotent."""
        with self._fanout.lock:
            self._closed = True
            self._sink = None
            self._fanout.remove(self)
            self._buffer.clear()
            self._replay.clear()
            self._wake()

    async def __aenter__(self) -> Subscription:
        if not self._joined:
            await self._join()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "dropped" if self._dropped else "closed" if self._closed else "open"
        return f"<Subscription topics={list(self.topics)} {state} pending={self.pending}>"
