"""``ResumableStreams``: generations that outlive their connection, re-attachable from any worker.

This module owns resumable streams: background jobs that run a producer (a token generator, an
agent loop) detached from any HTTP connection, each item appended as an event to a topic of its
own in the :class:`~streaming_responses.EventBroker`, and the attach response that replays a
stream and follows it to its final event. The rules that keep it honest:

* a stream's topic holds all of it: a start event, the items, and a final event that says how
  the job ended. An attach replays the topic (after its ``Last-Event-ID``, or from the start)
  and ends with that final event, so a cut answer never looks like a whole one;
* a running job holds a *lease* that its heartbeat renews; an attach that waits checks it, so
  a producer's worker that dies without a word (SIGKILL) reaches every client as an error
  ending, on every worker;
* attached clients hold a *presence*, which the job's heartbeat counts for ``abandon_after``;
* ``cancel()`` reaches the job wherever it runs through the broker itself (a control topic that
  every worker with jobs follows), and a job writes its final event only once its producer has
  stopped: a client that sees ``cancelled`` knows the work is no longer running;
* the producer runs in an asyncio task kept by the ``ResumableStreams`` object, is cancelled
  where it awaits (its ``finally`` runs), and every task ends with ``aclose()`` or the server's
  shutdown (the shutdown registry of ``_shutdown.py``);
* the decisions (which ending, when to abandon, what an attach does) are the pure functions of
  ``_resumable_rules.py``; the broker's backends do the engine's part (expiry, claims, leases).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import inspect
import logging
import os
import secrets
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
from starlette.exceptions import HTTPException

from ._broker import EventBroker, _seconds
from ._broker_backend import BrokerBackend
from ._broker_fanout import Subscription
from ._broker_ids import check_topic
from ._core import OutcomeCallback
from ._events import ServerSentEvent, as_event
from ._exceptions import (
    BrokerClosed,
    BrokerError,
    EventsLost,
    StreamNotFound,
    SubscriberTooSlow,
    UnsupportedEventLoop,
)
from ._resumable_rules import (
    END_EVENT,
    RESERVED_EVENTS,
    START_EVENT,
    AttachPlan,
    JobEnding,
    abandon_check,
    check_stream_id,
    end_marker_data,
    heartbeat_interval,
    job_ending,
    plan_attach,
    read_end_marker,
)
from ._shutdown import REGISTRY
from ._sse import EventSourceResponse
from ._streaming import CallPlan
from ._types import Scope

logger = logging.getLogger("streaming_responses")

#: The event types on the control topic: a cancel request, and a listener's first event.
_CANCEL_EVENT = "cancel"
_HELLO_EVENT = "hello"
#: The longest idempotency key accepted (it is hashed; the bound only refuses mistakes).
MAX_KEY_LENGTH = 1024
#: Seconds a client's stream spends at most letting go of its presence when it ends.
_RELEASE_TIMEOUT = 2.0
#: Seconds between two attempts of the cancel listener to join the control topic again.
_LISTENER_BACKOFF = (0.05, 2.0)

#: What ``end_event=`` is: the final event's item for an ending (a ServerSentEvent, str, ...).
EndEvent = Callable[[JobEnding], object]
#: What ``on_outcome=`` is: a plain or async callable given each job's :class:`JobOutcome`.
JobOutcomeCallback = Callable[["JobOutcome"], "Awaitable[object] | object"]


def _running_loop() -> str | None:
    """The name of the event loop running this code: ``"asyncio"``, ``"trio"`` or ``None``."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            return None
        return "trio"
    return None


def _asyncio_loop(what: str) -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise UnsupportedEventLoop(what, _running_loop() or "no event loop") from None


def _check_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str):
        raise TypeError(f"key must be a str or None, not {type(key).__name__}")
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise ValueError(f"key must be 1 to {MAX_KEY_LENGTH} characters, got {len(key)}")
    return key


async def _close_producer(target: object) -> BaseException | None:
    """``aclose()`` an async generator (or anything with ``aclose``); what it raised, if anything."""
    aclose = getattr(target, "aclose", None)
    if aclose is None:
        return None
    try:
        await aclose()
    except Exception as exc:
        return exc
    return None


