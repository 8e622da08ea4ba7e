"""Pure HTTP decisions for serving a file: ranges, validators, conditional requests.

This module owns the rules of RFC 9110 §13 and §14 that shape a file response (content
negotiation lives in ``_negotiation.py``, shared with compression): it never
awaits, never reads a file and never touches ASGI. :mod:`._files` gathers the facts (the
request headers, the file's size and modification time) and asks :func:`decide` what to
answer; the decision comes back as plain data.

The rules that keep it safe: a header the parser cannot read is *ignored*, never an error the
client can turn into a 5xx (RFC 9110 §14.2 lets a server ignore a Range header, and an invalid
date is ignored by §13.1.3/§13.1.4); the only exception raised on purpose is
:class:`RangeNotSatisfiable`, which carries what the 416 response needs.
"""

from __future__ import annotations

import calendar
import datetime
import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: How many range specs one Range header may carry before it is ignored (a 200 answers it).
MAX_RANGES = 16

#: Content codings served from precompressed siblings, in the server's order of preference,
#: with the file name suffix of each.
ENCODING_SUFFIXES: dict[str, str] = {"br": ".br", "gzip": ".gz"}

# RFC 9110 §14.1.2: int-range / suffix-range, digits only (ASCII: str.isdigit() accepts "²").
_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)")
# RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; etagc excludes DQUOTE, CTLs and space.
_ENTITY_TAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')
# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Numbers longer than this are larger than any file; comparing them as text avoids converting
# thousands of digits (CPython refuses int() of more than 4300 digits).
_MAX_DIGITS = 18


