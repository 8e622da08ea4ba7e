"""Pure content negotiation: reading request header lists and ``Accept-Encoding`` (RFC 9110 §12).

This module owns how a request's preferences are read and which representation they pick,
for precompressed files and for compressed streams alike. The rule that keeps it safe, as in
``_conditional.py``: a member the parser cannot read is ignored, never an error a client can
turn into a 5xx.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

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