def _item_event(item: object) -> ServerSentEvent:
    """A producer's item as the event to publish; the start and end types are refused."""
    event = as_event(item)
    if event.event in RESERVED_EVENTS:
        raise ValueError(f"a resumable stream's item must not have the event type {event.event!r} (reserved)")
    return event


@dataclass(frozen=True)
class JobOutcome:
    """How one job of :class:`ResumableStreams` ended, passed to its ``on_outcome`` callback.

    Called once per job, on the worker that ran it, after its final event was written.

    Example::

        def record(outcome: JobOutcome) -> None:
            metrics.increment("generations", tags=[outcome.kind.value])

        streams = ResumableStreams(broker, on_outcome=record)
    """

    #: The stream's id.
    stream_id: str
    #: How it ended (never ``JobEnding.LOST``).
    kind: JobEnding
    #: Items the producer yielded that were published.
    events: int
    #: Seconds from ``start()`` to the end of the job.
    duration: float
    #: What the producer (or publishing) raised, for ``ERROR``; else ``None``.
    error: BaseException | None = None
    #: The idempotency ``key`` given to ``start()``, if any.
    key: str | None = None


class _Job:
    """One running job: its task and what it was asked to do."""

    __slots__ = (
        "began",
        "events",
        "finishing",
        "key",
        "requested",
        "running",
        "stream_id",
        "task",
        "timer",
        "topic",
    )

    def __init__(self, stream_id: str, topic: str, key: str | None) -> None:
        self.stream_id = stream_id
        self.topic = topic
        self.key = key
        #: The ending asked for (cancel, abandonment, max_duration, shutdown), once asked.
        self.requested: JobEnding | None = None
        #: The task has begun: cancelling it now reaches the producer.
        self.running = False
        #: The producer stopped and the ending is being written: nothing may stop it now.
        self.finishing = False
        self.events = 0
        self.began = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None


@dataclass(frozen=True)
class _Found:
    """What the history holds of a stream: its topic, the id of its first and of its final event."""

    topic: str
    start_id: str | None
    end_id: str | None


class _Listener:
    """Follows the control topic on one event loop and hands each cancel to the jobs there.

    It has joined the topic before :meth:`wait` returns, so a cancel published after a job
    became visible reaches it. If following fails (Redis away too long), it joins again after
    the last request it saw, so none is missed unless Redis lost them.
    """

    def __init__(self, streams: ResumableStreams, loop: asyncio.AbstractEventLoop) -> None:
        self.streams = streams
        self.loop = loop
        self.topic = streams.control_topic
        self.subscription: Subscription | None = None
        self.task: asyncio.Task[None] | None = None
        self.ready: asyncio.Task[None] = loop.create_task(self._start(), name="resumable streams: cancels")

    @property
    def alive(self) -> bool:
        if self.loop.is_closed():
            return False
        if not self.ready.done():
            return True
        if self.ready.cancelled() or self.ready.exception() is not None:
            return False
        return self.task is not None and not self.task.done()

    async def wait(self) -> None:
        await asyncio.shield(self.ready)

    async def _start(self) -> None:
        self.subscription = await self._join(None)
        # Its own first event gives the listener a position to join again after, even if no
        # cancel ever comes before Redis goes away.
        hello = await self.streams.broker.publish(ServerSentEvent(None, event=_HELLO_EVENT), topic=self.topic)
        self.task = self.loop.create_task(self._run(hello.id), name="resumable streams: cancels")

    async def _join(self, last_event_id: str | None) -> Subscription:
        subscription = self.streams.broker.subscribe(last_event_id, topics=[self.topic])
        await subscription.__aenter__()
        return subscription

    async def _run(self, last_id: str | None) -> None:
        backoff = _LISTENER_BACKOFF[0]
        try:
            while True:
                subscription = self.subscription
                assert subscription is not None
                try:
                    async for event in subscription:
                        last_id = event.id
                        backoff = _LISTENER_BACKOFF[0]
                        if event.event == _CANCEL_EVENT:
                            self.streams._cancel_here(event.data_text or "")
                    return  # the broker closed
                except BrokerClosed:
                    return
                except BrokerError as exc:
                    logger.warning("the cancel listener of %r stopped (%s); joining again", self.streams, exc)
                subscription.close()
                self.subscription = None
                while self.subscription is None:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _LISTENER_BACKOFF[1])
                    try:
                        try:
                            self.subscription = await self._join(last_id)
                        except EventsLost:
                            # Redis lost the requests published while it was away.
                            logger.warning(
                                "cancels for %r may have been lost; following new ones", self.streams
                            )
                            self.subscription = await self._join(None)
                    except BrokerClosed:
                        return
                    except BrokerError as exc:
                        logger.warning("the cancel listener of %r cannot join (%s)", self.streams, exc)
        finally:
            if self.subscription is not None:
                self.subscription.close()

    async def stop(self) -> None:
        for task in (self.ready, self.task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task])
        if self.subscription is not None:
            self.subscription.close()