class RangeNotSatisfiable(ValueError):
    """No range of a valid Range header overlaps the representation: answer 416.

    ``size`` is the representation's length, for ``Content-Range: bytes */<size>``
    (RFC 9110 §15.5.17).

    >>> try:
    ...     parse_range("bytes=500-", 100)
    ... except RangeNotSatisfiable as exc:
    ...     exc.content_range
    'bytes */100'
    """

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(f"no requested range overlaps the {size} bytes of the representation")

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` value of the 416 response."""
        return f"bytes */{self.size}"


# -- ranges (RFC 9110 §14) --------------------------------------------------------------------


def _position(digits: str, size: int) -> int:
    """A non-negative decimal, capped just above ``size`` (only comparisons with it matter)."""
    significant = digits.lstrip("0") or "0"
    if len(significant) > _MAX_DIGITS:
        return size + 1
    return min(int(significant), size + 1)


def _before(digits: str, other: str) -> bool:
    """Whether the decimal ``digits`` is smaller than ``other``, at any length (no capping).

    >>> _before("15000", "20000"), _before("0099", "100"), _before("7", "7")
    (True, True, False)
    """
    a = digits.lstrip("0")
    b = other.lstrip("0")
    return (len(a), a) < (len(b), b)


def parse_range(header: str, size: int, *, max_ranges: int = MAX_RANGES) -> list[tuple[int, int]] | None:
    """The byte ranges a ``Range`` header selects from a representation of ``size`` bytes.

    Returns half-open ``(start, stop)`` pairs, sorted, with overlapping and adjacent ranges
    merged, each within ``[0, size)``; or ``None`` when the header must be ignored and the
    whole representation sent with a 200: it is malformed, its unit is not ``bytes``, it
    carries more than ``max_ranges`` range specs (a request must not make the server do
    unbounded work, RFC 9110 §14.2), or the representation is empty and a suffix range asks
    for all of it. Raises :class:`RangeNotSatisfiable` when the header is valid but no range
    overlaps the representation.

    >>> parse_range("bytes=0-99", 1000)
    [(0, 100)]
    >>> parse_range("bytes=-100, 0-9, 5-19", 1000)
    [(0, 20), (900, 1000)]
    >>> parse_range("bytes=abc", 1000) is None
    True
    """
    if size < 0:
        raise ValueError(f"size must be a non-negative integer, got {size}")
    unit, equals, range_set = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None  # RFC 9110 §14.2: an unknown range unit is ignored
    # RFC 9110 §5.6.1: a list may contain empty elements, which a recipient must skip.
    specs = [part.strip() for part in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    if not specs or len(specs) > max_ranges:
        return None
    ranges: list[tuple[int, int]] = []
    whole_of_empty = False
    for spec in specs:
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last = match.groups()
        if first:
            start = _position(first, size)
            if last:
                if _before(last, first):
                    return None  # last-pos < first-pos makes the whole header invalid (§14.1.1)
                stop = _position(last, size) + 1
            else:
                stop = size
            if start < size:  # otherwise this spec is unsatisfiable; others may still be fine
                ranges.append((start, min(stop, size)))
        elif last:
            length = _position(last, size)
            if length > 0:
                if size == 0:
                    whole_of_empty = True
                else:
                    ranges.append((max(size - length, 0), size))
        else:
            return None  # "-" alone is neither an int-range nor a suffix-range
    if not ranges:
        if whole_of_empty:
            # §14.1.3: a suffix longer than the representation selects all of it; an empty
            # representation cannot be described by a Content-Range, so send it with a 200.
            return None
        raise RangeNotSatisfiable(size)
    return merge_ranges(ranges)


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort half-open ranges and join those that overlap or touch (RFC 9110 §14.6 allows it).

    >>> merge_ranges([(10, 20), (0, 5), (5, 8), (15, 30)])
    [(0, 8), (10, 30)]
    """
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1]:
            previous_start, previous_stop = merged[-1]
            merged[-1] = (previous_start, max(previous_stop, stop))
        else:
            merged.append((start, stop))
    return merged


def content_range(start: int, stop: int, size: int) -> str:
    """The ``Content-Range`` value of one half-open range (RFC 9110 §14.4).

    >>> content_range(0, 100, 1000)
    'bytes 0-99/1000'
    """
    return f"bytes {start}-{stop - 1}/{size}"


@dataclass(frozen=True)
class MultipartPlan:
    """The framing of a ``multipart/byteranges`` body, with its exact length known up front.

    The body is, for each part, ``heads[i]`` followed by the bytes ``ranges[i]`` of the
    representation, and then ``tail``.
    """

    content_type: str
    heads: tuple[bytes, ...]
    ranges: tuple[tuple[int, int], ...]
    tail: bytes
    length: int


def multipart_plan(
    ranges: Sequence[tuple[int, int]], size: int, content_type: str | None, boundary: str
) -> MultipartPlan:
    """Frame several ranges as ``multipart/byteranges`` (RFC 9110 §14.6, RFC 2046 §5.1.1).

    Every part carries ``Content-Range`` and, when the representation has one, its
    ``Content-Type``. The boundary must be a token that cannot occur in the file by chance
    (the caller draws it at random).

    >>> plan = multipart_plan([(0, 2), (8, 10)], 10, "text/plain", "B")
    >>> plan.heads[0]
    b'--B\\r\\nContent-Type: text/plain\\r\\nContent-Range: bytes 0-1/10\\r\\n\\r\\n'
    >>> plan.tail, plan.length
    (b'\\r\\n--B--\\r\\n', 139)
    """
    if not _TOKEN.fullmatch(boundary) or len(boundary) > 70:
        raise ValueError(f"boundary must be a token of at most 70 characters, got {boundary!r}")
    type_line = f"Content-Type: {content_type}\r\n" if content_type else ""
    heads = []
    for index, (start, stop) in enumerate(ranges):
        # The CRLF before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
        lead = "\r\n" if index else ""
        head = f"{lead}--{boundary}\r\n{type_line}Content-Range: {content_range(start, stop, size)}\r\n\r\n"
        heads.append(head.encode("latin-1"))
    tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
    length = sum(map(len, heads)) + sum(stop - start for start, stop in ranges) + len(tail)
    return MultipartPlan(
        content_type=f"multipart/byteranges; boundary={boundary}",
        heads=tuple(heads),
        ranges=tuple(ranges),
        tail=tail,
        length=length,
    )


# -- validators (RFC 9110 §8.8) ----------------------------------------------------------------


def make_etag(size: int, mtime_ns: int, encoding: str | None = None) -> str:
    """A strong entity tag from a file's size and modification time, distinct per encoding.

    The inode is left out so that servers behind one load balancer agree on the tag of the
    same file. A precompressed sibling is a different representation, so its tag differs
    (RFC 9110 §8.8.3.3).

    >>> make_etag(1000, 1_700_000_000_123_456_789), make_etag(1000, 1_700_000_000_123_456_789, "br")
    ('"17979cfe3d85cd15-3e8"', '"17979cfe3d85cd15-3e8-br"')
    """
    tag = f"{mtime_ns:x}-{size:x}"
    if encoding is not None:
        tag += f"-{encoding}"
    return f'"{tag}"'


def with_encoding(etag: str, encoding: str | None) -> str:
    """An entity tag given by the application, made distinct for a content encoding.

    >>> with_encoding('"v1"', "gzip"), with_encoding('W/"v1"', None)
    ('"v1-gzip"', 'W/"v1"')
    """
    if encoding is None or not etag.endswith('"'):
        return etag
    return f'{etag[:-1]}-{encoding}"'


def format_http_date(seconds: float) -> str:
    """An IMF-fixdate (RFC 9110 §5.6.7) for a POSIX timestamp, whole seconds.

    >>> format_http_date(784111777)
    'Sun, 06 Nov 1994 08:49:37 GMT'
    """
    return email.utils.formatdate(int(seconds), usegmt=True)


def parse_http_date(value: str) -> int | None:
    """A POSIX timestamp from an HTTP-date, or ``None`` when it is not one.

    Accepts the IMF-fixdate and the two obsolete formats (RFC 850, asctime) that RFC 9110
    §5.6.7 requires recipients to accept, as :mod:`email.utils` parses them (a two-digit year
    below 69 is read as 20xx).

    >>> parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), parse_http_date("Sun Nov  6 08:49:37 1994")
    (784111777, 784111777)
    >>> parse_http_date("yesterday") is None
    True
    """
    if len(value) > 64:  # no valid date is this long; do not hand the parser a megabyte
        return None
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    year, month, day, hour, minute, second = parsed[:6]
    try:
        # Builds only for a real calendar date and time (rejects day 32, hour 25, ...).
        moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.timezone.utc)
    except (ValueError, OverflowError):
        return None
    return calendar.timegm(moment.timetuple()) - (parsed[9] or 0)


@dataclass(frozen=True)
class Validators:
    """The validators of the selected representation: its entity tag and modification time.

    ``etag`` is the whole field value (``'"abc"'`` or ``'W/"abc"'``), or ``None``;
    ``last_modified`` is whole seconds since the epoch (what ``Last-Modified`` can say), or
    ``None``.
    """

    etag: str | None
    last_modified: int | None


def parse_entity_tags(value: str) -> list[str] | None:
    """The entity tags of an ``If-Match``/``If-None-Match`` value; ``None`` for ``*``.

    Tags that cannot be read are skipped; weak ones keep their ``W/`` prefix.

    >>> parse_entity_tags('"a", W/"b" , "c"'), parse_entity_tags(" * ")
    (['"a"', 'W/"b"', '"c"'], None)
    """
    if value.strip() == "*":
        return None
    tags = []
    position = 0
    while position < len(value):
        match = _ENTITY_TAG.match(value, position)
        if match is None:
            # Skip an unreadable member up to the next comma, and read on.
            comma = value.find(",", position)
            if comma < 0:
                break
            position = comma + 1
            continue
        weak, opaque = match.groups()
        tags.append(f"W/{opaque}" if weak else opaque)
        position = match.end()
    return tags


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def strong_match(tag: str, current: str | None) -> bool:
    """RFC 9110 §8.8.3.2 strong comparison: both strong and character-for-character equal."""
    return (
        current is not None and not tag.startswith("W/") and not current.startswith("W/") and tag == current
    )


def weak_match(tag: str, current: str | None) -> bool:
    """RFC 9110 §8.8.3.2 weak comparison: the opaque tags are equal, weak or not."""
    return current is not None and _opaque(tag) == _opaque(current)


def _single_date(values: Sequence[str]) -> int | None:
    # §13.1.3/§13.1.4: ignore the field when it is not a valid HTTP-date or repeated.
    if len(values) != 1:
        return None
    return parse_http_date(values[0])


def evaluate_preconditions(
    method: str,
    *,
    if_match: Sequence[str] = (),
    if_none_match: Sequence[str] = (),
    if_modified_since: Sequence[str] = (),
    if_unmodified_since: Sequence[str] = (),
    validators: Validators,
) -> int | None:
    """The status a conditional request gets (304 or 412), or ``None`` to go on.

    Each argument is the list of that field's lines in the request. The order is RFC 9110
    §13.2.2: ``If-Match`` (strong comparison), else ``If-Unmodified-Since``; then
    ``If-None-Match`` (weak comparison; 304 for GET and HEAD, 412 otherwise), else
    ``If-Modified-Since`` (GET and HEAD only). A date compares with ``Last-Modified`` at
    one-second resolution; a field that cannot be read is ignored.

    >>> v = Validators(etag='"a"', last_modified=784111777)
    >>> evaluate_preconditions("GET", if_none_match=['W/"a"'], validators=v)
    304
    >>> evaluate_preconditions("PUT", if_match=['"b"'], validators=v)
    412
    """
    safe = method in ("GET", "HEAD")
    if if_match:
        tags = parse_entity_tags(", ".join(if_match))
        # "*" matches any current representation, and a file being served is one.
        if tags is not None and not any(strong_match(tag, validators.etag) for tag in tags):
            return 412
    elif if_unmodified_since:
        date = _single_date(if_unmodified_since)
        if date is not None and validators.last_modified is not None and validators.last_modified > date:
            return 412
    if if_none_match:
        tags = parse_entity_tags(", ".join(if_none_match))
        if tags is None or any(weak_match(tag, validators.etag) for tag in tags):
            return 304 if safe else 412
    elif if_modified_since and safe:
        date = _single_date(if_modified_since)
        if date is not None and validators.last_modified is not None and validators.last_modified <= date:
            return 304
    return None


def if_range_allows(value: str, validators: Validators, now: float) -> bool:
    """Whether an ``If-Range`` value lets the Range apply (RFC 9110 §13.1.5).

    True for an entity tag that strongly matches the current one, or for a date exactly equal
    to ``Last-Modified`` when that date is a strong validator: at least one second before
    ``now`` (§8.8.2.2), so the file cannot have changed twice within it. Anything else (a weak
    tag, a mismatch, an unreadable value) means the whole representation is sent.

    >>> v = Validators(etag='"a"', last_modified=784111777)
    >>> if_range_allows('"a"', v, now=1e9), if_range_allows('W/"a"', v, now=1e9)
    (True, False)
    >>> if_range_allows("Sun, 06 Nov 1994 08:49:37 GMT", v, now=1e9)
    True
    """
    value = value.strip()
    if value.startswith('"') or value.startswith("W/"):
        return strong_match(value, validators.etag)
    date = parse_http_date(value)
    modified = validators.last_modified
    return date is not None and modified is not None and date == modified and modified + 1 <= now


# -- the whole decision -------------------------------------------------------------------------


@dataclass(frozen=True)
class FileDecision:
    """What to answer: the status, and for a 206 the ranges (half-open, merged, sorted)."""

    status_code: int
    ranges: tuple[tuple[int, int], ...] = ()


def decide(
    method: str,
    request_headers: Sequence[tuple[str, str]],
    *,
    validators: Validators,
    size: int | None,
    now: float,
    ranges_allowed: bool = True,
    max_ranges: int = MAX_RANGES,
    multiple_ranges_allowed: bool = True,
) -> FileDecision:
    """Decide the status of a file response to a request (the 200 case of the application).

    ``request_headers`` are (lower-case name, value) pairs. ``size`` is ``None`` when the
    length is unknown, which disables ranges, as does ``ranges_allowed=False`` (a source that
    cannot seek). With ``multiple_ranges_allowed=False`` a request for several disjoint ranges
    gets the whole representation. Returns 200, 206 (with ranges), 304 or 412; raises
    :class:`RangeNotSatisfiable` for a 416.

    >>> v = Validators(etag='"a"', last_modified=784111777)
    >>> decide("GET", [("range", "bytes=0-9")], validators=v, size=100, now=1e9)
    FileDecision(status_code=206, ranges=((0, 10),))
    """
    fields: dict[str, list[str]] = {}
    for name, value in request_headers:
        fields.setdefault(name, []).append(value)
    status = evaluate_preconditions(
        method,
        if_match=fields.get("if-match", ()),
        if_none_match=fields.get("if-none-match", ()),
        if_modified_since=fields.get("if-modified-since", ()),
        if_unmodified_since=fields.get("if-unmodified-since", ()),
        validators=validators,
    )
    if status is not None:
        return FileDecision(status)
    range_fields = fields.get("range", [])
    # RFC 9110 §14.2: GET is the only method with range semantics; others ignore the field.
    if method != "GET" or len(range_fields) != 1 or size is None or not ranges_allowed:
        return FileDecision(200)
    if_range = fields.get("if-range", [])
    if if_range and (len(if_range) != 1 or not if_range_allows(if_range[0], validators, now)):
        return FileDecision(200)
    ranges = parse_range(range_fields[0], size, max_ranges=max_ranges)
    if ranges is None or (len(ranges) > 1 and not multiple_ranges_allowed):
        return FileDecision(200)
    return FileDecision(206, tuple(ranges))
