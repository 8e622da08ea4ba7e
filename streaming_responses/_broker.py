"""``EventBroker``: publish once, deliver to every subscribed event stream, replay on resume.

This module owns the broker's public face: choosing a backend (``EventBroker()`` and
``memory://`` in process, ``redis://`` and ``rediss://`` on Redis Streams), checking what users
pass, and the life of a broker (lazy connection, forks, closing). The pieces behind it:

* ``_broker_backend.py``: the protocol an engine implements (append, replay, follow);
* ``_broker_memory.py`` and ``_broker_redis.py``: the engines;
* ``_broker_fanout.py``: subscriptions, their bounded buffers and the drop rule;
* ``_broker_ids.py``: the ``Last-Event-ID`` encoding;
* ``_events.py``: the events and their encoding (no Starlette, no core).

The rule that keeps it simple: the broker never sends anything (an ``EventSourceResponse``
does), holds no process-wide state (a broker belongs to whoever created it), and notices a
fork itself: in a child process it starts afresh, with its own ids and connections.
"""

from __future__ import annotations

import os
from types import TracebackType
from urllib.parse import urlsplit

from ._broker_backend import BrokerBackend
from ._broker_fanout import Fanout, Subscription
from ._broker_ids import check_topic, check_topics
from ._broker_memory import MemoryBackend
from ._events import ServerSentEvent, as_event
from ._exceptions import BrokerClosed, BrokerError

