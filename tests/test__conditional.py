"""The pure HTTP decisions of file serving: ranges, validators, conditional requests."""

from __future__ import annotations

import contextlib
import email.parser
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming_responses._conditional import (
    FileDecision,
    RangeNotSatisfiable,
    Validators,
    decide,
    evaluate_preconditions,
    format_http_date,
    if_range_allows,
    make_etag,
    merge_ranges,
    multipart_plan,
    parse_entity_tags,
    parse_http_date,
    parse_range,
    with_encoding,
)

# -- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-499", 1000, [(0, 500)]),
        ("bytes=500-999", 1000, [(500, 1000)]),
        ("bytes=500-5000", 1000, [(500, 1000)]),
        ("bytes=-500", 1000, [(500, 1000)]),
        ("bytes=-5000", 1000, [(0, 1000)]),
        ("bytes=900-", 1000, [(900, 1000)]),
        ("BYTES = 0-0", 1000, [(0, 1)]),
        ("bytes=0-0,-1", 1000, [(0, 1), (999, 1000)]),
        ("bytes=0-9, 5-19, 20-29", 1000, [(0, 30)]),
        ("bytes=500-600,0-10", 1000, [(0, 11), (500, 601)]),
        ("bytes=0-1,,2-3", 1000, [(0, 4)]),
        ("bytes=2000-, 0-1", 1000, [(0, 2)]),
        ("bytes=0000000000000000000000000000000000005-6", 1000, [(5, 7)]),
        ("bytes=0-" + "9" * 5000, 1000, [(0, 1000)]),
    ],
)
def test_satisfiable_ranges_are_half_open_sorted_and_merged(
    header: str, size: int, expected: list[tuple[int, int]]
) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes",
        "items=0-1",
        "bytes=",
        "bytes=,",
        "bytes=-",
        "bytes=a-b",
        "bytes=1-0",
        "bytes=0-1-2",
        "bytes=+1-2",
        "bytes=0x1-2",
        "bytes=²-3",
        "bytes=0-1,x",
        "bytes=" + ",".join(["0-0"] * 17),
    ],
)
def test_a_malformed_or_unbounded_range_header_is_ignored(header: str) -> None:
    assert parse_range(header, 1000) is None


def test_the_cap_on_ranges_is_a_parameter() -> None:
    header = "bytes=0-0,2-2,4-4"
    assert parse_range(header, 10, max_ranges=3) == [(0, 1), (2, 3), (4, 5)]
    assert parse_range(header, 10, max_ranges=2) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0", "bytes=5000-,-0"])
def test_an_unsatisfiable_range_carries_the_size_for_the_416(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, 1000)
    assert info.value.size == 1000
    assert info.value.content_range == "bytes */1000"


def test_an_empty_file_answers_a_suffix_range_whole_and_an_offset_with_416() -> None:
    assert parse_range("bytes=-10", 0) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=0-", 0)


def test_a_negative_size_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="size"):
        parse_range("bytes=0-1", -1)


RANGE_PIECES = st.sampled_from([*"0123456789-,= ;abxyBYTES\t", "bytes=", "99999999999999999999"])
RANGE_HEADERS = st.lists(RANGE_PIECES, max_size=30).map("".join)


@given(header=RANGE_HEADERS, size=st.integers(0, 10**12))
def test_the_range_parser_returns_ranges_inside_the_file_or_its_own_error(header: str, size: int) -> None:
    try:
        ranges = parse_range(header, size)
    except RangeNotSatisfiable as exc:
        error = exc
        assert error.size == size
        return
    if ranges is None:
        return
    assert ranges
    for start, stop in ranges:
        assert 0 <= start < stop <= size
    for (_, first_stop), (second_start, _) in itertools.pairwise(ranges):
        assert first_stop < second_start  # sorted, disjoint and not even adjacent


@given(header=st.text(max_size=80), size=st.integers(0, 10**6))
def test_the_range_parser_never_raises_on_any_text(header: str, size: int) -> None:
    with contextlib.suppress(RangeNotSatisfiable):
        parse_range(header, size)


@given(
    specs=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 2000)), min_size=1, max_size=16),
    size=st.integers(1, 1500),
)
def test_parsed_ranges_cover_exactly_the_requested_bytes(specs: list[tuple[int, int]], size: int) -> None:
    specs = [(min(a, b), max(a, b)) for a, b in specs]
    header = "bytes=" + ",".join(f"{a}-{b}" for a, b in specs)
    wanted = {byte for a, b in specs for byte in range(a, min(b + 1, size))}
    try:
        ranges = parse_range(header, size)
    except RangeNotSatisfiable:
        assert not wanted
        return
    assert ranges is not None
    assert {byte for start, stop in ranges for byte in range(start, stop)} == wanted


