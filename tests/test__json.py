"""The one JSON policy: every encoder writes the same bytes, or raises the same error, for a value.

The rules are tested from tables (each rule, each refusal, the depth bound), then a hypothesis
test throws values of every kind at every installed encoder and at FastAPI's
``jsonable_encoder``: the encoders must agree byte for byte (or on the error class and its
message), and what they write must read back as FastAPI's reference.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import inspect
import ipaddress
import json
import math
import re
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from fastapi.encoders import jsonable_encoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import AnyUrl, BaseModel, Field, RootModel, SecretStr

import streaming_responses
from streaming_responses import ServerSentEvent
from streaming_responses._json import ENCODERS, MAX_DEPTH, convert, float_text, json_text, normalize, pick
from streaming_responses._jsonlines import JSONLinesEncoder


def _installed() -> list[str]:
    names = []
    for name in ENCODERS:
        try:
            pick(name)
        except ImportError:  # pragma: no cover - every encoder is installed in the test environment
            continue
        names.append(name)
    return names


INSTALLED = _installed()


class Colour(enum.Enum):
    RED = "red"
    TWO = 2


class Size(enum.IntEnum):
    SMALL = 1


class Name(str, enum.Enum):
    ADA = "ada"


@dataclasses.dataclass
class Box:
    label: str
    content: Any
    _hidden: int = 0
    computed: int = dataclasses.field(default=5, init=False)


@dataclasses.dataclass(frozen=True)
class Key:
    x: int


@dataclasses.dataclass(slots=True)
class Slotted:
    x: int
    _y: str


def _with_extra(box: Box) -> Box:
    box.note = "not a field"  # type: ignore[attr-defined]
    return box


class Model(BaseModel):
    name: str = Field(alias="modelName")
    score: float
    extra: Any = None


class Plain:
    def __init__(self) -> None:
        self.visible = 1


def outcome(name: str, value: object) -> bytes | tuple[type[BaseException], str]:
    """What encoder ``name`` makes of ``value``: its bytes, or its error class and message."""
    try:
        return pick(name).dumps(value)
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)


def same_everywhere(value: object) -> bytes | tuple[type[BaseException], str]:
    """The one outcome every installed encoder has for ``value`` (asserted)."""
    outcomes = {name: outcome(name, value) for name in INSTALLED}
    first = outcomes[INSTALLED[0]]
    assert all(each == first for each in outcomes.values()), outcomes
    return first


# -- the rules, from a table ---------------------------------------------------------------

RULES: list[tuple[str, object, bytes | None]] = [
    ("a dict with str keys", {"a": [1, None, "é"]}, b'{"a":[1,null,"\xc3\xa9"]}'),
    ("a tuple is an array", (1, (2,)), b"[1,[2]]"),
    ("True, False, None", [True, False, None], b"[true,false,null]"),
    ("an int beyond 64 bits", 2**70, b"1180591620717411303424"),
    ("a negative int beyond 64 bits", -(2**64), b"-18446744073709551616"),
    ("a float, shortest form", [0.1, 1.5, -0.0, 1e15], b"[0.1,1.5,-0.0,1000000000000000.0]"),
    ("small floats", [1e-5, 1.2345e-5, 1.5e-7, 5e-324], b"[0.00001,0.000012345,1.5e-7,5e-324]"),
    ("large floats", [1e16, 1.5e300], b"[1e+16,1.5e+300]"),
    ("a Decimal without a fraction is an int", decimal.Decimal("2"), b"2"),
    ("a Decimal with a positive exponent is an int", decimal.Decimal("1E+3"), b"1000"),
    ("a Decimal with a fraction is a float", decimal.Decimal("1.50"), b"1.5"),
    ("a timedelta is its seconds", datetime.timedelta(seconds=3), b"3.0"),
    ("a negative timedelta", datetime.timedelta(microseconds=-1), b"-1e-6"),
    ("a naive datetime", datetime.datetime(2024, 5, 6, 7, 8, 9), b'"2024-05-06T07:08:09"'),
    (
        "an aware datetime keeps its offset",
        datetime.datetime(2024, 5, 6, 7, 8, 9, 10, tzinfo=datetime.timezone.utc),
        b'"2024-05-06T07:08:09.000010+00:00"',
    ),
    (
        "a datetime with an offset in seconds",
        datetime.datetime(2024, 5, 6, tzinfo=datetime.timezone(datetime.timedelta(seconds=30))),
        b'"2024-05-06T00:00:00+00:00:30"',
    ),
    ("a date", datetime.date(2024, 5, 6), b'"2024-05-06"'),
    (
        "a time with an offset in seconds",
        datetime.time(1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=5, seconds=3))),
        b'"01:02:00+05:00:03"',
    ),
    ("a UUID", uuid.UUID(int=7), b'"00000000-0000-0000-0000-000000000007"'),
    ("an enum is its value", [Colour.RED, Colour.TWO, Size.SMALL, Name.ADA], b'["red",2,1,"ada"]'),
    ("bytes are UTF-8 text", [b"caf\xc3\xa9", bytearray(b"x")], b'["caf\xc3\xa9","x"]'),
    ("a set is an array", [{1}, frozenset({2}), collections.deque([3])], b"[[1],[2],[3]]"),
    ("a path is its text", PurePosixPath("/a/b"), b'"/a/b"'),
    ("an IP address is its text", ipaddress.ip_address("::1"), b'"::1"'),
    ("a compiled pattern is its pattern", re.compile("a+"), b'"a+"'),
    (
        "a dataclass is its fields, in order, private and init=False ones too",
        Box("x", [1]),
        b'{"label":"x","content":[1],"_hidden":0,"computed":5}',
    ),
    ("a dataclass with an attribute set later still writes its fields only", _with_extra(Box("x", 1)), None),
    ("a dataclass with slots", Slotted(1, "a"), b'{"x":1,"_y":"a"}'),
    (
        "a pydantic model is model_dump(mode='json', by_alias=True)",
        Model(modelName="a", score=1.5, extra=decimal.Decimal("2.5")),
        b'{"modelName":"a","score":1.5,"extra":"2.5"}',
    ),
    ("a root model is its root", RootModel[list[int]]([1, 2]), b"[1,2]"),
    ("a mapping is an object", types.MappingProxyType({"a": 1}), b'{"a":1}'),
    ("an OrderedDict is an object", collections.OrderedDict(b=1, a=2), b'{"b":1,"a":2}'),
    (
        "date and timedelta subclasses",
        [type("When", (datetime.date,), {})(2024, 1, 2), type("Span", (datetime.timedelta,), {})(seconds=1)],
        b'["2024-01-02",1.0]',
    ),
    ("pydantic's own value types are their text", [SecretStr("pw"), AnyUrl("https://example.com/a")], None),
    (
        "str, int and float subclasses are their values",
        [Name.ADA, Size.SMALL, type("F", (float,), {})(2.5)],
        None,
    ),
    ("int, float, bool and None keys as json.dumps names them", {2: 0, 1.5e-5: 0, True: 0, None: 0}, None),
    (
        "enum, UUID, date and Decimal keys are converted",
        {Colour.RED: 0, uuid.UUID(int=1): 0, datetime.date(2024, 1, 2): 0, decimal.Decimal("3"): 0},
        b'{"red":0,"00000000-0000-0000-0000-000000000001":0,"2024-01-02":0,"3":0}',
    ),
]
RULES_EXPECTED = {
    "str, int and float subclasses are their values": b'["ada",1,2.5]',
    "a dataclass with an attribute set later still writes its fields only": (
        b'{"label":"x","content":1,"_hidden":0,"computed":5}'
    ),
    "pydantic's own value types are their text": b'["**********","https://example.com/a"]',
    "int, float, bool and None keys as json.dumps names them": b'{"2":0,"1.5e-05":0,"true":0,"null":0}',
}


@pytest.mark.parametrize(("rule", "value", "expected"), RULES, ids=[rule for rule, _, _ in RULES])
def test_each_rule_gives_the_same_bytes_with_every_encoder(
    rule: str, value: object, expected: bytes | None
) -> None:
    assert same_everywhere(value) == (expected if expected is not None else RULES_EXPECTED[rule])


def _cycle_list() -> object:
    loop: list[object] = []
    loop.append(loop)
    return loop


def _cycle_dict() -> object:
    loop: dict[str, object] = {}
    loop["self"] = {"again": loop}
    return loop


def _cycle_dataclass() -> object:
    box = Box("x", None)
    box.content = [box]
    return box


def nested(levels: int, leaf: object = 1) -> object:
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


REFUSALS: list[tuple[str, object, type[Exception], str]] = [
    (
        "NaN",
        {"x": [math.nan]},
        ValueError,
        r"nan is NaN or an infinity, which JSON cannot represent \(at value\['x'\]\[0\]\)",
    ),
    ("infinity", math.inf, ValueError, "inf is NaN or an infinity"),
    ("minus infinity", (1, -math.inf), ValueError, r"-inf is NaN or an infinity.*\[1\]"),
    ("a NaN Decimal", decimal.Decimal("NaN"), ValueError, r"Decimal\('NaN'\) is NaN or an infinity"),
    ("a signalling NaN Decimal", decimal.Decimal("sNaN"), ValueError, "is NaN or an infinity"),
    ("an infinite Decimal", decimal.Decimal("-Infinity"), ValueError, "is NaN or an infinity"),
    ("a Decimal beyond float range", decimal.Decimal("1" + "0" * 400 + ".5"), ValueError, "inf is NaN"),
    ("a NaN in a dataclass", Box("x", math.nan), ValueError, r"nan is NaN .*\['content'\]"),
    (
        "a NaN in a pydantic model",
        Model(modelName="a", score=math.nan),
        ValueError,
        r"nan is NaN .*\['score'\]",
    ),
    ("a NaN key", {math.nan: 1}, ValueError, "the dict key nan is NaN or an infinity"),
    ("a complex number", [1 + 2j], TypeError, r"a complex number \(\(1\+2j\)\) is not JSON serializable"),
    (
        "a tuple key",
        {(1, 2): 3},
        TypeError,
        r"a dict key must be a str, int, float, bool or None .* not tuple",
    ),
    ("a frozenset key", {frozenset(): 3}, TypeError, "not frozenset"),
    ("a dataclass key", {Key(1): 3}, TypeError, "not Key"),
    (
        "a key that fails to convert",
        {b"\xff": 3},
        ValueError,
        r"dict key: bytes that are not UTF-8 .*\[b'\\xff'\]",
    ),
    ("a complex key", {1j: 3}, TypeError, "dict key: a complex number"),
    (
        "two keys with one name",
        {1: "a", "1": "b"},
        ValueError,
        "two keys of a dict become the same JSON name",
    ),
    ("an enum key and its value", {Colour.RED: 1, "red": 2}, ValueError, "the same JSON name"),
    ("a generator", {"g": (n for n in range(3))}, TypeError, "a generator is not JSON serializable"),
    ("an object", object(), TypeError, "an object of type object is not JSON serializable"),
    ("an object with attributes", Plain(), TypeError, "an object of type Plain is not JSON serializable"),
    ("bytes that are not UTF-8", [b"\xff"], ValueError, "bytes that are not UTF-8 text"),
    ("a lone surrogate", {"a": "\ud800"}, ValueError, "a str in the value holds a lone surrogate"),
    ("a list that holds itself", _cycle_list(), ValueError, "contains a reference cycle"),
    ("a dict that holds itself", _cycle_dict(), ValueError, "contains a reference cycle"),
    ("a dataclass that holds itself", _cycle_dataclass(), ValueError, "contains a reference cycle"),
    ("too deep", nested(MAX_DEPTH + 1), ValueError, f"nested deeper than {MAX_DEPTH} levels"),
    ("an int with too many digits", 10**5000, ValueError, "an int too large to write"),
    (
        "a Decimal with too many digits",
        decimal.Decimal("1E+999999999"),
        ValueError,
        "more digits than Python",
    ),
]


@pytest.mark.parametrize(
    ("case", "value", "error", "message"), REFUSALS, ids=[case for case, _, _, _ in REFUSALS]
)
def test_each_refusal_is_the_same_error_with_every_encoder(
    case: str, value: object, error: type[Exception], message: str
) -> None:
    result = same_everywhere(value)
    assert isinstance(result, tuple), result
    assert result[0] is error
    assert re.search(message, result[1]), result[1]


@pytest.mark.parametrize(
    "leaf", [1, decimal.Decimal(1), Box("x", 1), {"a": 1}], ids=["int", "Decimal", "dataclass", "dict"]
)
def test_the_depth_bound_is_the_same_for_every_encoder(leaf: object) -> None:
    # A leaf that is itself an object counts as a level, as it does in orjson and pydantic-core.
    levels = MAX_DEPTH if not isinstance(leaf, (Box, dict)) else MAX_DEPTH - 1
    inside = same_everywhere(nested(levels, leaf))
    assert isinstance(inside, bytes)
    assert json.loads(inside) is not None
    too_deep = same_everywhere(nested(levels + 1, leaf))
    assert isinstance(too_deep, tuple)
    assert too_deep[0] is ValueError


def test_a_value_nested_deeper_than_the_stack_allows_is_a_value_error() -> None:
    # As if the encoder were called from deep inside an application: little stack is left.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 120)
    try:
        with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
            normalize(nested(100, Box("x", 1)))
    finally:
        sys.setrecursionlimit(limit)


def test_float_text_is_the_shortest_form_the_fast_encoders_write() -> None:
    assert [float_text(x) for x in (1.0, 1e-5, -1.5e-5, 1.5e-6, 1e-10, 1e16, 0.3)] == [
        "1.0",
        "0.00001",
        "-0.000015",
        "1.5e-6",
        "1e-10",
        "1e+16",
        "0.3",
    ]


def test_convert_turns_one_value_and_leaves_what_it_holds_to_the_encoder() -> None:
    box = Box("x", decimal.Decimal("1.5"))
    assert convert(box) == {"label": "x", "content": decimal.Decimal("1.5"), "_hidden": 0, "computed": 5}
    assert normalize(box) == {"label": "x", "content": 1.5, "_hidden": 0, "computed": 5}
    plain = {"a": [1, "b"]}
    assert normalize(plain) is plain  # plain data is used as it is, not copied


def test_a_long_way_to_a_refused_value_is_shortened_in_the_message() -> None:
    value = nested(40, {"key": math.nan})
    with pytest.raises(ValueError, match=r"\(at value\[0\]\[0\].*\.\.\..*\['key'\]\)") as info:
        normalize(value)
    assert len(str(info.value)) < 300


def test_an_error_a_model_raises_while_dumping_is_a_value_error_with_every_encoder() -> None:
    result = same_everywhere(Model(modelName="a", score=1.0, extra=b"\xff"))
    assert isinstance(result, tuple)
    assert result[0] is ValueError


def test_unknown_encoders_are_refused_and_auto_takes_the_fastest_installed() -> None:
    with pytest.raises(ValueError, match="encoder must be 'auto' or one of"):
        pick("simdjson")
    assert pick().name == INSTALLED[0] == "orjson"


@pytest.fixture
def no_cached_encoders() -> Iterator[None]:
    pick.cache_clear()
    yield
    pick.cache_clear()


@pytest.mark.usefixtures("no_cached_encoders")
def test_a_missing_encoder_is_named_with_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)
    monkeypatch.setitem(sys.modules, "pydantic_core", None)
    with pytest.raises(ImportError, match=r"streaming-responses\[orjson\]"):
        pick("orjson")
    with pytest.raises(ImportError, match=r"streaming-responses\[pydantic\]"):
        pick("pydantic-core")
    assert pick().name == "json"
    assert json_text({"d": decimal.Decimal("2")}) == '{"d":2}'


def test_event_data_and_json_lines_items_are_the_same_json() -> None:
    value = {"when": datetime.date(2024, 1, 2), "box": Box("x", 1.5e-6), "n": 2**70}
    lines = JSONLinesEncoder()
    lines.add(value)
    assert ServerSentEvent(value).data_text == json_text(value)
    assert lines.finish() == json_text(value).encode() + b"\n"


# -- every kind of value, against every encoder and FastAPI --------------------------------

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
offsets = st.sampled_from(
    [
        None,
        datetime.timezone.utc,
        datetime.timezone(datetime.timedelta(hours=-3, minutes=-30)),
        datetime.timezone(datetime.timedelta(seconds=30)),
    ]
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**70) | st.integers(max_value=-(2**63), min_value=-(2**70)),
    st.floats(),
    st.floats(min_value=1e-9, max_value=1e-4) | st.floats(min_value=1e15, max_value=1e22),
    st.text(),
    st.text(alphabet=surrogates, min_size=1, max_size=2),
    st.decimals(),
    st.datetimes(timezones=offsets),
    st.dates(),
    st.times(timezones=offsets),
    st.timedeltas(),
    st.uuids(),
    st.sampled_from(Colour) | st.sampled_from(Size) | st.sampled_from(Name),
    st.binary(max_size=6),
    st.complex_numbers(max_magnitude=10),
)
keys = st.one_of(
    st.text(max_size=4),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=True, width=16),
    st.booleans(),
    st.none(),
    st.tuples(st.integers(max_value=3)),
    st.sampled_from(Colour),
    st.uuids(),
    st.dates(),
)


def _with_cycle(value: list[Any]) -> list[Any]:
    value.append(value)
    return value


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(keys, children, max_size=4),
        st.builds(Box, label=st.text(max_size=3), content=children),
        st.builds(Model, modelName=st.text(max_size=3), score=st.floats(), extra=children),
        st.lists(children, max_size=2).map(_with_cycle),
        # Small ints: FastAPI copies a dataclass's fields, and a copied set of these iterates
        # in the same order.
        st.frozensets(st.integers(min_value=0, max_value=6), max_size=3),
    )


values = st.recursive(scalars, _containers, max_leaves=12)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_every_encoder_writes_the_same_bytes_or_raises_the_same_error(value: object) -> None:
    same_everywhere(value)


def _fastapi_text(value: object) -> object:
    return json.loads(json.dumps(jsonable_encoder(value, sqlalchemy_safe=False)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_what_the_encoders_write_reads_back_as_fastapis_jsonable_encoder_result(value: object) -> None:
    result = same_everywhere(value)
    if isinstance(result, bytes):
        assert json.loads(result) == _fastapi_text(value)


def test_the_policy_and_event_encoding_import_neither_starlette_nor_the_core() -> None:
    # A publisher process needs only events: load the two modules without the package's
    # front door (which imports every response class) and see what came with them.
    package = Path(streaming_responses.__file__).parent
    script = f"""
import sys, types
package = types.ModuleType("streaming_responses")
package.__path__ = [{str(package)!r}]
sys.modules["streaming_responses"] = package
from streaming_responses._events import ServerSentEvent
print(ServerSentEvent({{"d": __import__("decimal").Decimal("2")}}).encode())
watched = ("starlette", "fastapi", "streaming_responses.")
print(sorted(name for name in sys.modules if name.startswith(watched)))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    encoded, modules = done.stdout.splitlines()
    assert encoded == repr(b'data: {"d":2}\n\n')
    assert modules == repr(["streaming_responses._events", "streaming_responses._json"])