class ResumableStreams:
    """Generations that outlive their connection: start once, attach from anywhere, any time.

    ``await streams.start(producer)`` runs an async iterable (a token generator, an agent loop)
    as a background job, detached from any HTTP connection, and publishes each item it yields
    as an event to a topic of its own in ``broker``; it returns the stream's id at once.
    ``streams.attach(stream_id, last_event_id)`` is an
    :class:`~streaming_responses.EventSourceResponse` (return it from an endpoint, or iterate
    it) with the events after ``last_event_id`` (without one: from the start), then live ones,
    then a final ``end`` event that says how the job ended (:class:`JobEnding`): a client
    tells a whole answer (``complete``) from a cut one. An unknown or expired id is a 404.
    ``await streams.cancel(stream_id)`` stops the job from any worker. With a Redis broker,
    the job runs on one worker and clients attach and cancel through any.

    Keyword arguments (seconds):

    * ``keep``: how long a stream can still be attached to after it ended (600). On Redis,
      the keys expire then.
    * ``abandon_after``: cancel a job no client has been attached to for that long (its
      ending is ``abandoned``); ``None`` (the default): never, so a reload never loses an
      answer, at the price of generations nobody reads.
    * ``max_duration``: the longest a job may run (3600; ``None``: no bound); its ending is
      then ``timeout``.
    * ``lease``: a job's worker renews a lease five times per ``lease`` (5.0); clients
      attached elsewhere take a job whose lease ran out as dead (an ``error`` ending).
    * ``on_shutdown``: ``"cancel"`` (the default) ends a worker's jobs with the ``shutdown``
      ending on SIGTERM, SIGINT or ``end_all_streams()``; ``"finish"`` lets them run and
      ``aclose()`` waits for them.
    * ``on_outcome``: a plain or async callable given a :class:`JobOutcome` when a job ends.
    * ``end_event``: a callable turning a :class:`JobEnding` into the final event's item (a
      ``str``, a ``dict``, a :class:`~streaming_responses.ServerSentEvent` without id; default
      ``ServerSentEvent({"outcome": ending.value}, event="end")``).
    * ``prefix``: the topics' prefix (``resumable``): streams are the topics
      ``<prefix>/<stream_id>``.

    The broker's ``history`` bounds each stream: a stream longer than it keeps going for the
    clients that follow it, and a client that attaches later than the history reaches gets
    the ``lost`` ending. Runs on asyncio; on trio it raises :class:`UnsupportedEventLoop`.

    Example::

        broker = EventBroker.from_url(os.environ.get("BROKER_URL", "memory://"), history=20_000)
        streams = ResumableStreams(broker, abandon_after=120)

        @app.post("/answers")
        async def ask(question: Question):
            return {"id": await streams.start(generate(question.text))}

        @app.get("/answers/{stream_id}/events")
        async def events(stream_id: str, request: Request):
            return streams.attach(stream_id, last_event_id(request))

        @app.post("/answers/{stream_id}/stop")
        async def stop(stream_id: str):
            return {"stopped": await streams.cancel(stream_id)}
    """

    def __init__(
        self,
        broker: EventBroker,
        *,
        keep: float = 600.0,
        abandon_after: float | None = None,
        max_duration: float | None = 3600.0,
        lease: float = 5.0,
        on_shutdown: str = "cancel",
        on_outcome: JobOutcomeCallback | None = None,
        end_event: EndEvent | None = None,
        prefix: str = "resumable",
    ) -> None:
        if not isinstance(broker, EventBroker):
            raise TypeError(f"broker must be an EventBroker, not {type(broker).__name__}")
        if _running_loop() == "trio":
            raise UnsupportedEventLoop("ResumableStreams", "trio")
        self.broker = broker
        self.keep = _seconds("keep", keep) or 0.0
        self.abandon_after = _seconds("abandon_after", abandon_after, optional=True)
        self.max_duration = _seconds("max_duration", max_duration, optional=True)
        self.lease = _seconds("lease", lease) or 0.0
        if on_shutdown not in ("cancel", "finish"):
            raise ValueError(f"on_shutdown must be 'cancel' or 'finish', got {on_shutdown!r}")
        self.on_shutdown = on_shutdown
        for name, value in (("on_outcome", on_outcome), ("end_event", end_event)):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be a callable or None, not {type(value).__name__}")
        self.on_outcome = on_outcome
        self.end_event = end_event
        self.prefix = check_topic(prefix)
        if len(prefix) > 60:
            raise ValueError(f"prefix must be at most 60 characters, got {len(prefix)}")
        #: The topic every worker with jobs follows for cancel requests.
        self.control_topic = f"{prefix}:control"
        self._reset()
        self._closed = False

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._jobs: dict[str, _Job] = {}
        #: This process's name as the holder of its jobs' leases.
        self._member = secrets.token_hex(8)
        self._listener: _Listener | None = None
        self._stopper_loop: asyncio.AbstractEventLoop | None = None

    def _live(self, operation: str) -> BrokerBackend:
        if os.getpid() != self._pid:
            # A forked worker (gunicorn --preload): the parent's jobs and listener are not ours.
            self._reset()
        return self.broker._live(operation)[1]

    # -- names --------------------------------------------------------------------------------

    def _topic(self, stream_id: str) -> str:
        return f"{self.prefix}/{stream_id}"

    @staticmethod
    def _lease_name(topic: str) -> str:
        return topic + "#lease"

    @staticmethod
    def _presence_name(topic: str) -> str:
        return topic + "#attached"

    def _key_name(self, key: str) -> str:
        return f"{self.prefix}#key:{hashlib.sha256(key.encode()).hexdigest()}"

    # -- starting -----------------------------------------------------------------------------

    async def start(self, producer: AsyncIterable[Any], *, key: str | None = None) -> str:
        """Run ``producer`` as a background job; return its stream id at once.

        ``producer`` is an async iterable (an async generator); each item it yields is
        published as one event (a :class:`~streaming_responses.ServerSentEvent` without id,
        a ``str``, or an object sent as JSON). ``key`` makes starting idempotent: while a
        stream started with the same key is kept, its id is returned and ``producer`` is
        closed unused, so a retried POST does not start a second generation.

        Example::

            stream_id = await streams.start(generate(prompt), key=request.headers.get("idempotency-key"))
        """
        loop = _asyncio_loop("ResumableStreams.start()")
        if self._closed:
            raise BrokerClosed("start", "ResumableStreams")
        if not isinstance(producer, AsyncIterable):
            raise TypeError(
                f"start() takes an async iterable (an async generator), not {type(producer).__name__}"
            )
        key = _check_key(key)
        stream_id = secrets.token_urlsafe(12)
        topic = self._topic(stream_id)
        job = _Job(stream_id, topic, key)
        try:
            backend = self._live("start")
            await self._listen(loop)
            # Known here from now on, so that a cancel arriving before the task runs is kept.
            self._jobs[stream_id] = job
            await self.broker.publish(ServerSentEvent(None, event=START_EVENT), topic=topic)
            await backend.expire(topic, self.lease + self.keep)
            await backend.hold(self._lease_name(topic), self._member, self.lease)
            if key is not None:
                # Claimed last: the id a retry gets names a stream that exists already.
                winner = await backend.claim(self._key_name(key), stream_id, self.lease + self.keep)
                if winner != stream_id:
                    del self._jobs[stream_id]
                    await backend.hold(self._lease_name(topic), self._member, 0)
                    await backend.expire(topic, 0)
                    await _close_producer(producer)
                    if check_stream_id(winner) is None:
                        raise BrokerError(
                            f"the key of this stream holds {winner!r:.40}, which is not a stream id"
                        )
                    return winner
        except BaseException:
            self._jobs.pop(stream_id, None)
            with anyio.CancelScope(shield=True):
                await _close_producer(producer)
            raise
        if self.on_shutdown == "cancel" and self._stopper_loop is not loop:
            REGISTRY.register(self._on_server_shutdown)
            self._stopper_loop = loop
        if self.max_duration is not None:
            job.timer = loop.call_later(self.max_duration, self._request_end, job, JobEnding.TIMEOUT)
        job.task = loop.create_task(self._run(job, producer), name=f"resumable stream {stream_id}")
        return stream_id

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make sure cancel requests reach this worker's jobs before a new job is visible."""
        listener = self._listener
        if listener is None or listener.loop is not loop or not listener.alive:
            listener = self._listener = _Listener(self, loop)
        await listener.wait()

    # -- a job --------------------------------------------------------------------------------

    async def _run(self, job: _Job, producer: AsyncIterable[Any]) -> None:
        job.running = True
        loop = asyncio.get_running_loop()
        heartbeat = loop.create_task(self._heartbeat(job), name=f"resumable stream {job.stream_id} heartbeat")
        error: BaseException | None = None
        cancelled = False
        target: object = producer
        try:
            if job.requested is not None:  # asked to stop before the task began
                cancelled = True
            else:
                iterator = target = producer.__aiter__()
                while True:
                    try:
                        item = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                    await self.broker.publish(_item_event(item), topic=job.topic)
                    job.events += 1
        except asyncio.CancelledError:
            cancelled = True
            if job.requested is not None:
                _uncancel()
        except Exception as exc:
            error = exc
        job.finishing = True
        if job.timer is not None:
            job.timer.cancel()
        # Cancelled while publishing (or an item was refused): the producer waits at a yield.
        problem = await _close_producer(target)
        if problem is not None:
            logger.warning("closing the producer of resumable stream %s raised %r", job.stream_id, problem)
        ending = job_ending(job.requested, cancelled=cancelled, failed=error is not None)
        await self._finish(job, ending, heartbeat, error)
        if cancelled and job.requested is None:
            raise asyncio.CancelledError  # not ours: the event loop is shutting down

    async def _heartbeat(self, job: _Job) -> None:
        """Renew the job's lease and expiries; abandon it when no client was attached for long."""
        interval = heartbeat_interval(self.lease, self.abandon_after)
        unattended_since: float | None = job.began
        lease_name = self._lease_name(job.topic)
        presence = self._presence_name(job.topic)
        while True:
            await asyncio.sleep(interval)
            try:
                backend = self._live("heartbeat")
                await backend.hold(lease_name, self._member, self.lease)
                if job.key is not None:
                    await backend.claim(self._key_name(job.key), job.stream_id, self.lease + self.keep)
                await backend.expire(job.topic, self.lease + self.keep)
                attached = 1 if self.abandon_after is None else await backend.holders(presence)
            except BrokerError as exc:
                logger.warning("resumable stream %s: the heartbeat failed: %s", job.stream_id, exc)
                continue
            unattended_since, due = abandon_check(
                time.monotonic(), unattended_since, attached, self.abandon_after
            )
            if due:
                self._request_end(job, JobEnding.ABANDONED)
                return

    async def _finish(
        self, job: _Job, ending: JobEnding, heartbeat: asyncio.Task[None], error: BaseException | None
    ) -> None:
        """Write the final event, let the stream expire after ``keep``, report the outcome."""
        try:
            await self.broker.publish(
                ServerSentEvent(end_marker_data(ending), event=END_EVENT), topic=job.topic
            )
        except Exception as exc:
            # Its lease runs out instead, and attached clients see an error ending.
            logger.error(
                "resumable stream %s: its final event (%s) was not written: %s",
                job.stream_id,
                ending.value,
                exc,
            )
        heartbeat.cancel()
        await asyncio.wait([heartbeat])
        try:
            backend = self._live("finish")
            if job.key is not None:
                # The key first, so that it never outlives the stream it names.
                await backend.claim(self._key_name(job.key), job.stream_id, self.keep)
            await backend.expire(job.topic, self.keep)
            await backend.hold(self._lease_name(job.topic), self._member, 0)
        except Exception as exc:
            logger.warning("resumable stream %s: setting its expiry failed: %s", job.stream_id, exc)
        self._jobs.pop(job.stream_id, None)
        if not self._jobs and self._stopper_loop is not None:
            REGISTRY.unregister(self._on_server_shutdown)
            self._stopper_loop = None
        if ending is JobEnding.ERROR:
            logger.error("resumable stream %s failed", job.stream_id, exc_info=error)
        elif ending is not JobEnding.COMPLETE:
            logger.info("resumable stream %s ended: %s", job.stream_id, ending.value)
        outcome = JobOutcome(job.stream_id, ending, job.events, time.monotonic() - job.began, error, job.key)
        callback = self.on_outcome
        if callback is not None:
            try:
                result = callback(outcome)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("the on_outcome callback of resumable stream %s raised", job.stream_id)

    def _request_end(self, job: _Job, ending: JobEnding) -> bool:
        """Ask a job to stop with ``ending``; False when it is already stopping or stopped."""
        if job.finishing or job.requested is not None:
            return False
        job.requested = ending
        if job.running and job.task is not None:
            job.task.cancel()
        return True

    def _cancel_here(self, stream_id: str) -> bool:
        job = self._jobs.get(stream_id)
        return job is not None and self._request_end(job, JobEnding.CANCELLED)

    def _on_server_shutdown(self) -> None:
        """The shutdown registry's stopper: end this loop's jobs with the shutdown ending."""
        for job in list(self._jobs.values()):
            self._request_end(job, JobEnding.SHUTDOWN)

    # -- from any worker ------------------------------------------------------------------------

    async def cancel(self, stream_id: str) -> bool:
        """Stop the job of ``stream_id``, wherever it runs; every attached client gets ``cancelled``.

        The cancellation reaches what the producer awaits (its ``finally`` runs); the final
        event is written once the producer has stopped. Returns True if this call stopped a
        running job, False if the stream had already ended (or was already stopping). An
        unknown or expired id raises :class:`StreamNotFound`.

        Example::

            @app.post("/answers/{stream_id}/stop")
            async def stop(stream_id: str):
                try:
                    return {"stopped": await streams.cancel(stream_id)}
                except StreamNotFound:
                    raise HTTPException(404) from None
        """
        _asyncio_loop("ResumableStreams.cancel()")
        checked = check_stream_id(stream_id)
        if checked is None:
            raise StreamNotFound(str(stream_id))
        backend = self._live("cancel")
        job = self._jobs.get(checked)
        if job is not None:
            return self._request_end(job, JobEnding.CANCELLED)
        topic = self._topic(checked)
        first, last = await backend.ends(topic)
        if first is None:
            raise StreamNotFound(checked)
        if last is not None and last.event.event == END_EVENT:
            return False
        if not await backend.holders(self._lease_name(topic)):
            return False  # its worker is gone: the stream ended as an error
        await self.broker.publish(ServerSentEvent(checked, event=_CANCEL_EVENT), topic=self.control_topic)
        return True

    async def attached(self, stream_id: str) -> int:
        """How many clients are attached to ``stream_id`` now, on every worker.

        Example::

            viewers = await streams.attached(stream_id)
        """
        _asyncio_loop("ResumableStreams.attached()")
        checked = check_stream_id(stream_id)
        if checked is None:
            return 0
        return await self._live("attached").holders(self._presence_name(self._topic(checked)))

    def attach(
        self,
        stream_id: str,
        last_event_id: str | None = None,
        *,
        ping: float | None = 15.0,
        headers: Mapping[str, str] | None = None,
        send_timeout: float | None = None,
        on_outcome: OutcomeCallback | None = None,
    ) -> AttachedStream:
        """The events of ``stream_id`` after ``last_event_id``, then live ones, then the ending.

        Returns an :class:`~streaming_responses.EventSourceResponse`: return it from an
        endpoint, or iterate it (``async for event in streams.attach(...)``). Without
        ``last_event_id`` the whole stream is replayed from its start (a page that reloads);
        with it, the events after it (an ``EventSource`` that reconnects sends it as
        ``Last-Event-ID``). The last event is ``event: end`` with ``{"outcome": ...}`` (see
        ``end_event=``). An unknown or expired id answers 404 through the application's
        exception handlers (iterating raises :class:`StreamNotFound`); a client that already
        received the final event gets 204, which tells an ``EventSource`` to stop. ``ping``,
        ``headers``, ``send_timeout`` and ``on_outcome`` (the HTTP response's outcome) are as
        for :class:`~streaming_responses.EventSourceResponse`.

        Example::

            @app.get("/answers/{stream_id}/events")
            async def events(stream_id: str, request: Request):
                return streams.attach(stream_id, last_event_id(request))
        """
        if last_event_id is not None and not isinstance(last_event_id, str):
            raise TypeError(f"last_event_id must be a str or None, not {type(last_event_id).__name__}")
        return AttachedStream(
            self,
            stream_id,
            last_event_id or None,
            ping=ping,
            headers=headers,
            send_timeout=send_timeout,
            on_outcome=on_outcome,
        )

    async def _find(self, stream_id: str) -> _Found:
        """What the history holds of ``stream_id``; :class:`StreamNotFound` when nothing."""
        _asyncio_loop("ResumableStreams.attach()")
        checked = check_stream_id(stream_id)
        if checked is None:
            raise StreamNotFound(str(stream_id))
        topic = self._topic(checked)
        first, last = await self._live("attach").ends(topic)
        if first is None:
            raise StreamNotFound(checked)
        start_id = first.event.id if first.event.event == START_EVENT else None
        end_id = last.event.id if last is not None and last.event.event == END_EVENT else None
        return _Found(topic, start_id, end_id)

    def _ending_event(self, ending: JobEnding, event_id: str | None) -> ServerSentEvent:
        """The final event a client gets for ``ending`` (with the id of the stream's last event)."""
        make = self.end_event
        item = ServerSentEvent({"outcome": ending.value}, event="end") if make is None else make(ending)
        return as_event(item).with_id(event_id)

    # -- closing --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """End this worker's jobs with the shutdown ending (after they finished, with
        ``on_shutdown="finish"``) and stop following cancel requests. Does not close the broker.

        Example::

            @contextlib.asynccontextmanager
            async def lifespan(app):
                async with broker, streams:  # streams close first, then the broker
                    yield
        """
        self._closed = True
        if os.getpid() != self._pid:
            self._reset()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        jobs = [job for job in self._jobs.values() if job.task is not None and job.task.get_loop() is loop]
        try:
            if self.on_shutdown == "finish" and jobs:
                await asyncio.wait([job.task for job in jobs if job.task is not None])
        finally:
            with anyio.CancelScope(shield=True):
                for job in jobs:
                    self._request_end(job, JobEnding.SHUTDOWN)
                tasks = [job.task for job in jobs if job.task is not None and not job.task.done()]
                if tasks:
                    await asyncio.wait(tasks)
                listener = self._listener
                if listener is not None and listener.loop is loop:
                    self._listener = None
                    await listener.stop()

    async def __aenter__(self) -> ResumableStreams:
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
        return f"<ResumableStreams {self.broker.url} prefix={self.prefix!r} jobs={len(self._jobs)}{state}>"


def _uncancel() -> None:
    """Count a cancellation this task asked for as handled (Python 3.11+ keeps a count)."""
    task = asyncio.current_task()
    uncancel = getattr(task, "uncancel", None)
    if uncancel is not None:
        uncancel()


class AttachedStream(EventSourceResponse):
    """A client's view of one resumable stream: an event stream, or an async iterator of events.

    Made by :meth:`ResumableStreams.attach`. As a response it looks the stream up before
    anything is sent (an unknown id raises ``HTTPException(404)`` there, for the application's
    exception handlers); iterated, it yields the same :class:`ServerSentEvent` objects.
    While it runs, the client counts as attached (``abandon_after``).

    Example::

        async for event in streams.attach(stream_id):
            print(event.event, event.data)
    """

    def __init__(
        self,
        streams: ResumableStreams,
        stream_id: str,
        last_event_id: str | None,
        *,
        ping: float | None = 15.0,
        headers: Mapping[str, str] | None = None,
        send_timeout: float | None = None,
        on_outcome: OutcomeCallback | None = None,
    ) -> None:
        self.streams = streams
        self.stream_id = stream_id
        self.last_event_id = last_event_id
        self._found: _Found | None = None
        self._events = self._relay()
        super().__init__(
            self._events, headers=headers, ping=ping, send_timeout=send_timeout, on_outcome=on_outcome
        )

    async def prepare(self, scope: Scope) -> CallPlan:
        """Look the stream up before anything is sent: 404 when unknown, 204 when already seen."""
        try:
            found = await self.streams._find(self.stream_id)
        except StreamNotFound:
            await self._events.aclose()
            raise HTTPException(404, "no such stream: it never existed, or it expired") from None
        self._found = found
        plan = await super().prepare(scope)
        decision = plan_attach(
            found=True, start_id=found.start_id, end_id=found.end_id, last_event_id=self.last_event_id
        )
        if decision.plan is AttachPlan.SEEN_END:
            return CallPlan(dataclasses.replace(plan.settings, status_code=204), plan.producer)
        return plan

    def __aiter__(self) -> AsyncIterator[ServerSentEvent]:
        return self._events

    async def aclose(self) -> None:
        """Stop following the stream (when iterating it): the client no longer counts as attached.

        Example::

            events = streams.attach(stream_id)
            try:
                async for event in events:
                    if enough(event):
                        break
            finally:
                await events.aclose()
        """
        await self._events.aclose()

    async def _relay(self) -> AsyncGenerator[ServerSentEvent, None]:
        streams = self.streams
        found = self._found or await streams._find(self.stream_id)
        decision = plan_attach(
            found=True, start_id=found.start_id, end_id=found.end_id, last_event_id=self.last_event_id
        )
        if decision.plan is AttachPlan.SEEN_END:
            return
        if decision.plan is AttachPlan.LOST:
            yield streams._ending_event(JobEnding.LOST, None)
            return
        backend = streams._live("attach")
        presence = streams._presence_name(found.topic)
        lease = streams._lease_name(found.topic)
        member = secrets.token_hex(8)
        interval = streams.lease / 5
        subscription = streams.broker.subscribe(decision.resume_after, topics=[found.topic])
        try:
            await subscription.__aenter__()
        except EventsLost:
            yield streams._ending_event(JobEnding.LOST, None)
            return
        with contextlib.closing(subscription):
            # Counted as attached once it has joined: from here on it gets every event.
            await backend.hold(presence, member, streams.lease)
            renew_at = time.monotonic() + interval
            try:
                while True:
                    event: ServerSentEvent | None = None
                    try:
                        if subscription.pending:
                            event = await subscription.__anext__()
                        else:
                            with anyio.move_on_after(interval):
                                event = await subscription.__anext__()
                    except StopAsyncIteration:
                        return  # the broker closed: the client reconnects and resumes
                    except SubscriberTooSlow:
                        return  # the same: it resumes from the history, where nothing is lost
                    except EventsLost:
                        yield streams._ending_event(JobEnding.LOST, None)
                        return
                    if event is None or time.monotonic() >= renew_at:
                        await backend.hold(presence, member, streams.lease)
                        renew_at = time.monotonic() + interval
                    if event is None:
                        if not await backend.holders(lease) and not await _ended(backend, found.topic):
                            # Nobody runs the job and it has no ending: its worker died.
                            yield streams._ending_event(JobEnding.ERROR, None)
                            return
                        continue
                    if event.event == END_EVENT:
                        yield streams._ending_event(read_end_marker(event.data_text), event.id)
                        return
                    yield event
            finally:
                with (
                    anyio.CancelScope(shield=True),
                    anyio.move_on_after(_RELEASE_TIMEOUT),
                    contextlib.suppress(Exception),
                ):
                    await backend.hold(presence, member, 0)


async def _ended(backend: BrokerBackend, topic: str) -> bool:
    """Whether the topic's last event is a final event (a job writes it before its lease goes)."""
    _, last = await backend.ends(topic)
    return last is not None and last.event.event == END_EVENT
