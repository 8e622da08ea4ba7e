"""JSON: the one policy for turning values into JSON text, whichever encoder writes it.

This module owns the value-to-JSON rules of the package (server-sent event data and JSON Lines
items alike) and the three encoders that apply them: orjson, pydantic-core and the standard
library's ``json``. FastAPI's ``jsonable_encoder`` is the reference for what a value becomes;
where we differ (NaN and infinities are refused, nothing is guessed from an object's
``__dict__``, keys never collide) docs/json.md says so.

The rule that keeps it simple: the rules live in two functions. :func:`convert` turns one value
JSON does not know into one it does (a ``Decimal`` into a number, a dataclass into a dict);
:func:`normalize` turns a whole value into plain JSON data (dicts with ``str`` keys, lists,
``str``, ``int``, finite ``float``, ``bool``, ``None``), checking every rule on the way: keys,
NaN, cycles, depth. An encoder either hands :func:`convert` to a serializer that provably
writes everything else as :func:`normalize` would (orjson, with datetimes and dataclasses
passed through to :func:`convert`), or it serializes the output of :func:`normalize`. Whatever
a fast encoder refuses, or cannot tell apart (orjson writes NaN as ``null``), is settled by
:func:`normalize`, whose errors are the errors of every encoder.

The encoders were chosen by measurement (one small dict, per item, on the development machine):
orjson 0.22 µs, pydantic-core's ``to_json`` 0.62 µs, the standard library 3.9 µs. ``"auto"``
takes orjson when it is installed (the ``orjson`` extra), pydantic-core otherwise (it comes
with FastAPI), and ``json`` when neither is there. Under the policy orjson keeps its speed on
plain data; pydantic-core and the standard library pay for :func:`normalize` in Python
(docs/json.md has the figures).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import functools
import ipaddress
import json
import re
import sys
import types
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePath
from typing import Any, NamedTuple

#: The encoders, fastest first; ``"auto"`` takes the first one installed.
ENCODERS = ("orjson", "pydantic-core", "json")

#: Arrays and objects nested deeper than this are refused (orjson's and pydantic-core's limit).
MAX_DEPTH = 254

#: Ints inside this range need no check; beyond it Python's digit limit applies.
_SMALL_INT = 2**64

_PYDANTIC_HINT = "pip install 'streaming-responses[pydantic]'"
_ORJSON_HINT = "pip install 'streaming-responses[orjson]'"


# -- the rules ---------------------------------------------------------------------------


def float_text(value: float) -> str:
    """The JSON text of a finite float: the shortest form that reads back as the same float.

    Written as orjson and pydantic-core write it: plain from 1e-5 up to 1e16, with an exponent
    outside (``1e-7``, ``1e+16``), where Python's ``repr`` writes ``1e-05``.

    >>> float_text(1.5), float_text(0.00001), float_text(1.5e-7), float_text(1e16)
    ('1.5', '0.00001', '1.5e-7', '1e+16')
    """
    text = float.__repr__(value)
    if "e-0" not in text:
        return text
    mantissa, exponent = text.split("e-")
    if exponent == "05":
        sign = "-" if mantissa.startswith("-") else ""
        return sign + "0.0000" + mantissa.lstrip("-").replace(".", "")
    return mantissa + "e-" + exponent[1:]


def _decimal(value: decimal.Decimal) -> int | float:
    # FastAPI's rule: an int when the exponent is not negative (Decimal("2"), Decimal("1E+3")),
    # a float otherwise. NaN and infinities fail like float ones.
    if not value.is_finite():
        raise ValueError(f"Decimal({str(value)!r}) is NaN or an infinity, which JSON cannot represent")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # a finite Decimal has an int exponent
    if exponent < 0:
        return float(value)
    limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
    if limit and value.adjusted() >= limit:  # refuse before building a huge int (1E+999999)
        raise ValueError(f"Decimal({str(value)!r}) has more digits than Python writes in an int ({limit})")
    return int(value)


def _bytes_text(value: bytes | bytearray) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"bytes that are not UTF-8 text cannot be JSON ({exc.reason} at {exc.start})"
        ) from None


def _refuse_generator(value: object) -> object:
    raise TypeError("a generator is not JSON serializable: encoding would consume it; pass a list instead")


def _refuse_complex(value: complex) -> object:
    raise TypeError(f"a complex number ({value!r}) is not JSON serializable: JSON has no such type")


def _refuse(kind: type) -> Callable[[Any], object]:
    def refuse(value: object) -> object:
        raise TypeError(
            f"an object of type {kind.__name__} is not JSON serializable; "
            "use a dict, a dataclass or a pydantic model"
        )

    return refuse


def _model(value: Any) -> object:
    # What model_dump(mode="json", by_alias=True) returns (FastAPI's call), without the
    # 0.4 µs its Python wrapper adds per model.
    return type(value).__pydantic_serializer__.to_python(value, mode="json", by_alias=True)


def _fields(kind: type) -> Callable[[Any], object]:
    names = tuple(field.name for field in dataclasses.fields(kind))

    def fields(value: object) -> object:
        # The instance's own dict when it holds exactly the fields, in order (the common case,
        # and a third of the time); otherwise each field read as an attribute.
        own = getattr(value, "__dict__", None)
        if own is not None and tuple(own) == names:
            return own
        return {name: getattr(value, name) for name in names}

    return fields


def _enum_value(value: enum.Enum) -> object:
    return value.value


def _isoformat(value: datetime.date | datetime.time) -> str:
    return value.isoformat()


def _seconds(value: datetime.timedelta) -> float:
    return value.total_seconds()


def _pattern(value: re.Pattern[Any]) -> object:
    return value.pattern


def _dict_items(value: dict[Any, Any]) -> dict[Any, Any]:
    return dict(dict.items(value))


def _mapping_items(value: Mapping[Any, Any]) -> dict[Any, Any]:
    return dict(value.items())


#: The exact types converted by one function (the common case).
_BY_TYPE: dict[type, Callable[[Any], object]] = {
    datetime.datetime: datetime.datetime.isoformat,
    datetime.date: datetime.date.isoformat,
    datetime.time: datetime.time.isoformat,
    datetime.timedelta: datetime.timedelta.total_seconds,
    decimal.Decimal: _decimal,
    uuid.UUID: str,
    set: list,
    frozenset: list,
    collections.deque: list,
    bytes: _bytes_text,
    bytearray: _bytes_text,
    complex: _refuse_complex,
    types.GeneratorType: _refuse_generator,
}

#: Subclasses and rarer types, in FastAPI's order of precedence after models, dataclasses and
#: enums.
_BY_CLASS: tuple[tuple[type | tuple[type, ...], Callable[[Any], object]], ...] = (
    (str, str.__str__),
    (int, int.__index__),  # bool cannot be subclassed: this is an int subclass
    (float, float.__float__),
    (dict, _dict_items),
    (Mapping, _mapping_items),
    ((list, tuple, set, frozenset, collections.deque), list),
    ((datetime.date, datetime.time), _isoformat),  # a datetime is a date
    (datetime.timedelta, _seconds),
    (decimal.Decimal, _decimal),
    ((bytes, bytearray), _bytes_text),
    (
        (
            PurePath,
            uuid.UUID,
            ipaddress.IPv4Address,
            ipaddress.IPv4Interface,
            ipaddress.IPv4Network,
            ipaddress.IPv6Address,
            ipaddress.IPv6Interface,
            ipaddress.IPv6Network,
        ),
        str,
    ),
    (re.Pattern, _pattern),
    (complex, _refuse_complex),
)


def _pydantic_str_types() -> tuple[type, ...]:
    # pydantic's own value types that FastAPI writes as str(); looked up only when pydantic is
    # already imported (an instance of one exists), so nothing here imports pydantic.
    pydantic = sys.modules.get("pydantic")
    core = sys.modules.get("pydantic_core")
    found = [getattr(pydantic, name, None) for name in ("AnyUrl", "NameEmail", "SecretStr", "SecretBytes")]
    found += [getattr(core, name, None) for name in ("Url", "MultiHostUrl")]
    return tuple(kind for kind in found if isinstance(kind, type))


@functools.lru_cache(maxsize=1024)
def _rule(kind: type) -> Callable[[Any], object]:
    """How a value of type ``kind`` is converted: decided once per type."""
    exact = _BY_TYPE.get(kind)
    if exact is not None:
        return exact
    if getattr(kind, "__pydantic_serializer__", None) is not None and hasattr(kind, "model_dump"):
        return _model
    if dataclasses.is_dataclass(kind):
        return _fields(kind)
    if issubclass(kind, enum.Enum):
        return _enum_value
    for classes, rule in _BY_CLASS:
        if issubclass(kind, classes):
            return rule
    if issubclass(kind, _pydantic_str_types()):
        return str
    return _refuse(kind)


def convert(value: Any) -> object:
    """One value JSON does not know, as one it does (by FastAPI's ``jsonable_encoder`` rules).

    The result may still hold values to convert (a dataclass becomes a dict of its fields);
    the encoders convert those in turn. A type JSON cannot represent raises ``TypeError``.

    >>> convert(decimal.Decimal("2")), convert(datetime.timedelta(seconds=3))
    (2, 3.0)
    >>> convert(uuid.UUID(int=1))
    '00000000-0000-0000-0000-000000000001'
    """
    return _rule(type(value))(value)  # type: ignore[arg-type] # a type is hashable


# -- normalize: every rule, in plain Python ------------------------------------------------


class _Refused(Exception):
    """A rule refused a value; carries the way from the top to it (keys and indexes, inside out)."""

    def __init__(self, error: type[Exception], message: str) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.where: list[object] = []
        self.too_deep = False


def _key(key: object) -> str:
    """The member name for a dict key: str as it is; numbers, bools, None as their JSON text;
    other keys converted like values, which must then give one of those."""
    seen = 0
    while True:
        kind = type(key)
        if isinstance(key, str) and kind is str:
            return key
        if isinstance(key, bool):
            return "true" if key else "false"
        if key is None:
            return "null"
        if isinstance(key, int) and kind is int:
            return int.__repr__(key)
        if isinstance(key, float) and kind is float:
            if key - key != 0.0:
                raise _Refused(
                    ValueError, f"the dict key {key!r} is NaN or an infinity, which JSON cannot hold"
                )
            return float.__repr__(key)  # as json.dumps (and so FastAPI) writes a float key
        if isinstance(key, (tuple, list, dict, set, frozenset)) or dataclasses.is_dataclass(key) or seen > 8:
            raise _Refused(
                TypeError,
                "a dict key must be a str, int, float, bool or None (or convert to one), "
                f"not {kind.__name__} ({key!r:.60})",
            )
        try:
            key = convert(key)
        except (TypeError, ValueError) as exc:
            raise _Refused(
                type(exc) if isinstance(exc, TypeError) else ValueError, f"dict key: {exc}"
            ) from None
        seen += 1


#: Types of JSON scalars that need no check (int and float do: range, finiteness).
_LEAF_TYPES = frozenset({str, bool, type(None)})


def _plain(value: Any, depth: int) -> bool:
    """Whether ``value`` is plain JSON data already, which :func:`normalize` returns as it is.

    A check without copies, for the common case; a cycle of plain containers is not plain (it
    is too deep), so anything in doubt goes to the walk that names the problem.
    """
    kind = type(value)
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        for key in value:
            if type(key) is not str:
                return False
        return _plain_items(value.values(), depth + 1)
    if kind is list or kind is tuple:
        return depth < MAX_DEPTH and _plain_items(value, depth + 1)
    if kind in _LEAF_TYPES:
        return True
    if kind is int:
        return bool(-_SMALL_INT < value < _SMALL_INT)
    if kind is float:
        return bool(value - value == 0.0)  # False for NaN and infinities
    return False


def _plain_items(items: Iterable[Any], depth: int) -> bool:
    for item in items:
        kind = type(item)
        if kind in _LEAF_TYPES:
            continue
        if kind is int:
            if -_SMALL_INT < item < _SMALL_INT:
                continue
            return False
        if kind is float:
            if item - item == 0.0:
                continue
            return False
        if not _plain(item, depth):
            return False
    return True


def _walk(value: Any, depth: int, path: set[int] | None) -> Any:
    """``value`` as plain JSON data (``path``: ids of the containers above, when hunting cycles)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_SMALL_INT < value < _SMALL_INT:
            return value
        try:
            int.__repr__(value)  # Python's limit on the digits of an int (4300 by default)
        except ValueError as exc:
            raise _Refused(ValueError, f"an int too large to write: {exc}") from None
        return value
    if kind is float:
        if value - value == 0.0:
            return value
        raise _Refused(ValueError, f"{value!r} is NaN or an infinity, which JSON cannot represent")
    if path is not None:
        if id(value) in path:
            raise _Refused(ValueError, "the value contains a reference cycle (it contains itself)")
        path.add(id(value))
    try:
        if kind is dict or kind is list or kind is tuple:
            if depth >= MAX_DEPTH:
                refused = _Refused(ValueError, f"the value is nested deeper than {MAX_DEPTH} levels")
                refused.too_deep = True
                raise refused
            if kind is dict:
                return _object(value, depth + 1, path)
            return _array(value, depth + 1, path)
        try:
            converted = convert(value)
        except (TypeError, ValueError) as exc:
            raise _Refused(TypeError if isinstance(exc, TypeError) else ValueError, str(exc)) from None
        return _walk(converted, depth, path)
    finally:
        if path is not None:
            path.discard(id(value))


def _object(value: dict[Any, Any], depth: int, path: set[int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    renamed = False
    key: object = None
    try:
        for key, item in value.items():
            if type(key) is str:
                out[key] = _walk(item, depth, path)
            else:
                renamed = True
                out[_key(key)] = _walk(item, depth, path)
    except _Refused as refused:
        refused.where.append(key)
        raise
    if renamed and len(out) != len(value):
        raise _Refused(ValueError, f"two keys of a dict become the same JSON name: {list(value)!r:.120}")
    return out


def _array(value: list[Any] | tuple[Any, ...], depth: int, path: set[int] | None) -> list[Any]:
    index = 0
    try:
        out = []
        for index, item in enumerate(value):  # noqa: B007 - the index names a refused item
            out.append(_walk(item, depth, path))
    except _Refused as refused:
        refused.where.append(index)
        raise
    return out


def _where(refused: _Refused) -> str:
    if not refused.where:
        return ""
    steps = "".join(f"[{step!r:.40}]" for step in reversed(refused.where))
    if len(steps) > 120:
        steps = steps[:60] + "..." + steps[-40:]
    return f" (at value{steps})"


def normalize(value: object) -> Any:
    """``value`` as plain JSON data, every rule checked: the reference the encoders agree with.

    Raises ``TypeError`` for a type JSON cannot represent (a complex number, a tuple as a dict
    key, an arbitrary object) and ``ValueError`` for a value it cannot (NaN, an infinity,
    bytes that are not UTF-8, a reference cycle, nesting deeper than :data:`MAX_DEPTH`); the
    message says where in the value.

    >>> normalize({"d": decimal.Decimal("2"), 1: (True, None)})
    {'d': 2, '1': [True, None]}
    """
    try:
        return _normalized(value)
    except _Refused as refused:
        if refused.too_deep:
            # Too deep, or a cycle? Walk again keeping the ids of the containers above.
            try:
                _walk(value, 0, set())
            except _Refused as again:
                refused = again
            except RecursionError:
                pass
        raise refused.error(refused.message + _where(refused)) from None


def _normalized(value: object) -> Any:
    try:
        if _plain(value, 0):
            return value
        return _walk(value, 0, None)
    except RecursionError:  # nested deeper than the stack of the caller allows
        refused = _Refused(ValueError, f"the value is nested deeper than {MAX_DEPTH} levels")
        refused.too_deep = True
        raise refused from None


# -- writing plain data ------------------------------------------------------------------


_STDLIB_ENCODE = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
).encode
#: A number written with an exponent Python pads (1e-05), outside strings; strings are matched
#: whole so that their contents are skipped.
_PADDED_FLOAT = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?e-0\d')


def _refloat(match: re.Match[str]) -> str:
    token = match.group()
    return token if token.startswith('"') else float_text(float(token))


def _stdlib_plain(data: object) -> bytes:
    """Plain JSON data (the output of :func:`normalize`) written by the standard library."""
    text = _STDLIB_ENCODE(data)
    if "e-0" in text:  # rare: a float below 1e-5, or those characters in a string
        text = _PADDED_FLOAT.sub(_refloat, text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise _not_unicode() from None


def _not_unicode() -> ValueError:
    return ValueError("a str in the value holds a lone surrogate, which UTF-8 (and so JSON) cannot carry")


def stdlib_dumps(value: object) -> bytes:
    """Compact UTF-8 JSON of ``value`` by the standard library (the slowest encoder).

    >>> stdlib_dumps({"a": [1, 2.5e-6], "b": decimal.Decimal("2")})
    b'{"a":[1,2.5e-6],"b":2}'
    """
    return _stdlib_plain(normalize(value))


def _pydantic_dumps() -> Callable[[object], bytes]:
    from pydantic_core import to_json

    def pydantic_dumps(value: object) -> bytes:
        # pydantic-core writes Decimals as strings and timedeltas as durations, with no option
        # to change it, so it only ever sees plain data.
        data = normalize(value)
        try:
            return to_json(data)
        except ValueError:  # PydanticSerializationError: a lone surrogate in a str
            raise _not_unicode() from None

    return pydantic_dumps


def _orjson_dumps(line: bool) -> Callable[[object], bytes]:
    import orjson

    dumps = orjson.dumps
    failed = orjson.JSONEncodeError
    # orjson's own datetime and dataclass output differs from the rules (it drops fields that
    # start with "_", for one): both go through convert(). orjson writes NaN as null, so a
    # null is checked; it refuses ints beyond 64 bits and non-str keys, which the slow path
    # writes.
    options = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
    if line:
        options |= orjson.OPT_APPEND_NEWLINE
    newline = b"\n" if line else b""
    # A compiled search: `b"null" in out` first tries the needle as an int and pays for a
    # TypeError on every call, which doubled the cost of an item.
    has_null = re.compile(b"null").search

    def exact(value: object) -> bytes:
        data = normalize(value)
        try:
            return dumps(data, None, options)
        except failed:  # an int beyond 64 bits, or a lone surrogate: the standard library decides
            return _stdlib_plain(data) + newline

    def orjson_dumps(value: object) -> bytes:
        try:
            out = dumps(value, convert, options)
        except failed:
            return exact(value)
        if has_null(out):
            normalize(value)  # raises if a null was a NaN or an infinity
        return out

    return orjson_dumps


class Encoder(NamedTuple):
    """A JSON encoder by name: ``dumps(value)`` gives compact UTF-8 JSON, ``line(value)`` the
    same with a newline; both raise ``TypeError``/``ValueError`` as :func:`normalize` does."""

    name: str
    dumps: Callable[[object], bytes]
    line: Callable[[object], bytes]


def _with_newline(dumps: Callable[[object], bytes]) -> Callable[[object], bytes]:
    def line(value: object) -> bytes:
        return dumps(value) + b"\n"

    return line


@functools.cache
def pick(name: str = "auto") -> Encoder:
    """The encoder called ``name`` (or, for ``"auto"``, the fastest installed).

    >>> pick("json").dumps({"t": datetime.timedelta(seconds=3)})
    b'{"t":3.0}'
    """
    if name not in ("auto", *ENCODERS):
        raise ValueError(f"encoder must be 'auto' or one of {ENCODERS}, not {name!r}")
    if name in ("auto", "orjson"):
        try:
            return Encoder("orjson", _orjson_dumps(line=False), _orjson_dumps(line=True))
        except ImportError:
            if name == "orjson":
                raise ImportError(f"the orjson encoder needs orjson: {_ORJSON_HINT}") from None
    if name in ("auto", "pydantic-core"):
        try:
            dumps = _pydantic_dumps()
        except ImportError:
            if name == "pydantic-core":
                raise ImportError(f"the pydantic-core encoder needs pydantic: {_PYDANTIC_HINT}") from None
        else:
            return Encoder("pydantic-core", dumps, _with_newline(dumps))
    return Encoder("json", stdlib_dumps, _with_newline(stdlib_dumps))


def json_text(value: object) -> str:
    """The compact JSON text of ``value`` (UTF-8, no spaces), as event data is encoded.

    >>> json_text({"a": [1, 2]})
    '{"a":[1,2]}'
    """
    return pick().dumps(value).decode("utf-8")
