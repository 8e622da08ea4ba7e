"""Content negotiation: header tokens and Accept-Encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming_responses._negotiation import header_tokens, negotiate_encoding, parse_accept_encoding


def test_header_tokens_reads_every_matching_header_case_insensitively() -> None:
    headers = [(b"TE", b"Trailers;q=1, gzip"), (b"te", b"deflate"), (b"accept", b"x")]
    assert header_tokens(headers, b"te") == {b"trailers", b"gzip", b"deflate"}


def test_header_tokens_skips_empty_items() -> None:
    assert header_tokens([(b"te", b" , ,")], b"te") == set()


# -- content codings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("gzip", "gzip"),
        ("x-gzip", "gzip"),
        ("br", "br"),
        ("gzip, deflate, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
        ("br;q=0, gzip;q=0", None),
        ("br;q=0", None),
        ("*", "br"),
        ("*;q=0.5, br;q=0", "gzip"),
        ("*;q=0", None),
        ("identity", None),
        ("identity;q=1, br;q=0.9", None),
        ("identity;q=0.5, br;q=0.9", "br"),
        ("GZIP;Q=1", "gzip"),
        ("br;q=2, gzip", "gzip"),  # an invalid q-value drops that member
        ("br;q=abc", None),
        ("br;q=0.001", "br"),
        ("deflate", None),
    ],
)
def test_the_encoding_with_the_highest_q_value_wins(header: str | None, expected: str | None) -> None:
    assert negotiate_encoding(header, ["br", "gzip"]) == expected


def test_only_available_encodings_are_chosen() -> None:
    assert negotiate_encoding("br, gzip", ["gzip"]) == "gzip"
    assert negotiate_encoding("br", []) is None


def test_accept_encoding_keeps_the_highest_weight_of_a_repeated_coding() -> None:
    assert parse_accept_encoding("gzip;q=0.2, gzip;q=0.7, ;q=1, b@d") == {"gzip": 0.7}


@given(st.text(max_size=60))
def test_encoding_negotiation_never_raises(header: str) -> None:
    assert negotiate_encoding(header, ["br", "gzip"]) in (None, "br", "gzip")