def test_merge_joins_overlapping_and_adjacent_ranges() -> None:
    assert merge_ranges([(5, 10), (0, 5), (20, 30), (25, 26)]) == [(0, 10), (20, 30)]


def test_multipart_framing_has_the_exact_length_and_parses_back() -> None:
    data = bytes(range(256)) * 4
    plan = multipart_plan([(0, 10), (500, 520)], len(data), "application/pdf", "sep123")
    body = b""
    for head, (start, stop) in zip(plan.heads, plan.ranges, strict=True):
        body += head + data[start:stop]
    body += plan.tail
    assert len(body) == plan.length
    assert plan.content_type == "multipart/byteranges; boundary=sep123"
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + plan.content_type.encode() + b"\r\n\r\n" + body
    )
    parts: list[Any] = message.get_payload()  # type: ignore[assignment]
    assert [part["Content-Range"] for part in parts] == ["bytes 0-9/1024", "bytes 500-519/1024"]
    assert [part["Content-Type"] for part in parts] == ["application/pdf"] * 2
    assert [part.get_payload(decode=True) for part in parts] == [data[0:10], data[500:520]]


def test_multipart_parts_have_no_content_type_when_the_file_has_none() -> None:
    plan = multipart_plan([(0, 1), (3, 4)], 5, None, "b")
    assert b"Content-Type" not in b"".join(plan.heads)


@pytest.mark.parametrize("boundary", ["", "a b", "x" * 71, "a\r\nb"])
def test_a_bad_boundary_is_refused(boundary: str) -> None:
    with pytest.raises(ValueError, match="boundary"):
        multipart_plan([(0, 1)], 1, None, boundary)


# -- validators and dates -----------------------------------------------------------------------


def test_etags_are_strong_and_distinct_per_encoding_size_and_time() -> None:
    tags = {
        make_etag(10, 1),
        make_etag(11, 1),
        make_etag(10, 2),
        make_etag(10, 1, "br"),
        make_etag(10, 1, "gzip"),
    }
    assert len(tags) == 5
    assert all(tag.startswith('"') and tag.endswith('"') for tag in tags)
    assert with_encoding('"v1"', "br") == '"v1-br"'
    assert with_encoding('"v1"', None) == '"v1"'


@pytest.mark.parametrize(
    "value",
    ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"],
)
def test_the_three_http_date_formats_parse_to_the_same_instant(value: str) -> None:
    assert parse_http_date(value) == 784111777
    assert format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    "value", ["", "yesterday", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 25:49:37 GMT", "x" * 100]
)
def test_an_invalid_date_is_none(value: str) -> None:
    assert parse_http_date(value) is None


@given(st.text(max_size=70))
def test_date_parsing_never_raises(value: str) -> None:
    parse_http_date(value)


def test_entity_tag_lists_skip_unreadable_members() -> None:
    assert parse_entity_tags('"a", bogus, W/"b"') == ['"a"', 'W/"b"']
    assert parse_entity_tags("*") is None
    assert parse_entity_tags('"unterminated') == []


# -- conditionals (RFC 9110 §13.2.2) -------------------------------------------------------------

ETAG = '"abc"'
MODIFIED = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
V = Validators(etag=ETAG, last_modified=MODIFIED)
BEFORE = "Sun, 06 Nov 1994 08:49:36 GMT"
AT = "Sun, 06 Nov 1994 08:49:37 GMT"
AFTER = "Sun, 06 Nov 1994 08:49:38 GMT"


