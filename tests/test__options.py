"""The shared options: each keyword checked by name, in one place."""

from __future__ import annotations

import pytest

from streaming_responses import ShutdownPolicy
from streaming_responses._options import StreamOptions, parse_content_length, parse_timeout


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (17, 17), ("17", 17), (b" 5 ", 5)])
def test_parse_content_length_accepts_non_negative_integers(value: object, expected: int) -> None:
    assert parse_content_length(value) == expected


@pytest.mark.parametrize("value", [-1, "-1", "1.5", "", "ten", "١٢"])
def test_parse_content_length_rejects_bad_values_naming_the_source(value: object) -> None:
    with pytest.raises(ValueError, match="content_length must be a non-negative integer"):
        parse_content_length(value)


@pytest.mark.parametrize("value", [True, 1.0, None, [1]])
def test_parse_content_length_rejects_non_integers_naming_the_type(value: object) -> None:
    with pytest.raises(TypeError, match="content_length must be an int"):
        parse_content_length(value)


def test_parse_timeout_accepts_positive_seconds_and_none() -> None:
    assert parse_timeout(None, "timeout") is None
    assert parse_timeout(2, "timeout") == 2.0
    assert parse_timeout(0.5, "idle_timeout") == 0.5


@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_parse_timeout_rejects_non_positive_values(value: float) -> None:
    with pytest.raises(ValueError, match="idle_timeout must be a positive number"):
        parse_timeout(value, "idle_timeout")


@pytest.mark.parametrize("value", ["1", True])
def test_parse_timeout_rejects_non_numbers(value: object) -> None:
    with pytest.raises(TypeError, match="timeout must be a number of seconds"):
        parse_timeout(value, "timeout")  # type: ignore[arg-type]


def test_options_are_taken_from_a_constructors_arguments_and_checked() -> None:
    options = StreamOptions.from_arguments(
        {"self": object(), "content": [], "timeout": 3, "on_shutdown": "end", "content_length": "7"}
    )
    assert options == StreamOptions(timeout=3.0, on_shutdown=ShutdownPolicy.END, content_length=7)


def test_options_a_class_does_not_take_keep_their_defaults() -> None:
    assert StreamOptions.from_arguments({}) == StreamOptions()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"idle_timeout": "1"}, "idle_timeout must be a number"),
        ({"send_timeout": -1}, "send_timeout must be a positive number"),
        ({"duplex": 1}, "duplex must be True or False"),
        ({"on_outcome": "log"}, "on_outcome must be a callable"),
        ({"on_shutdown": "later"}, "on_shutdown must be one of 'wait', 'end', 'abort'"),
        ({"content_length": -3}, "content_length must be a non-negative integer"),
    ],
)
def test_a_bad_option_is_refused_naming_it(arguments: dict[str, object], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        StreamOptions.from_arguments(arguments)


def test_replace_checks_the_new_values() -> None:
    assert StreamOptions().replace(timeout=2).timeout == 2.0
    with pytest.raises(ValueError, match="timeout"):
        StreamOptions().replace(timeout=0)
