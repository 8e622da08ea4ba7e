from __future__ import annotations

import pytest

from streaming_responses._framing import (
    ERROR_TRAILER,
    STATUS_TRAILER,
    Framing,
    FramingDecision,
    body_allowed,
    coerce_chunk,
    decide_framing,
    header_tokens,
    parse_content_length,
    parse_timeout,
    status_trailers,
    trailers_eligible,
)


@pytest.mark.parametrize(
    ("method", "status", "allowed"),
    [
        ("GET", 200, True),
        ("POST", 500, True),
        ("HEAD", 200, False),
        ("GET", 204, False),
        ("GET", 304, False),
        ("GET", 101, False),
        ("GET", 205, True),
    ],
)
def test_body_allowed_follows_rfc_9110(method: str, status: int, allowed: bool) -> None:
    assert body_allowed(method, status) is allowed


def test_a_declared_length_wins_over_a_complete_body() -> None:
    decision = decide_framing(method="GET", status_code=200, declared_length=10, complete_length=3)
    assert decision == FramingDecision(Framing.CONTENT_LENGTH, 10)


def test_a_body_complete_before_the_first_send_gets_its_length() -> None:
    decision = decide_framing(method="GET", status_code=200, declared_length=None, complete_length=0)
    assert decision == FramingDecision(Framing.CONTENT_LENGTH, 0)


def test_an_unknown_length_is_chunked() -> None:
    decision = decide_framing(method="GET", status_code=200, declared_length=None, complete_length=None)
    assert decision == FramingDecision(Framing.CHUNKED, None)


def test_head_keeps_the_declared_length_but_sends_no_body() -> None:
    decision = decide_framing(method="HEAD", status_code=200, declared_length=42, complete_length=None)
    assert decision == FramingDecision(Framing.NO_BODY, 42)


def test_a_304_declares_no_length_even_when_one_was_given() -> None:
    decision = decide_framing(method="GET", status_code=304, declared_length=42, complete_length=None)
    assert decision == FramingDecision(Framing.NO_BODY, None)


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


def test_coerce_chunk_passes_bytes_through_unchanged() -> None:
    chunk = b"abc"
    assert coerce_chunk(chunk, "utf-8") is chunk


def test_coerce_chunk_encodes_text_with_the_charset() -> None:
    assert coerce_chunk("é", "utf-8") == b"\xc3\xa9"
    assert coerce_chunk("é", "latin-1") == b"\xe9"


def test_coerce_chunk_copies_buffers_the_producer_may_reuse() -> None:
    buffer = bytearray(b"abc")
    view = memoryview(buffer)
    assert coerce_chunk(view, "utf-8") == b"abc"
    assert coerce_chunk(buffer, "utf-8") == b"abc"
    assert type(coerce_chunk(view, "utf-8")) is bytes


def test_coerce_chunk_accepts_subclasses_of_str() -> None:
    class Text(str):
        pass

    assert coerce_chunk(Text("hi"), "utf-8") == b"hi"


@pytest.mark.parametrize(("chunk", "name"), [(1, "int"), (None, "NoneType"), ({"a": 1}, "dict")])
def test_coerce_chunk_rejects_other_types_naming_them(chunk: object, name: str) -> None:
    with pytest.raises(TypeError, match=f"must be bytes, str or memoryview, not {name}"):
        coerce_chunk(chunk, "utf-8")


def test_header_tokens_reads_every_matching_header_case_insensitively() -> None:
    headers = [(b"TE", b"Trailers;q=1, gzip"), (b"te", b"deflate"), (b"accept", b"x")]
    assert header_tokens(headers, b"te") == {b"trailers", b"gzip", b"deflate"}


def test_header_tokens_skips_empty_items() -> None:
    assert header_tokens([(b"te", b" , ,")], b"te") == set()


def scope_for(
    *, http_version: str = "2", te: bytes | None = b"trailers", extension: bool = True
) -> dict[str, object]:
    headers = [(b"te", te)] if te is not None else []
    return {
        "http_version": http_version,
        "headers": headers,
        "extensions": {"http.response.trailers": {}} if extension else {},
    }


def test_trailers_are_eligible_on_http2_with_the_extension_and_te_trailers() -> None:
    assert trailers_eligible(scope_for())
    assert trailers_eligible(scope_for(http_version="3"))


@pytest.mark.parametrize(
    "scope",
    [
        scope_for(http_version="1.1"),
        scope_for(te=None),
        scope_for(te=b"gzip"),
        scope_for(extension=False),
        {"http_version": "2", "headers": [(b"te", b"trailers")]},
    ],
)
def test_trailers_are_not_eligible_when_any_condition_is_missing(scope: dict[str, object]) -> None:
    assert not trailers_eligible(scope)


def test_status_trailers_say_complete_or_name_the_error() -> None:
    assert status_trailers(None) == [(STATUS_TRAILER, b"complete")]
    assert status_trailers(KeyError("x")) == [(STATUS_TRAILER, b"error"), (ERROR_TRAILER, b"KeyError")]
