"""The Last-Event-ID encoding of the broker, from tables: written, read back, refused."""

from __future__ import annotations

import pytest

from streaming_responses import EventsLost
from streaming_responses._broker_ids import MAX_ID_LENGTH, check_topic, check_topics, format_id, parse_id


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        ([("events", "ab12cd34ef56.1718000000000-0")], "events@ab12cd34ef56.1718000000000-0"),
        ([("news", "e.7-1"), ("chat", "e.9-0")], "news@e.7-1,chat@e.9-0"),
        ([("a/b:c", "x")], "a/b:c@x"),
    ],
)
def test_an_id_names_each_topic_with_its_position(positions: list[tuple[str, str]], expected: str) -> None:
    assert format_id(positions) == expected
    assert parse_id(expected, [topic for topic, _ in positions]) == dict(positions)


@pytest.mark.parametrize(
    ("text", "topics", "problem"),
    [
        ("", ["events"], "malformed"),
        ("events", ["events"], "malformed"),
        ("events@", ["events"], "malformed"),
        ("@1-0", ["events"], "malformed"),
        ("bad topic@1-0", ["bad topic"], "malformed"),
        ("events@1,events@2", ["events"], "appears twice"),
        ("news@1", ["events"], "not of this subscription"),
        ("news@1", ["news", "chat"], "not of this subscription"),
        ("news@1,chat@2,extra@3", ["news", "chat"], "not of this subscription"),
        ("x" * (MAX_ID_LENGTH + 1), ["events"], "longer than"),
    ],
)
def test_an_id_that_does_not_fit_the_subscription_is_events_lost(
    text: str, topics: list[str], problem: str
) -> None:
    with pytest.raises(EventsLost, match=problem):
        parse_id(text, topics)


def test_topics_are_read_back_in_any_order() -> None:
    assert parse_id("chat@2,news@1", ["news", "chat"]) == {"news": "1", "chat": "2"}


@pytest.mark.parametrize("topic", ["", "a b", "a@b", "a,b", "a#b", "x" * 101, "é"])
def test_a_topic_name_outside_the_safe_characters_is_refused(topic: str) -> None:
    with pytest.raises(ValueError, match="topic"):
        check_topic(topic)


def test_topics_must_be_a_non_empty_list_without_repeats() -> None:
    assert check_topics(("a", "b")) == ("a", "b")
    with pytest.raises(TypeError, match="not a str"):
        check_topics("events")
    with pytest.raises(ValueError, match="at least one"):
        check_topics([])
    with pytest.raises(ValueError, match="repeat"):
        check_topics(["a", "a"])
    with pytest.raises(TypeError, match="must be a str"):
        check_topic(3)
