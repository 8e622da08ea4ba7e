"""The Redis Streams broker backend: one stream per topic, one reader per process.

This module owns the adapter to Redis (through redis-py's asyncio API, the optional extra
``streaming-responses[redis]``): appending with XADD and trimming (MAXLEN, and MINID for an
age bound), replaying with XRANGE, and the one reader per process and event loop that follows
every topic with local subscribers over one connection (XREAD BLOCK) and hands each new event
to the fan-out once. The rules that keep it exact and honest:

* a position is the Redis stream id, and a position can be resumed after only while *it is
  still in the stream*: Redis trims the oldest entries first, so while it is there, every
  entry after it is too. An id that was trimmed, never written to this topic, or lost when
  Redis restarted without persistence is :class:`EventsLost`, never a wrong replay;
* each stream has an *epoch*, a random token kept beside it (key ``<stream>#epoch``) and
  written into every entry, and ids carry it (``<epoch>.<ms>-<seq>``): two streams can hold
  the same stream id (two Redis servers, two brokers, a stream made again after a restart),
  but an id only resumes in the stream whose epoch it names;
* the reader checks its own position the same way, in the same round trip as every read
  (``XRANGE p p`` then ``XREAD``: Redis runs one client's pipelined commands back to back),
  so events lost in a restart, or trimmed while this process was cut off, end the topic's
  subscriptions with ``EventsLost`` instead of leaving a silent gap;
* a topic nobody wrote to yet gets a first entry that is not an event (field ``g``), so every
  position a subscriber can hold is a real entry;
* nothing is retried blindly: redis-py's own retries are off, a publish that fails raises
  :class:`BrokerUnavailable`, and the reader reconnects with capped exponential backoff,
  ending its subscriptions with ``BrokerUnavailable`` once Redis stayed away for
  ``stall_timeout`` seconds;
* what resumable streams add is Redis's own: a topic expires with ``PEXPIRE`` on its stream
  and its epoch key, a claim is ``SET NX`` (in a script, so that the owner of the value can
  renew it), and held members are a sorted set scored by their deadline in *Redis's* clock
  (``TIME`` in the script), so the clocks of the workers never matter.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ._broker_backend import Entry, Position
from ._broker_fanout import Fanout
from ._events import ServerSentEvent
from ._exceptions import BrokerError, BrokerUnavailable, EventsLost

logger = logging.getLogger("streaming_responses")

_TOKEN = re.compile(r"([0-9a-f]{12})\.([0-9]{1,20})-([0-9]{1,20})")
#: How long one XREAD waits on the server before the reader checks its topics again.
BLOCK_MS = 2000
#: At most this many entries per topic in one read (a reader that is behind catches up in steps).
READ_COUNT = 1000
#: The reader's reconnection backoff: first delay, cap (seconds); each delay is jittered.
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
#: Append one entry in one round trip: the stream's epoch (made if missing), XADD with the epoch
#: in field ``x``, trimming by count and, with an age, by MINID. KEYS: stream, epoch key. ARGV:
#: a new epoch to use if there is none, maxlen, max age in ms (0: none), field, value, ...
_APPEND = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'x', epoch, unpack(ARGV, 4))
local age = tonumber(ARGV[3])
if age > 0 then
  local ms = tonumber(string.match(id, '^(%d+)'))
  redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d-0', ms - age))
end
return {epoch, id}
"""
#: Store a value unless another one is there; the owner of the value sets its expiry again.
#: KEYS: the name. ARGV: the value, milliseconds.
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return current
"""
#: Hold a member until Redis's now + ms (0: let go); drop the members that ran out; count the
#: rest. The set itself expires with its last member. KEYS: the name. ARGV: member, ms.
_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ms > 0 then
  redis.call('ZADD', KEYS[1], now + ms, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIREAT', KEYS[1], last[2])
end
return redis.call('ZCARD', KEYS[1])
"""
#: How many members of a set are held at Redis's now. KEYS: the name.
_HOLDERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""
_LOST = (
    "not in this topic's Redis stream: older than the history keeps, never published here, "
    "or lost in a restart"
)


def import_redis() -> Any:
    """redis-py's asyncio package, or an ``ImportError`` that says how to install it."""
    try:
        import redis.asyncio
        import redis.backoff
        import redis.exceptions
    except ImportError as exc:
        raise ImportError(
            "a redis:// or rediss:// broker needs redis-py: pip install 'streaming-responses[redis]'"
        ) from exc
    return redis


