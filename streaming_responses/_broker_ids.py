"""The broker's event ids: what a ``Last-Event-ID`` says, written and read back.

This module owns the text of the ids the broker gives events, and nothing else: every function
is pure, so the encoding is tested from tables. The rule that keeps resume exact: an id names
every topic it covers together with that topic's position, so an id read back either names
exactly the topics a subscription follows, with a position each, or it is refused as
:class:`EventsLost` (never guessed at, never half used).

The encoding (documented in the "Scaling out" guide)::

    id        = component *( "," component )     one component per topic, any order
    component = topic "@" position
    topic     = 1*100( ALPHA / DIGIT / "_" / "-" / "." / ":" / "/" )
    position  = the backend's position token: "<ms>-<seq>" (the Redis stream id) on Redis,
                "<epoch>.<seq>" in process (the epoch is new in every process and broker)

An event of a one-topic subscription has the id ``events@1718000000000-0``; a subscription to
``topics=["news", "chat"]`` sends ``news@1718000000000-0,chat@1717999999000-3`` (where it is in
each topic), so resuming is exact for every topic.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ._exceptions import EventsLost

#: A topic name: short, and free of the characters the id encoding uses ("@" and ",").
_TOPIC = re.compile(r"[A-Za-z0-9_\-.:/]{1,100}")
#: An id longer than this is refused unread (a header a client made up).
MAX_ID_LENGTH = 8192


def check_topic(topic: object) -> str:
    """``topic`` itself if it is a valid topic name, else a ``TypeError``/``ValueError`` naming it.

    >>> check_topic("orders.eu")
    'orders.eu'
    """
    if not isinstance(topic, str):
        raise TypeError(f"a topic must be a str, not {type(topic).__name__}")
    if _TOPIC.fullmatch(topic) is None:
        raise ValueError(
            f"topic {topic!r:.120} must be 1 to 100 letters, digits or '_', '-', '.', ':', '/' "
            "(the event ids use '@' and ',')"
        )
    return topic


def check_topics(topics: Iterable[str]) -> tuple[str, ...]:
    """The topics of one subscription, checked: at least one, each valid, none twice.

    >>> check_topics(["news", "chat"])
    ('news', 'chat')
    """
    if isinstance(topics, str):
        raise TypeError("topics must be a list of topic names, not a str")
    checked = tuple(check_topic(topic) for topic in topics)
    if not checked:
        raise ValueError("a subscription needs at least one topic")
    if len(set(checked)) != len(checked):
        raise ValueError(f"topics must not repeat: {list(checked)}")
    return checked


def format_id(positions: Sequence[tuple[str, str]]) -> str:
    """The id that says where a subscription is in each of its topics.

    >>> format_id([("news", "1718000000000-0"), ("chat", "1717999999000-3")])
    'news@1718000000000-0,chat@1717999999000-3'
    """
    return ",".join(f"{topic}@{position}" for topic, position in positions)


def parse_id(last_event_id: str, topics: Sequence[str]) -> dict[str, str]:
    """The position token of each topic in ``last_event_id``; :class:`EventsLost` if it does not fit.

    The id must name exactly ``topics`` (in any order), each once, with a non-empty position.
    Whether each position is one the backend can replay after is the backend's decision.

    >>> parse_id("chat@9-0,news@7-1", ["news", "chat"])
    {'chat': '9-0', 'news': '7-1'}
    """
    if len(last_event_id) > MAX_ID_LENGTH:
        raise EventsLost(last_event_id[:80] + "...", f"malformed: longer than {MAX_ID_LENGTH} characters")
    positions: dict[str, str] = {}
    for component in last_event_id.split(","):
        topic, at, position = component.partition("@")
        if not at or not position or _TOPIC.fullmatch(topic) is None:
            raise EventsLost(last_event_id, "malformed: not an id this broker gives")
        if topic in positions:
            raise EventsLost(last_event_id, f"malformed: topic {topic!r} appears twice")
        positions[topic] = position
    if set(positions) != set(topics):
        raise EventsLost(
            last_event_id,
            f"it is an id of the topics {sorted(positions)}, not of this subscription's {sorted(topics)}",
        )
    return positions