@pytest.mark.parametrize(
    ("method", "fields", "expected"),
    [
        ("GET", {}, None),
        # If-Match: strong comparison, "*" matches, failure is 412 for any method.
        ("GET", {"if_match": [ETAG]}, None),
        ("GET", {"if_match": ['"zzz", "abc"']}, None),
        ("GET", {"if_match": ["*"]}, None),
        ("GET", {"if_match": ['W/"abc"']}, 412),
        ("PUT", {"if_match": ['"zzz"']}, 412),
        ("GET", {"if_match": ["garbage"]}, 412),
        # If-Unmodified-Since only without If-Match.
        ("GET", {"if_unmodified_since": [BEFORE]}, 412),
        ("GET", {"if_unmodified_since": [AT]}, None),
        ("GET", {"if_unmodified_since": ["not a date"]}, None),
        ("GET", {"if_unmodified_since": [BEFORE, AFTER]}, None),
        ("GET", {"if_match": [ETAG], "if_unmodified_since": [BEFORE]}, None),
        # If-None-Match: weak comparison, 304 for GET/HEAD, 412 for others.
        ("GET", {"if_none_match": [ETAG]}, 304),
        ("HEAD", {"if_none_match": ['W/"abc"']}, 304),
        ("GET", {"if_none_match": ['"x"', '"abc"']}, 304),
        ("GET", {"if_none_match": ["*"]}, 304),
        ("POST", {"if_none_match": ["*"]}, 412),
        ("GET", {"if_none_match": ['"other"']}, None),
        # If-Modified-Since only without If-None-Match, and for GET/HEAD only.
        ("GET", {"if_modified_since": [AT]}, 304),
        ("GET", {"if_modified_since": [AFTER]}, 304),
        ("GET", {"if_modified_since": [BEFORE]}, None),
        ("POST", {"if_modified_since": [AT]}, None),
        ("GET", {"if_modified_since": ["soon"]}, None),
        ("GET", {"if_none_match": ['"other"'], "if_modified_since": [AT]}, None),
        # If-Match failure wins over a matching If-None-Match.
        ("GET", {"if_match": ['"zzz"'], "if_none_match": [ETAG]}, 412),
    ],
)
def test_preconditions_follow_the_rfc_9110_order(
    method: str, fields: dict[str, list[str]], expected: int | None
) -> None:
    assert evaluate_preconditions(method, validators=V, **fields) == expected


def test_preconditions_without_validators() -> None:
    none = Validators(etag=None, last_modified=None)
    assert evaluate_preconditions("GET", if_match=[ETAG], validators=none) == 412
    assert evaluate_preconditions("GET", if_none_match=[ETAG], validators=none) is None
    assert evaluate_preconditions("GET", if_modified_since=[AT], validators=none) is None


@pytest.mark.parametrize(
    ("value", "now", "expected"),
    [
        (ETAG, 1e9, True),
        ('W/"abc"', 1e9, False),
        ('"other"', 1e9, False),
        (AT, 1e9, True),
        (AFTER, 1e9, False),
        (BEFORE, 1e9, False),
        (AT, MODIFIED + 0.5, False),  # modified within the last second: a weak date
        ("garbage", 1e9, False),
    ],
)
def test_if_range_needs_a_strong_etag_or_the_exact_strong_date(
    value: str, now: float, expected: bool
) -> None:
    assert if_range_allows(value, V, now) is expected


def test_decide_answers_ranges_only_for_get_and_only_when_if_range_allows() -> None:
    ranged = [("range", "bytes=0-9")]
    assert decide("GET", ranged, validators=V, size=100, now=1e9) == FileDecision(206, ((0, 10),))
    assert decide("HEAD", ranged, validators=V, size=100, now=1e9) == FileDecision(200)
    assert decide("POST", ranged, validators=V, size=100, now=1e9) == FileDecision(200)
    assert decide("GET", ranged, validators=V, size=None, now=1e9) == FileDecision(200)
    assert decide("GET", ranged, validators=V, size=100, now=1e9, ranges_allowed=False) == FileDecision(200)
    assert decide("GET", [*ranged, ("if-range", ETAG)], validators=V, size=100, now=1e9).status_code == 206
    assert decide("GET", [*ranged, ("if-range", '"old"')], validators=V, size=100, now=1e9).status_code == 200
    assert (
        decide("GET", [*ranged, ("range", "bytes=1-2")], validators=V, size=100, now=1e9).status_code == 200
    )
    two = [("range", "bytes=0-1,5-6")]
    assert decide("GET", two, validators=V, size=100, now=1e9).status_code == 206
    assert (
        decide("GET", two, validators=V, size=100, now=1e9, multiple_ranges_allowed=False).status_code == 200
    )
    assert (
        decide("GET", [("if-none-match", ETAG), *ranged], validators=V, size=100, now=1e9).status_code == 304
    )
    with pytest.raises(RangeNotSatisfiable):
        decide("GET", [("range", "bytes=100-")], validators=V, size=100, now=1e9)


@pytest.mark.parametrize(
    "header",
    [
        "bytes=5000-4000",  # reversed inside the file
        "bytes=20000-15000",  # reversed past its end: the same malformed header, not a 416
        "bytes=99999999999999999999999-99999999999999999999998",  # beyond any cap
        "bytes=0-9, 20000-15000",  # one reversed spec makes the whole header invalid
    ],
)
def test_a_reversed_range_is_ignored_wherever_it_points(header: str) -> None:
    assert parse_range(header, 10_000) is None
