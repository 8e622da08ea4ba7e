"""Pure content negotiation: reading request header lists and ``Accept-Encoding`` (RFC 9110 §12).

This module owns how a request's preferences are read and which representation they pick,
for precompressed files and for compressed streams alike (:func:`choose_coding`: whether a
streamed response is compressed, and with which coding). The rule that keeps it safe, as in
``_conditional.py``: a member the parser cannot read is ignored, never an error a client can
turn into a 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# RFC 9110 §12.4.2: a q-value has at most three decimals and is at most 1.
_QVALUE = re.compile(r"(?:0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def header_tokens(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> set[bytes]:
    """The comma-separated tokens of every ``name`` header, lower-cased, parameters dropped.

    >>> sorted(header_tokens([(b"te", b"trailers, deflate;q=0.5")], b"te"))
    [b'deflate', b'trailers']
    """
    tokens: set[bytes] = set()
    for key, value in headers:
        if key.lower() != name:
            continue
        for item in value.split(b","):
            token = item.split(b";", 1)[0].strip().lower()
            if token:
                tokens.add(token)
    return tokens


# -- content codings (RFC 9110 §12.5.3) --------------------------------------------------------


def parse_accept_encoding(value: str) -> dict[str, float]:
    """The q-value of each coding an ``Accept-Encoding`` value names (lower-cased).

    ``x-gzip`` counts as ``gzip`` (§8.4.1.3). A member with an unreadable q-value is skipped.

    >>> parse_accept_encoding("gzip;q=0.5, br, *;q=0")
    {'gzip': 0.5, 'br': 1.0, '*': 0.0}
    """
    weights: dict[str, float] = {}
    for member in value.split(","):
        coding, *params = (part.strip() for part in member.split(";"))
        coding = coding.lower()
        if not _TOKEN.fullmatch(coding):
            continue
        if coding == "x-gzip":
            coding = "gzip"
        weight = 1.0
        for param in params:
            name, _, raw = param.partition("=")
            if name.strip().lower() == "q":
                raw = raw.strip()
                if not _QVALUE.fullmatch(raw):
                    break
                weight = float(raw)
        else:
            weights[coding] = max(weight, weights.get(coding, 0.0)) if coding in weights else weight
    return weights


def negotiate_encoding(header: str | None, available: Iterable[str]) -> str | None:
    """The content coding to send, among ``available`` (in server preference); ``None``: identity.

    A coding is acceptable when the request lists it (or ``*``) with a q-value above 0; the
    highest q-value wins, ties go to the earlier of ``available``. ``identity`` wins only when
    the request prefers it explicitly. Without an ``Accept-Encoding`` header the identity is
    sent (RFC 9110 §12.5.3 would allow any coding, but a client that did not ask may not
    decode it). When nothing is acceptable, the identity is sent as well rather than a 406.

    >>> negotiate_encoding("gzip, br", ["br", "gzip"]), negotiate_encoding("br;q=0, gzip", ["br", "gzip"])
    ('br', 'gzip')
    >>> negotiate_encoding("identity;q=1, gzip;q=0.5", ["gzip"]) is None
    True
    """
    if header is None:
        return None
    weights = parse_accept_encoding(header)
    star = weights.get("*")
    best: str | None = None
    best_weight = 0.0
    for coding in available:
        weight = weights.get(coding, star if star is not None else 0.0)
        if weight > best_weight:
            best, best_weight = coding, weight
    if best is not None and "identity" in weights and weights["identity"] > best_weight:
        return None
    return best


# -- compressed streams --------------------------------------------------------------------------


@dataclass(frozen=True)
class CodingChoice:
    """How one response is coded: ``coding`` (``None``: as it is) and whether it says
    ``Vary: Accept-Encoding`` (every answer of a response that negotiates does, RFC 9110 §12.5.5)."""

    coding: str | None
    vary: bool


def choose_coding(
    *,
    offered: Sequence[str],
    accept_encoding: str | None,
    method: str,
    status_code: int,
    headers: Iterable[tuple[bytes, bytes]],
    pathsend: bool = False,
) -> CodingChoice:
    """Decide whether a streamed response is compressed, and with which coding.

    ``offered`` are the codings the response allows whose package is installed, in preference
    order (a tie of q-values goes to the earlier one); ``headers`` are the response's own. A
    response that already has a ``Content-Encoding`` is left alone and does not vary on our
    account. Never compressed, though still varying: HEAD and answers without a body (1xx, 204,
    304), partial content (206, ``Content-Range``, ``multipart/byteranges``: the ranges are of
    the identity), and a file the server sends itself (``pathsend``). Otherwise the request's
    ``Accept-Encoding`` decides (:func:`negotiate_encoding`). Whether a body complete before the
    start is too small to compress is decided later, by the core, once its size is known.

    >>> choose_coding(offered=["zstd", "gzip"], accept_encoding="gzip, zstd", method="GET",
    ...               status_code=200, headers=[])
    CodingChoice(coding='zstd', vary=True)
    >>> choose_coding(offered=["gzip"], accept_encoding="gzip", method="HEAD", status_code=200, headers=[])
    CodingChoice(coding=None, vary=True)
    """
    if not offered:
        return CodingChoice(None, vary=False)
    partial = status_code == 206
    for name, value in headers:
        key = name.lower()
        if key == b"content-encoding":
            return CodingChoice(None, vary=False)
        if key == b"content-range" or (
            key == b"content-type" and value.split(b";", 1)[0].strip().lower() == b"multipart/byteranges"
        ):
            partial = True
    if method == "HEAD" or status_code < 200 or status_code in (204, 304) or partial or pathsend:
        return CodingChoice(None, vary=True)
    return CodingChoice(negotiate_encoding(accept_encoding, offered), vary=True)


def request_accept_encoding(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Every ``Accept-Encoding`` field of a request joined into one value, or ``None`` without one.

    >>> request_accept_encoding([(b"accept-encoding", b"gzip"), (b"Accept-Encoding", b"br")])
    'gzip, br'
    """
    values = [value.decode("latin-1") for name, value in headers if name.lower() == b"accept-encoding"]
    return ", ".join(values) if values else None


def with_vary(headers: list[tuple[bytes, bytes]], token: bytes) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``token`` in their ``Vary`` field (added once, merged into an existing one).

    >>> with_vary([(b"vary", b"Cookie")], b"Accept-Encoding")
    [(b'vary', b'Cookie, Accept-Encoding')]
    >>> with_vary([(b"Vary", b"*")], b"Accept-Encoding")
    [(b'Vary', b'*')]
    """
    for index, (name, value) in enumerate(headers):
        if name.lower() == b"vary":
            present = {item.strip().lower() for item in value.split(b",")}
            if token.lower() in present or b"*" in present:
                return headers
            merged = list(headers)
            merged[index] = (name, value + b", " + token)
            return merged
    return [*headers, (b"vary", token)]