def describe_url(url: str) -> str:
    """The URL without its password, for messages.

    >>> describe_url("redis://user:secret@cache:6380/2")
    'redis://cache:6380/2'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _position(token: bytes | str) -> Position:
    text = token.decode() if isinstance(token, bytes) else token
    ms, _, seq = text.partition("-")
    return (int(ms), int(seq))


def _token(position: Position) -> str:
    return f"{position[0]}-{position[1]}"


def _fields(event: ServerSentEvent) -> dict[str, str]:
    fields: dict[str, str] = {}
    text = event.data_text
    if text is not None:
        fields["d"] = text
    if event.event is not None:
        fields["e"] = event.event
    if event.retry is not None:
        fields["r"] = str(event.retry)
    if event.comment is not None:
        fields["c"] = event.comment
    if not fields:
        fields["d"] = ""  # pragma: no cover - an event always has a field; XADD needs one
    return fields


def _event(topic: str, token: str, fields: Mapping[bytes, bytes]) -> ServerSentEvent | None:
    """The event an entry holds, with its one-topic id; ``None`` for an entry that is not one."""
    epoch = fields.get(b"x")
    if epoch is None or b"g" in fields:
        return None
    try:
        data = fields.get(b"d")
        kind = fields.get(b"e")
        retry = fields.get(b"r")
        comment = fields.get(b"c")
        return ServerSentEvent(
            None if data is None else data.decode(),
            event=None if kind is None else kind.decode(),
            id=f"{topic}@{epoch.decode()}.{token}",
            retry=None if retry is None else int(retry),
            comment=None if comment is None else comment.decode(),
        )
    except (ValueError, TypeError):
        logger.warning("skipped entry %s of topic %r: not an event this broker wrote", token, topic)
        return None


def _entries(
    topic: str, raw: Iterable[tuple[bytes, Mapping[bytes, bytes]]]
) -> tuple[list[Entry], Position | None]:
    """The events among raw stream entries, and the position of the last entry (event or not)."""
    entries: list[Entry] = []
    last: Position | None = None
    for raw_id, fields in raw:
        token = raw_id.decode()
        last = _position(token)
        event = _event(topic, token, fields)
        if event is not None:
            entries.append(Entry(last, event))
    return entries, last


def _epoch_of(raw: Sequence[tuple[bytes, Mapping[bytes, bytes]]]) -> str | None:
    """The epoch written in the first of ``raw`` entries (``None``: no entry, or not ours)."""
    if not raw:
        return None
    epoch = raw[0][1].get(b"x")
    return None if epoch is None else epoch.decode()


class _Runtime:
    """The connections and the reader of one process and event loop."""

    def __init__(self, backend: RedisBackend, loop: asyncio.AbstractEventLoop) -> None:
        redis = backend.redis
        self.loop = loop
        retry = redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0)
        # RESP2: replies have one shape on every redis-py version, and a pooled connection that
        # Redis closed (a restart) is noticed and replaced before a command is sent on it.
        common: dict[str, Any] = {"socket_connect_timeout": backend.timeout, "retry": retry, "protocol": 2}
        self.pool = redis.asyncio.BlockingConnectionPool.from_url(
            backend.url,
            max_connections=backend.max_connections,
            timeout=backend.timeout,
            socket_timeout=backend.timeout,
            **common,
        )
        self.client = redis.asyncio.Redis(connection_pool=self.pool, retry=retry)
        # The reader's own connection: its XREAD blocks for BLOCK_MS, so it may take that long.
        self.reader_pool = redis.asyncio.ConnectionPool.from_url(
            backend.url, max_connections=1, socket_timeout=BLOCK_MS / 1000 + backend.timeout, **common
        )
        self.reader = redis.asyncio.Redis(connection_pool=self.reader_pool, retry=retry)
        self.append = self.client.register_script(_APPEND)
        self.claim = self.client.register_script(_CLAIM)
        self.hold = self.client.register_script(_HOLD)
        self.holders = self.client.register_script(_HOLDERS)
        self.task: asyncio.Task[None] | None = None
        self.lookups: dict[tuple[str, ...], asyncio.Task[list[Position]]] = {}
        self.client_id: int | None = None
        self.blocked = False

    async def aclose(self) -> None:
        task = self.task
        self.task = None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])  # its end, without raising its cancellation here
        await self.client.aclose()
        await self.pool.disconnect()
        await self.reader.aclose()
        await self.reader_pool.disconnect()


class RedisBackend:
    """Topics as Redis streams (see the module docstring).

    Example::

        backend = RedisBackend("redis://127.0.0.1:6379/0", history=1000, max_age=None)
    """

    def __init__(
        self,
        url: str,
        *,
        history: int,
        max_age: float | None,
        timeout: float,
        stall_timeout: float,
        key_prefix: str,
        max_connections: int,
    ) -> None:
        self.redis = import_redis()
        self.url = url
        self.where = describe_url(url)
        self.history = history
        self.max_age = max_age
        self.timeout = timeout
        self.stall_timeout = stall_timeout
        self.key_prefix = key_prefix
        self.max_connections = max_connections
        self._fanout: Fanout | None = None
        self._runtime: _Runtime | None = None
        #: The epoch of each topic's stream as last seen (for the ids of several topics).
        self._epochs: dict[str, str] = {}

    def attach(self, fanout: Fanout) -> None:
        self._fanout = fanout

    def forked(self) -> None:
        """In a child process: the parent's connections are not ours; connect afresh when used."""
        self._runtime = None
        self._epochs = {}

    def _key(self, topic: str) -> str:
        return self.key_prefix + topic

    def _epoch_key(self, topic: str) -> str:
        # "#" cannot be in a topic name, so no topic's stream is another's epoch key.
        return self.key_prefix + topic + "#epoch"

    def _live(self) -> tuple[_Runtime, Fanout]:
        fanout = self._fanout
        assert fanout is not None, "attach() a fan-out first"
        loop = asyncio.get_running_loop()
        runtime = self._runtime
        if runtime is None or runtime.loop is not loop:
            # Connections belong to one event loop; a broker used from another loop (a test
            # per loop, a server restarted in-process) connects again there.
            runtime = self._runtime = _Runtime(self, loop)
        return runtime, fanout

    def _unavailable(self, action: str, exc: Exception) -> BrokerError:
        redis = self.redis
        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)):
            return BrokerUnavailable(self.where, f"{action} failed: {exc or type(exc).__name__}")
        return BrokerError(f"Redis at {self.where} refused to {action}: {exc}")

    # -- positions ------------------------------------------------------------------------

    def parse_position(self, topic: str, token: str) -> Position | None:
        match = _TOKEN.fullmatch(token)
        if match is None:
            return None
        position = (int(match.group(2)), int(match.group(3)))
        if position[0] >= 2**64 or position[1] >= 2**64:
            return None
        return position

    def format_position(self, topic: str, position: Position) -> str:
        return f"{self._epochs.get(topic, '')}.{_token(position)}"

    # -- the engine -------------------------------------------------------------------------

    async def _append(self, runtime: _Runtime, topic: str, fields: Mapping[str, str]) -> tuple[str, str]:
        """XADD through the script; the stream's epoch and the new entry's id."""
        args: list[Any] = [secrets.token_hex(6), self.history, round((self.max_age or 0) * 1000)]
        for name, value in fields.items():
            args += [name, value]
        epoch, token = await runtime.append(keys=[self._key(topic), self._epoch_key(topic)], args=args)
        epoch_text = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        self._epochs[topic] = epoch_text
        return epoch_text, token.decode() if isinstance(token, bytes) else str(token)

    async def append(self, topic: str, event: ServerSentEvent) -> ServerSentEvent:
        runtime, _ = self._live()
        try:
            epoch, token = await self._append(runtime, topic, _fields(event))
        except self.redis.exceptions.RedisError as exc:
            raise self._unavailable(f"publish to topic {topic!r}", exc) from exc
        return event.with_id(f"{topic}@{epoch}.{token}")

    async def follow(self, topics: Sequence[str]) -> None:
        runtime, fanout = self._live()
        new = [topic for topic in topics if fanout.position(topic) is None]
        if new:
            # Subscribers that join at once (a thousand browsers after a deploy) share one
            # lookup per topic instead of each taking a connection for it.
            key = tuple(new)
            lookup = runtime.lookups.get(key)
            if lookup is None:
                lookup = runtime.lookups[key] = runtime.loop.create_task(self._heads(runtime, new))
                lookup.add_done_callback(lambda _: runtime.lookups.pop(key, None))
            heads = await asyncio.shield(lookup)
            for topic, head in zip(new, heads, strict=True):
                fanout.start_at(topic, head)
        task = runtime.task
        if task is None or task.done():
            runtime.task = runtime.loop.create_task(self._read(runtime, fanout))
        elif new and runtime.blocked and runtime.client_id is not None:
            # The reader waits in an XREAD without the new topics: wake it to read them too.
            try:
                await runtime.client.execute_command("CLIENT", "UNBLOCK", runtime.client_id)
            except self.redis.exceptions.RedisError as exc:
                raise self._unavailable("wake the reader", exc) from exc

    async def _heads(self, runtime: _Runtime, topics: Sequence[str]) -> list[Position]:
        """The position of each topic's newest entry, writing a first entry where there is none."""
        try:
            async with runtime.client.pipeline(transaction=False) as pipe:
                for topic in topics:
                    pipe.xrevrange(self._key(topic), "+", "-", count=1)
                newest = await pipe.execute()
            heads: list[Position] = []
            for topic, found in zip(topics, newest, strict=True):
                epoch = _epoch_of(found)
                if epoch is not None:
                    self._epochs[topic] = epoch
                    heads.append(_position(found[0][0]))
                else:
                    # A first entry that is not an event: every position is a real entry.
                    heads.append(_position((await self._append(runtime, topic, {"g": "1"}))[1]))
        except self.redis.exceptions.RedisError as exc:
            raise self._unavailable(f"follow topics {list(topics)}", exc) from exc
        return heads

    async def replay(self, topic: str, token: str, last_event_id: str) -> list[Entry]:
        runtime, _ = self._live()
        key = self._key(topic)
        epoch, _, stream_id = token.partition(".")
        try:
            async with runtime.client.pipeline(transaction=True) as pipe:
                pipe.xrange(key, stream_id, stream_id)
                pipe.xrange(key, "(" + stream_id, "+")
                found, raw = await pipe.execute()
        except self.redis.exceptions.RedisError as exc:
            raise self._unavailable(f"replay topic {topic!r}", exc) from exc
        if _epoch_of(found) != epoch:
            raise EventsLost(last_event_id, _LOST)
        return _entries(topic, raw)[0]

    # -- what resumable streams need ----------------------------------------------------------

    async def expire(self, topic: str, seconds: float) -> None:
        runtime, _ = self._live()
        ms = max(round(seconds * 1000), 0)
        try:
            async with runtime.client.pipeline(transaction=True) as pipe:
                for key in (self._key(topic), self._epoch_key(topic)):
                    if ms:
                        pipe.pexpire(key, ms)
                    else:
                        pipe.delete(key)
                await pipe.execute()
        except self.redis.exceptions.RedisError as exc:
            raise self._unavailable(f"set the expiry of topic {topic!r}", exc) from exc

    async def ends(self, topic: str) -> tuple[Entry | None, Entry | None]:
        runtime, _ = self._live()
        key = self._key(topic)
        try:
            async with runtime.client.pipeline(transaction=True) as pipe:
                # Two from the start: the first entry may be the one follow() writes (not an event).
                pipe.xrange(key, "-", "+", count=2)
                pipe.xrevrange(key, "+", "-", count=1)
                oldest, newest = await pipe.execute()
        except self.redis.exceptions.RedisError as exc:
            raise self._unavailable(f"read the ends of topic {topic!r}", exc) from exc
        first = _entries(topic, oldest)[0]
        last = _entries(topic, newest)[0]
        return (first[0] if first else None), (last[0] if last else None)

    async def claim(self, name: str, value: str, seconds: float) -> str:
        runtime, _ = self._live()
        try:
            stored = await runtime.claim(
                keys=[self.key_prefix + name], args=[value, max(round(seconds * 1000), 1)]
            )
        except self.redis.exceptions.RedisError as exc:
            raise self._unavailable(f"claim {name!r}", exc) from exc
        return stored.decode() if isinstance(stored, bytes) else str(stored)

    async def hold(self, name: str, member: str, seconds: float) -> int:
        runtime, _ = self._live()
        try:
            ms = max(round(seconds * 1000), 1) if seconds > 0 else 0
            count = await runtime.hold(keys=[self.key_prefix + name], args=[member, ms])
        except self.redis.exceptions.RedisError as exc:
            raise self._unavailable(f"hold {name!r}", exc) from exc
        return int(count)

    async def holders(self, name: str) -> int:
        runtime, _ = self._live()
        try:
            count = await runtime.holders(keys=[self.key_prefix + name])
        except self.redis.exceptions.RedisError as exc:
            raise self._unavailable(f"count the holders of {name!r}", exc) from exc
        return int(count)

    # -- the reader ---------------------------------------------------------------------------

    async def _read(self, runtime: _Runtime, fanout: Fanout) -> None:
        """Follow every topic with subscribers until none is left; never die silently."""
        try:
            await self._follow_topics(runtime, fanout)
        except Exception as exc:  # a bug, or a reply redis-py could not parse
            logger.exception("the Redis reader of %s failed", self.where)
            fanout.fail(None, BrokerError(f"the Redis reader of {self.where} failed: {exc!r}"))
        finally:
            if runtime.task is asyncio.current_task():
                runtime.task = None

    async def _follow_topics(self, runtime: _Runtime, fanout: Fanout) -> None:
        """The reader's loop (see the module docstring)."""
        backoff = BACKOFF_MIN
        down_since: float | None = None
        errors = self.redis.exceptions
        while True:
            followed = fanout.followed()
            if not followed:
                return
            names = list(followed)
            try:
                results = await self._read_once(runtime, names, followed)
            except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
                runtime.blocked = False
                runtime.client_id = None
                now = time.monotonic()
                if down_since is None:
                    down_since = now
                if now - down_since >= self.stall_timeout:
                    detail = f"no answer for {self.stall_timeout:g}s while following {names} ({exc})"
                    fanout.fail(names, BrokerUnavailable(self.where, detail))
                    down_since = None
                await asyncio.sleep(
                    backoff * random.uniform(0.5, 1.0)
                )  # jitter, so workers do not reconnect in step
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            except errors.RedisError as exc:
                runtime.blocked = False
                fanout.fail(names, BrokerError(f"Redis at {self.where} refused to follow {names}: {exc}"))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            runtime.blocked = False
            down_since = None
            backoff = BACKOFF_MIN
            self._dispatch(fanout, followed, results)

    async def _read_once(
        self, runtime: _Runtime, names: list[str], followed: Mapping[str, Position]
    ) -> list[Any]:
        async with runtime.reader.pipeline(transaction=False) as pipe:
            asking_id = runtime.client_id is None
            if asking_id:
                pipe.client_id()
            streams: dict[Any, Any] = {}
            for name in names:
                token = _token(followed[name])
                pipe.xrange(self._key(name), token, token)
                streams[self._key(name)] = token
            pipe.xread(streams, count=READ_COUNT, block=BLOCK_MS)
            runtime.blocked = True
            results: list[Any] = await pipe.execute()
        if asking_id:
            runtime.client_id = int(results.pop(0))
        return results

    def _dispatch(self, fanout: Fanout, followed: Mapping[str, Position], results: list[Any]) -> None:
        names = list(followed)
        checks, read = results[: len(names)], results[len(names)]
        lost = {
            name
            for name, found in zip(names, checks, strict=True)
            if (not found or _epoch_of(found) != self._epochs.get(name, _epoch_of(found)))
            # A topic forgotten and followed again while this read ran is not this read's to
            # judge: its new subscribers start where follow() put them.
            and fanout.position(name) == followed[name]
        }
        for name in lost:
            # The entry this process read last is gone: events after it may be gone unread.
            where = f"{name}@{self.format_position(name, followed[name])}"
            fanout.fail([name], EventsLost(where, f"{_LOST} (noticed while following)"))
        if not read:
            return
        prefix = len(self.key_prefix)
        batches: list[tuple[str, list[Entry], Position | None]] = []
        for raw_key, raw in read:
            topic = (raw_key.decode() if isinstance(raw_key, bytes) else raw_key)[prefix:]
            if topic not in lost:
                batches.append((topic, *_entries(topic, raw)))
        if len(batches) == 1:
            fanout.deliver(*batches[0])
            return
        # Several topics in one read: hand the events over in the order of their ids (the
        # order they were published in), each topic's run of events at once.
        merged = sorted((entry.position, topic, entry) for topic, entries, _ in batches for entry in entries)
        run: list[Entry] = []
        for index, (_, topic, entry) in enumerate(merged):
            run.append(entry)
            if index + 1 == len(merged) or merged[index + 1][1] != topic:
                fanout.deliver(topic, run)
                run = []
        for topic, _, last in batches:
            fanout.deliver(topic, (), last)

    async def aclose(self) -> None:
        runtime = self._runtime
        self._runtime = None
        if runtime is not None and runtime.loop is asyncio.get_running_loop():
            await runtime.aclose()