#: The URL schemes ``from_url`` understands.
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _count(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < least:
        raise ValueError(f"{name} must be at least {least}, got {value}")
    return value


def _seconds(name: str, value: object, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


class EventBroker:
    """Publish events to every subscribed event stream, with exact replay on resume.

    ``EventBroker()`` keeps its events in this process (one worker, tests);
    :meth:`from_url` also gives a broker on Redis Streams, shared by every worker and machine.
    Every broker has the same surface:

    * ``await broker.publish(event)`` stores the event in the topic (``topic=``, default the
      broker's own) and returns it with the id the broker gave it;
    * ``broker.subscribe(last_event_id)`` replays the kept events after that id, then delivers
      live ones, each exactly once; with no id, live events only. An id that cannot be
      resumed exactly raises :class:`EventsLost` when the subscription is entered;
    * a subscription that falls more than ``subscriber_buffer`` events behind is dropped and
      raises :class:`SubscriberTooSlow`; the history keeps the last ``history`` events of each
      topic (and, with ``max_age``, none older than that many seconds).

    Ids say where an event is in its topic (``events@<position>``, see the "Scaling out"
    guide); an event that already has an ``id`` is refused. The broker never waits on its
    own: subscriptions wait on the asyncio event loop of the server.

    Example::

        broker = EventBroker(history=1000)

        @app.post("/messages")
        async def post_message(message: Message):
            sent = await broker.publish(ServerSentEvent(message, event="message"))
            return {"id": sent.id}

        @app.get("/messages/stream", response_class=EventSourceResponse)
        async def stream(request: Request):
            async with broker.subscribe(last_event_id(request)) as events:
                async for event in events:
                    yield event
    """

    topic: str
    history: int
    max_age: float | None
    subscriber_buffer: int

    def __init__(
        self,
        *,
        topic: str = "events",
        history: int = 1000,
        max_age: float | None = None,
        subscriber_buffer: int = 1000,
    ) -> None:
        history = _count("history", history, 0)
        max_age = _seconds("max_age", max_age, optional=True)
        self._setup(MemoryBackend(history, max_age), topic, history, max_age, subscriber_buffer)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        topic: str = "events",
        history: int = 1000,
        max_age: float | None = None,
        subscriber_buffer: int = 1000,
        timeout: float = 5.0,
        stall_timeout: float = 30.0,
        key_prefix: str = "streaming_responses:",
        max_connections: int = 10,
    ) -> EventBroker:
        """A broker on the engine ``url`` names; nothing connects until the broker is used.

        * ``memory://``: in this process, as ``EventBroker()`` (the Redis settings are ignored,
          so one app can take its URL from the environment and run on either);
        * ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) and
          ``unix:///path/to/socket?db=0``: Redis Streams, through redis-py (install
          ``streaming-responses[redis]``). Each topic is the stream ``key_prefix + topic``.

        Redis settings: ``timeout`` (seconds a command may take; a publish that cannot reach
        Redis within it raises :class:`BrokerUnavailable`), ``stall_timeout`` (seconds the
        reader may go without reaching Redis before the subscriptions end with
        ``BrokerUnavailable``), ``max_connections`` (the pool for publishing and replaying;
        the reader has one more connection of its own).

        Example::

            broker = EventBroker.from_url(os.environ.get("BROKER_URL", "memory://"), history=5000)
        """
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        scheme = urlsplit(url).scheme.lower()
        history = _count("history", history, 0)
        max_age = _seconds("max_age", max_age, optional=True)
        if scheme == "memory":
            if url.rstrip("/") != "memory:":
                raise ValueError(f"a memory broker URL is just 'memory://', got {url!r}")
            backend: BrokerBackend = MemoryBackend(history, max_age)
        elif scheme in _REDIS_SCHEMES:
            from ._broker_redis import RedisBackend

            if history < 1:
                raise ValueError("history must be at least 1 event on Redis (the reader reads what it keeps)")
            if not isinstance(key_prefix, str):
                raise TypeError(f"key_prefix must be a str, not {type(key_prefix).__name__}")
            backend = RedisBackend(
                url,
                history=history,
                max_age=max_age,
                timeout=_seconds("timeout", timeout) or 0.0,
                stall_timeout=_seconds("stall_timeout", stall_timeout) or 0.0,
                key_prefix=key_prefix,
                max_connections=_count("max_connections", max_connections, 1),
            )
        else:
            raise ValueError(
                f"unknown broker URL scheme {scheme!r} in {url!r:.100}: use memory://, redis://, "
                "rediss:// or unix://"
            )
        broker = cls.__new__(cls)
        broker._setup(backend, topic, history, max_age, subscriber_buffer)
        return broker

    def _setup(
        self,
        backend: BrokerBackend,
        topic: str,
        history: int,
        max_age: float | None,
        subscriber_buffer: int,
    ) -> None:
        self.topic = check_topic(topic)
        self.history = history
        self.max_age = max_age
        self.subscriber_buffer = _count("subscriber_buffer", subscriber_buffer, 1)
        self._backend = backend
        self._fanout = Fanout(self.subscriber_buffer)
        backend.attach(self._fanout)
        self._pid = os.getpid()
        self._closed = False

    def _live(self, operation: str) -> tuple[Fanout, BrokerBackend]:
        if self._closed:
            raise BrokerClosed(operation)
        if os.getpid() != self._pid:
            # A forked child (gunicorn --preload): the parent's subscribers, ids and connections
            # are not this process's. Start afresh, so ids here never repeat the parent's.
            self._pid = os.getpid()
            self._fanout = Fanout(self.subscriber_buffer)
            self._backend.forked()
            self._backend.attach(self._fanout)
        return self._fanout, self._backend

    @property
    def url(self) -> str:
        """Where the events live: ``memory://`` or the Redis URL without its password."""
        return self._backend.where

    @property
    def subscribers(self) -> int:
        """How many subscriptions of this process are open."""
        return self._fanout.subscribers

    # -- publishing -------------------------------------------------------------------------

    def _event(self, event: object, topic: str | None) -> tuple[ServerSentEvent, str]:
        sent = as_event(event)
        if sent.id is not None:
            raise ValueError(
                f"the broker gives every event its id (where it is in its topic); publish it without "
                f"one, got id={sent.id!r}"
            )
        return sent, self.topic if topic is None else check_topic(topic)

    async def publish(self, event: object, *, topic: str | None = None) -> ServerSentEvent:
        """Store ``event`` in ``topic`` and deliver it to every subscription; return it as sent.

        ``event`` is a :class:`ServerSentEvent` without an id, or anything an event stream
        accepts as an item (a str, a ``fastapi.sse.ServerSentEvent``, an object sent as JSON
        data); bytes are refused. The returned event carries its id. On Redis, an
        unreachable server raises :class:`BrokerUnavailable` (the event may or may not have
        been stored when the error came after sending it; it is never dropped silently).

        Example::

            sent = await broker.publish({"user": "ada", "text": "hi"})
            print(sent.id)  # events@...
        """
        sent, name = self._event(event, topic)
        _, backend = self._live("publish")
        return await backend.append(name, sent)

    def publish_nowait(self, event: object, *, topic: str | None = None) -> ServerSentEvent:
        """Publish without awaiting, from the event loop or any other thread (in-process only).

        The in-process broker stores and delivers at once, under a lock; a networked broker
        cannot, and raises :class:`BrokerError` (use ``await broker.publish(event)``, or
        ``anyio.from_thread.run(broker.publish, event)`` from a worker thread).

        Example::

            def on_sensor_reading(value: float) -> None:  # called in a driver's thread
                broker.publish_nowait({"value": value})
        """
        sent, name = self._event(event, topic)
        _, backend = self._live("publish")
        append_nowait = getattr(backend, "append_nowait", None)
        if append_nowait is None:
            raise BrokerError(
                f"publish_nowait() needs the in-process broker; {backend.where} publishes over the "
                "network: use await broker.publish(event)"
            )
        result: ServerSentEvent = append_nowait(name, sent)
        return result

    # -- subscribing ------------------------------------------------------------------------

    def subscribe(
        self, last_event_id: str | None = None, *, topics: list[str] | tuple[str, ...] | None = None
    ) -> Subscription:
        """A subscription to the events after ``last_event_id``, then live ones.

        ``None`` (or ``""``) subscribes to live events only. ``topics`` follows several topics
        in one stream (default: the broker's topic); its ids then name every topic, so resuming
        is exact for each. The subscription joins when entered (``async with``) or first
        iterated, which is where :class:`EventsLost` is raised for an id that cannot be
        resumed exactly (too old for the history, another broker's or topic's, malformed, or
        lost in a Redis restart).

        Example::

            async with broker.subscribe(last_event_id(request), topics=["news", "chat"]) as events:
                async for event in events:
                    yield event
        """
        if last_event_id is not None and not isinstance(last_event_id, str):
            raise TypeError(f"last_event_id must be a str or None, not {type(last_event_id).__name__}")
        chosen = (self.topic,) if topics is None else check_topics(topics)
        fanout, backend = self._live("subscribe")
        return Subscription(fanout, backend, chosen, last_event_id)

    # -- closing ----------------------------------------------------------------------------

    def close(self) -> None:
        """End every subscription (their iteration stops) and refuse further use.

        Enough for the in-process broker; a Redis broker also has connections to release:
        use ``await broker.aclose()`` (or ``async with broker:``) there.
        """
        self._closed = True
        self._fanout.close_all()

    async def aclose(self) -> None:
        """End every subscription, release the engine's connections, refuse further use.

        Example::

            @contextlib.asynccontextmanager
            async def lifespan(app):
                async with broker:
                    yield
        """
        self.close()
        if os.getpid() == self._pid:
            await self._backend.aclose()

    async def __aenter__(self) -> EventBroker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (
            f"<EventBroker {self.url} topic={self.topic!r} history={self.history} "
            f"subscribers={self.subscribers}{state}>"
        )
