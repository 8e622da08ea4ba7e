"""Content negotiation: header tokens and Accept-Encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming_responses._negotiation import (
    CodingChoice,
    choose_coding,
    header_tokens,
    negotiate_encoding,
    parse_accept_encoding,
    request_accept_encoding,
    with_vary,
)


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


# -- compressed streams --------------------------------------------------------------------------

ALL = ["zstd", "br", "gzip"]


@pytest.mark.parametrize(
    ("offered", "accept", "method", "status", "headers", "pathsend", "expected"),
    [
        # q-values decide; a tie goes to zstd, then br, then gzip (the order offered)
        (ALL, "gzip, deflate, br, zstd", "GET", 200, [], False, CodingChoice("zstd", True)),
        (ALL, "gzip, br", "GET", 200, [], False, CodingChoice("br", True)),
        (ALL, "gzip;q=1, br;q=0.9, zstd;q=0.8", "GET", 200, [], False, CodingChoice("gzip", True)),
        (ALL, "zstd;q=0, br;q=0, gzip", "GET", 200, [], False, CodingChoice("gzip", True)),
        (ALL, "*", "GET", 200, [], False, CodingChoice("zstd", True)),
        (ALL, "*;q=0.5, zstd;q=0", "GET", 200, [], False, CodingChoice("br", True)),
        (["gzip", "br"], "br, gzip", "GET", 200, [], False, CodingChoice("gzip", True)),
        (["br"], "gzip", "GET", 200, [], False, CodingChoice(None, True)),
        # identity, still varying: no header, refusals, an explicit preference for identity
        (ALL, None, "GET", 200, [], False, CodingChoice(None, True)),
        (ALL, "", "GET", 200, [], False, CodingChoice(None, True)),
        (ALL, "*;q=0", "GET", 200, [], False, CodingChoice(None, True)),
        (ALL, "identity, gzip;q=0.5", "GET", 200, [], False, CodingChoice(None, True)),
        (ALL, "deflate", "GET", 200, [], False, CodingChoice(None, True)),
        # never coded
        (ALL, "gzip", "HEAD", 200, [], False, CodingChoice(None, True)),
        (ALL, "gzip", "GET", 204, [], False, CodingChoice(None, True)),
        (ALL, "gzip", "GET", 304, [], False, CodingChoice(None, True)),
        (ALL, "gzip", "GET", 101, [], False, CodingChoice(None, True)),
        (ALL, "gzip", "GET", 206, [], False, CodingChoice(None, True)),
        (ALL, "gzip", "GET", 200, [(b"content-range", b"bytes 0-1/9")], False, CodingChoice(None, True)),
        (
            ALL,
            "gzip",
            "GET",
            200,
            [(b"content-type", b"Multipart/ByteRanges; boundary=x")],
            False,
            CodingChoice(None, True),
        ),
        (ALL, "gzip", "GET", 200, [], True, CodingChoice(None, True)),
        # already coded by the application (or a precompressed file): left alone, no Vary of ours
        (ALL, "gzip", "GET", 200, [(b"Content-Encoding", b"br")], False, CodingChoice(None, False)),
        # nothing offered (compress=False, or no package installed): no negotiation at all
        ([], "gzip", "GET", 200, [], False, CodingChoice(None, False)),
        # other statuses with a body are coded
        (ALL, "br", "GET", 404, [(b"content-type", b"text/html")], False, CodingChoice("br", True)),
    ],
)
def test_choose_coding_follows_the_request_and_never_codes_what_must_stay_identity(
    offered: list[str],
    accept: str | None,
    method: str,
    status: int,
    headers: list[tuple[bytes, bytes]],
    pathsend: bool,
    expected: CodingChoice,
) -> None:
    choice = choose_coding(
        offered=offered,
        accept_encoding=accept,
        method=method,
        status_code=status,
        headers=headers,
        pathsend=pathsend,
    )
    assert choice == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], [(b"vary", b"Accept-Encoding")]),
        ([(b"vary", b"Cookie")], [(b"vary", b"Cookie, Accept-Encoding")]),
        ([(b"vary", b"accept-encoding")], [(b"vary", b"accept-encoding")]),
        ([(b"Vary", b"*")], [(b"Vary", b"*")]),
    ],
)
def test_with_vary_adds_the_token_once(
    headers: list[tuple[bytes, bytes]], expected: list[tuple[bytes, bytes]]
) -> None:
    assert with_vary(headers, b"Accept-Encoding") == expected


def test_the_request_accept_encoding_fields_are_joined() -> None:
    assert request_accept_encoding([(b"host", b"x")]) is None
    assert request_accept_encoding([(b"Accept-Encoding", b"gzip"), (b"accept-encoding", b"br")]) == "gzip, br"
