"""The fan-out of one process: positions, skipped repeats, the drop rule, failing and ending."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from streaming_responses import BrokerUnavailable, EventsLost, ServerSentEvent, SubscriberTooSlow
from streaming_responses._broker_backend import Entry
from streaming_responses._broker_fanout import Fanout, Subscription
from streaming_responses._broker_memory import MemoryBackend


def entry(seq: int) -> Entry:
    return Entry((seq, 0), ServerSentEvent(str(seq), id=f"t@e.{seq}"))


def subscription(fanout: Fanout, *topics: str) -> Subscription:
    backend = MemoryBackend(history=10, max_age=None)
    backend.attach(fanout)
    return Subscription(fanout, backend, topics or ("t",), None)


def test_a_topic_starts_once_and_subscribers_registered_before_start_there() -> None:
    fanout = Fanout(subscriber_buffer=10)
    sub = subscription(fanout)
    fanout.add(sub)
    assert fanout.position("t") is None
    assert fanout.start_at("t", (5, 0)) is True
    assert fanout.start_at("t", (9, 0)) is False  # the first start stands
    assert fanout.position("t") == (5, 0)
    assert fanout.followed() == {"t": (5, 0)}
    assert sub._after == {"t": (5, 0)}


def test_deliveries_skip_what_the_topic_already_passed_and_ignore_topics_not_followed() -> None:
    fanout = Fanout(subscriber_buffer=10)
    sub = subscription(fanout)
    fanout.add(sub)
    fanout.deliver("t", [entry(1)])  # not started yet: a stale read, ignored
    assert sub.pending == 0
    fanout.start_at("t", (1, 0))
    fanout.deliver("t", [entry(1), entry(2), entry(3)])
    fanout.deliver("t", [entry(2), entry(3), entry(4)])  # a repeated read
    fanout.deliver("t", [], (7, 0))  # entries that were not events
    assert [item.position for _, item in sub._buffer] == [(2, 0), (3, 0), (4, 0)]
    assert fanout.position("t") == (7, 0)
    fanout.deliver("other", [entry(8)])
    assert sub.pending == 3


def test_a_subscriber_past_its_buffer_is_dropped_and_its_topic_forgotten() -> None:
    fanout = Fanout(subscriber_buffer=2)
    sub = subscription(fanout)
    fanout.add(sub)
    fanout.start_at("t", (0, 0))
    fanout.deliver("t", [entry(1), entry(2)])
    assert not sub.dropped
    fanout.deliver("t", [entry(3)])
    assert sub.dropped
    assert fanout.followed() == {}  # nobody left on it


@pytest.mark.anyio
async def test_failing_a_topic_ends_its_subscriptions_with_the_error_and_leaves_others() -> None:
    fanout = Fanout(subscriber_buffer=10)
    failing, other = subscription(fanout, "a"), subscription(fanout, "b")
    for sub in (failing, other):
        fanout.add(sub)
    fanout.start_at("a", (0, 0))
    fanout.start_at("b", (0, 0))
    for sub in (failing, other):
        sub._joined = True
    fanout.fail(["a"], EventsLost("a@x", "gone"))
    with anyio.fail_after(5), pytest.raises(EventsLost):
        await anext(failing)
    assert list(fanout.followed()) == ["b"]
    fanout.fail(None, BrokerUnavailable("redis://h", "down"))
    with anyio.fail_after(5), pytest.raises(BrokerUnavailable, match="redis://h"):
        await anext(other)


@pytest.mark.anyio
async def test_a_waiting_subscriber_wakes_for_a_delivery_and_a_drop() -> None:
    fanout = Fanout(subscriber_buffer=1)
    sub = subscription(fanout)
    fanout.add(sub)
    fanout.start_at("t", (0, 0))
    sub._joined = True
    got: list[str] = []

    async def wait() -> None:
        got.append(str((await anext(sub)).data))
        with pytest.raises(SubscriberTooSlow):
            await anext(sub)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            while sub._waiter is None:
                await anyio.lowlevel.checkpoint()
            fanout.deliver("t", [entry(1)])
            while sub._waiter is None:
                await anyio.lowlevel.checkpoint()
            fanout.deliver("t", [entry(2), entry(3)])  # two at once into a buffer of one
    assert got == ["1"]
