"""An in-process event broker: publish once, deliver to many event streams, replay on resume.

This module owns the fan-out of :class:`~._events.ServerSentEvent` objects to subscriptions, the
bounded replay history behind ``Last-Event-ID``, and the rule for subscribers that fall
behind. The rules that keep it simple and exact:

* every published event gets a position (an internal sequence number), and one lock covers
  both publishing and the moment a subscription takes its replay and joins: so a subscriber
  gets exactly the events after its ``Last-Event-ID``, then live ones, never one twice and
  never one skipped;
* memory is bounded twice: the history keeps at most ``history`` events, and each
  subscription holds at most ``subscriber_buffer`` undelivered live events. A subscriber that
  would need more is dropped, loudly (:class:`SubscriberTooSlow`), never silently thinned out;
* no process-wide state: a broker belongs to whoever created it (one per app, made at module
  level or in the lifespan). It never sends anything itself; an ``EventSourceResponse`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from itertools import islice
from types import TracebackType

from ._events import ServerSentEvent, as_event
from ._exceptions import BrokerClosed, EventsLost, SubscriberTooSlow


class Subscription:
    """One subscriber's view of a broker: an async iterator of :class:`ServerSentEvent`.

    It yields the replayed events first, then live ones as they are published. Use it as an
    async context manager (or call :meth:`close`) so that it leaves the broker when the
    stream ends; one that is forgotten is dropped once its buffer fills up.

    Example::

        async with broker.subscribe(last_event_id(request)) as events:
            async for event in events:
                yield event
    """

    __slots__ = ("_broker", "_closed", "_dropped", "_live", "_loop", "_replay", "_thread", "_waiter")

    def __init__(self, broker: EventBroker, replay: list[ServerSentEvent]) -> None:
        self._broker = broker
        self._replay = deque(replay)
        self._live: deque[ServerSentEvent] = deque()
        self._dropped = False
        self._closed = False
        self._waiter: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0

    @property
    def pending(self) -> int:
        """How many events are waiting to be taken (replay included)."""
        return len(self._replay) + len(self._live)

    @property
    def dropped(self) -> bool:
        """Whether the broker dropped this subscription for falling behind."""
        return self._dropped

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ServerSentEvent:
        while True:
            if self._dropped:
                raise SubscriberTooSlow(self._broker.subscriber_buffer)
            if self._replay:
                return self._replay.popleft()
            if self._live:
                return self._live.popleft()
            if self._closed:
                raise StopAsyncIteration
            with self._broker._lock:
                # Decide to sleep under the lock publishers take, so a wake-up cannot be lost.
                if self._live or self._dropped or self._closed:
                    continue
                waiter = self._waiter = asyncio.Event()
                self._loop = asyncio.get_running_loop()
                self._thread = threading.get_ident()
            await waiter.wait()

    def _wake(self) -> None:
        """Called with the broker's lock held, from any thread."""
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        if threading.get_ident() == self._thread:
            waiter.set()
        else:
            loop = self._loop
            assert loop is not None
            # A closed loop raises RuntimeError: nobody is waiting there any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(waiter.set)

    def _push(self, event: ServerSentEvent, bound: int) -> bool:
        """Queue a live event (lock held); return False when this subscriber must be dropped."""
        live = self._live
        if len(live) >= bound:
            self._dropped = True
            live.clear()
            self._replay.clear()
            self._wake()
            return False
        live.append(event)
        if self._waiter is not None:
            self._wake()
        return True

    def close(self) -> None:
        """Leave the broker; iteration ends after the events already taken. Idempotent."""
        with self._broker._lock:
            self._closed = True
            self._broker._subscribers.pop(self, None)
            self._live.clear()
            self._replay.clear()
            self._wake()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class EventBroker:
    """Publish events to every subscribed event stream of one process, with replay on resume.

    ``publish()`` is synchronous, never waits, and may be called from the event loop or from
    any other thread. It gives an event without an ``id`` the next id of the broker: decimal
    integers that increase by one, starting from the broker's creation time in microseconds
    (or ``first_id``), so a restarted process never hands out an id a client may still hold.
    An event that has its own ``id`` keeps it (ids should then be unique; the newest event
    with a repeated id is the one resumed from).

    ``subscribe(last_event_id)`` replays the kept events after that id, then delivers live
    ones, exactly once each; with no id it delivers live events only. An id the history no
    longer holds raises :class:`EventsLost`. The history keeps the last ``history`` events;
    a subscription that falls more than ``subscriber_buffer`` live events behind is dropped
    and its iterator raises :class:`SubscriberTooSlow`.

    Subscriptions wait on the asyncio event loop (every supported server runs one).

    Example::

        broker = EventBroker(history=1000)

        @app.post("/messages")
        async def post_message(message: Message):
            broker.publish(ServerSentEvent(message, event="message"))

        @app.get("/messages/stream", response_class=EventSourceResponse)
        async def stream(request: Request):
            async with broker.subscribe(last_event_id(request)) as events:
                async for event in events:
                    yield event
    """

    def __init__(
        self, *, history: int = 1000, subscriber_buffer: int = 1000, first_id: int | None = None
    ) -> None:
        for name, value in (("history", history), ("subscriber_buffer", subscriber_buffer)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if history < 0:
            raise ValueError(f"history must be 0 or more events, got {history}")
        if subscriber_buffer < 1:
            raise ValueError(f"subscriber_buffer must be at least 1 event, got {subscriber_buffer}")
        if first_id is None:
            first_id = time.time_ns() // 1000
        elif isinstance(first_id, bool) or not isinstance(first_id, int) or first_id < 0:
            raise ValueError(f"first_id must be a non-negative int, got {first_id!r}")
        self.history = history
        self.subscriber_buffer = subscriber_buffer
        self._next_id = first_id
        self._lock = threading.Lock()
        self._sequence = 0  # the position of the newest event
        self._events: deque[ServerSentEvent] = deque(maxlen=history or None)
        self._positions: dict[str, int] = {}  # id -> position, for the events kept
        # A dict keeps insertion order, is safe to copy under the lock and removes in O(1).
        self._subscribers: dict[Subscription, None] = {}
        self._closed = False

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    @property
    def kept(self) -> int:
        """How many events the history holds now."""
        return len(self._events)

    def publish(self, event: object) -> ServerSentEvent:
        """Deliver ``event`` to every subscription and keep it for replay; return it as sent.

        ``event`` is a :class:`ServerSentEvent`, or anything an event stream accepts as an item
        (a str, a ``fastapi.sse.ServerSentEvent``, an object sent as JSON data). The returned
        event carries the id it was given.

        Example::

            sent = broker.publish({"user": "ada", "text": "hi"})
            print(sent.id)
        """
        event = as_event(event)
        with self._lock:
            if self._closed:
                raise BrokerClosed("publish")
            if event.id is None:
                event = event.with_id(str(self._next_id))
                self._next_id += 1
            self._sequence += 1
            if self.history:
                events = self._events
                if len(events) == self.history:
                    oldest = events[0]
                    if (
                        oldest.id is not None
                        and self._positions.get(oldest.id) == self._sequence - self.history
                    ):
                        del self._positions[oldest.id]
                events.append(event)
                if event.id is not None:
                    self._positions[event.id] = self._sequence
            if self._subscribers:
                bound = self.subscriber_buffer
                dropped = [sub for sub in self._subscribers if not sub._push(event, bound)]
                for sub in dropped:
                    del self._subscribers[sub]
        return event

    def subscribe(self, last_event_id: str | None = None) -> Subscription:
        """A new subscription: the kept events after ``last_event_id``, then live events.

        ``None`` (or ``""``) subscribes to live events only. Raises :class:`EventsLost` when
        the id is not in the history. The result is an async iterator and an async context
        manager (see :class:`Subscription`).

        Example::

            async with broker.subscribe("1700000000000042") as events:
                async for event in events:
                    ...
        """
        with self._lock:
            if self._closed:
                raise BrokerClosed("subscribe")
            replay: list[ServerSentEvent] = []
            if last_event_id:
                position = self._positions.get(last_event_id)
                if position is None:
                    raise EventsLost(last_event_id)
                first_kept = self._sequence - len(self._events) + 1
                replay = list(islice(self._events, position - first_kept + 1, None))
            subscription = Subscription(self, replay)
            self._subscribers[subscription] = None
        return subscription

    def close(self) -> None:
        """End every subscription (their iteration stops) and refuse further use.

        Call it when the app shuts down (in the lifespan) so that endless streams end.
        """
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
        for subscription in subscribers:
            subscription.close()

    def __repr__(self) -> str:
        return (
            f"<EventBroker history={len(self._events)}/{self.history} "
            f"subscribers={len(self._subscribers)} next_id={self._next_id}>"
        )
