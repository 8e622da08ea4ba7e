"""CSVResponse and its encoder: quoting, headers, BOM, charset, formula escape, errors, FastAPI."""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.routing import Route

from streaming_responses import CSVResponse
from streaming_responses._csv import CSVEncoder, escape_formula
from streaming_responses._records import AsyncBatchProducer, RowReader, record_fields, sync_batches
from streaming_responses.testing import StreamAborted, StreamingTestClient

#: Python's csv module writes a NUL character from 3.11 on; before, it refuses it (and so do we).
NUL_WRITABLE = sys.version_info >= (3, 11)


def app_with(make: Any) -> Starlette:
    async def endpoint(request: Request) -> CSVResponse:
        response: CSVResponse = make()
        return response

    return Starlette(routes=[Route("/", endpoint)])


async def get(make: Any, **client: Any) -> Any:
    return await StreamingTestClient(app_with(make), **client).get("/")


@dataclasses.dataclass
class Point:
    x: int
    label: str | None


class Item(BaseModel):
    id: int
    name: str


# -- the encoder, without an event loop ----------------------------------------------------


def test_mappings_take_their_header_from_the_first_mapping() -> None:
    encoder = CSVEncoder()
    encoder.add({"a": 1, "b": "x"})
    encoder.add({"b": "y"})
    assert encoder.finish() == b"a,b\r\n1,x\r\n,y\r\n"


def test_columns_give_the_header_and_order_and_none_is_an_empty_cell() -> None:
    encoder = CSVEncoder(columns=["b", "a"])
    encoder.add({"a": None, "b": 2})
    encoder.add([3, None])
    assert encoder.finish() == b"b,a\r\n2,\r\n3,\r\n"


def test_an_empty_table_with_columns_is_just_the_header_and_header_false_omits_it() -> None:
    assert CSVEncoder(columns=["a"]).finish() == b"a\r\n"
    encoder = CSVEncoder(columns=["a"], header=False)
    encoder.add({"a": 1})
    assert encoder.finish() == b"1\r\n"


def test_dataclasses_and_pydantic_models_are_written_by_their_fields() -> None:
    encoder = CSVEncoder()
    encoder.add(Point(1, None))
    encoder.add(Point(2, "two"))
    assert encoder.finish() == b"x,label\r\n1,\r\n2,two\r\n"
    encoder = CSVEncoder()
    encoder.add(Item(id=1, name='a "b", c'))
    assert encoder.finish() == b'id,name\r\n1,"a ""b"", c"\r\n'
    assert record_fields(Point) is None


def test_sequence_rows_have_no_header_unless_columns_are_given() -> None:
    encoder = CSVEncoder()
    encoder.add(("a", 1))
    assert encoder.finish() == b"a,1\r\n"


def test_dialect_and_format_parameters_are_honoured() -> None:
    encoder = CSVEncoder(delimiter=";", lineterminator="\n")
    encoder.add(["1,5", "a;b"])
    assert encoder.finish() == b'1,5;"a;b"\n'
    encoder = CSVEncoder(dialect="excel-tab")
    encoder.add(["a", "b"])
    assert encoder.finish() == b"a\tb\r\n"


def test_bad_dialects_and_encodings_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="dialect"):
        CSVEncoder(dialect="no-such-dialect")
    with pytest.raises(ValueError, match="encoding"):
        CSVEncoder(encoding="no-such-codec")
    with pytest.raises(TypeError, match="columns"):
        RowReader("abc")
    with pytest.raises(ValueError, match="duplicate"):
        RowReader(["a", "a"])


def test_bom_is_written_once_and_never_twice_by_a_self_marking_codec() -> None:
    encoder = CSVEncoder(bom=True)
    encoder.add(["é"])
    first = encoder.take()
    encoder.add(["x"])
    assert first == b"\xef\xbb\xbf\xc3\xa9\r\n"
    assert encoder.finish() == b"x\r\n"
    encoder = CSVEncoder(bom=True, encoding="utf-16")
    encoder.add(["a"])
    body = encoder.take()
    encoder.add(["b"])
    body += encoder.finish()
    assert body.decode("utf-16") == "a\r\nb\r\n"
    assert body.count(b"\xff\xfe") == 1


def test_formula_escape_prefixes_text_cells_and_leaves_numbers() -> None:
    for start in ("=", "+", "-", "@", "\t", "\r", "\x00"):
        assert escape_formula(start + "1") == "'" + start + "1"
    assert escape_formula(-5) == -5
    assert escape_formula(None) is None
    assert escape_formula("safe") == "safe"
    encoder = CSVEncoder(escape_formulas=True, columns=["=h"])
    encoder.add(["=HYPERLINK(1)", -2, "ok"])
    assert list(csv.reader(io.StringIO(encoder.finish().decode()))) == [
        ["'=h"],
        ["'=HYPERLINK(1)", "-2", "ok"],
    ]


def test_bad_rows_are_named_by_their_position() -> None:
    encoder = CSVEncoder(columns=["a"])
    encoder.add({"a": 1})
    with pytest.raises(TypeError, match="row 2 is a str"):
        encoder.add("abc")
    with pytest.raises(TypeError, match="row 2 is a bytes"):
        encoder.add(b"abc")
    with pytest.raises(ValueError, match="row 2 has the key 'b'"):
        encoder.add({"a": 1, "b": 2})
    with pytest.raises(TypeError, match="row 2 is a int"):
        encoder.add(5)
    with pytest.raises(ValueError, match=r"row 2 .* has no field 'a'"):
        encoder.add(Item(id=1, name="x"))


@pytest.mark.skipif(NUL_WRITABLE, reason="the csv module writes NUL from Python 3.11 on")
def test_before_python_3_11_a_nul_in_a_cell_is_an_error_naming_the_row() -> None:
    encoder = CSVEncoder()
    encoder.add(["fine"])
    with pytest.raises(ValueError, match="row 2 cannot be written as CSV"):
        encoder.add(["a\x00b"])


def test_csv_errors_and_unencodable_text_name_the_rows() -> None:
    encoder = CSVEncoder(quoting=csv.QUOTE_NONE, escapechar=None)
    with pytest.raises(ValueError, match="row 1 cannot be written"):
        encoder.add(["a,b"])
    encoder = CSVEncoder(encoding="ascii")
    encoder.add(["fine"])
    encoder.add(["naïve"])
    with pytest.raises(ValueError, match="rows 1 to 2 cannot be encoded as ascii"):
        encoder.take()


def test_add_many_writes_what_add_writes_one_row_at_a_time() -> None:
    rows: list[Any] = [{"x": 1, "label": "a"}, [2, 'b "q"'], (3, None), Point(4, "d,e"), ["=5", "f"]]
    for options in ({}, {"escape_formulas": True}, {"delimiter": ";"}):
        one_by_one = CSVEncoder(**options)
        for row in rows:
            one_by_one.add(row)
        grouped = CSVEncoder(**options)
        grouped.add_many(rows[:2])
        grouped.add_many(rows[2:])
        assert grouped.finish() == one_by_one.finish()
        assert grouped.count == one_by_one.count == 5
    plain = CSVEncoder(columns=("a", "b"))
    plain.add_many([(1, 2), [3, 4]])
    plain.add_many([])
    assert plain.finish() == b"a,b\r\n1,2\r\n3,4\r\n"
    assert plain.count == 2


def test_a_bad_row_in_a_group_is_named_by_its_position_and_nothing_after_it_is_written() -> None:
    encoder = CSVEncoder(quoting=csv.QUOTE_NONE, escapechar=None)
    encoder.add_many([["a"], ["b"]])
    with pytest.raises(ValueError, match="row 5 cannot be written"):
        encoder.add_many([["c"], ["d"], ["e,f"], ["g"]])
    assert encoder.take() == b"a\r\nb\r\nc\r\nd\r\n"
    mixed = CSVEncoder()
    with pytest.raises(TypeError, match="row 3 is a str"):
        mixed.add_many([[1], (2,), "three", [4]])


def test_sync_batches_name_a_bad_row_deep_in_the_source() -> None:
    rows: list[Any] = [[n] for n in range(300)]
    rows[199] = "not a row"
    with pytest.raises(TypeError, match="row 200 is a str"):
        list(sync_batches(rows, CSVEncoder()))


def test_sync_batches_hand_over_full_batches_and_close_the_source() -> None:
    closed = []

    def rows() -> Iterator[list[int]]:
        try:
            yield from ([n] for n in range(1000))
        finally:
            closed.append(True)

    batches = list(sync_batches(rows(), CSVEncoder(), batch_size=1000))
    assert b"".join(batches) == b"".join(b"%d\r\n" % n for n in range(1000))
    assert 3 <= len(batches) <= 6
    assert closed == [True]


cells = st.one_of(
    st.none(),
    st.text(
        alphabet=st.characters(
            blacklist_categories=["Cs"], blacklist_characters="" if NUL_WRITABLE else "\x00"
        ),
        max_size=20,
    ),
    st.integers(),
    st.floats(allow_nan=False),
)
dialects = st.sampled_from(
    [{"dialect": "excel"}, {"dialect": "excel-tab"}, {"dialect": "unix"}, {"delimiter": ";"}]
)


@settings(max_examples=150, deadline=None)
@given(table=st.lists(st.lists(cells, min_size=1, max_size=6), max_size=20), options=dialects)
def test_any_table_reads_back_identically_with_csv_reader(
    table: list[list[Any]], options: dict[str, Any]
) -> None:
    encoder = CSVEncoder(**options)
    for row in table:
        encoder.add(row)
    text = encoder.finish().decode("utf-8")
    read_options = dict(options)
    read = list(csv.reader(io.StringIO(text, newline=""), **read_options))
    expected = [["" if cell is None else str(cell) for cell in row] for row in table]
    # csv writes a row of one empty cell as an empty line ("" is quoted only when alone in excel).
    assert read == expected


# -- the response, in process ---------------------------------------------------------------


@pytest.mark.anyio
async def test_a_sync_generator_streams_as_csv_with_charset_and_disposition() -> None:
    def rows() -> Iterator[dict[str, Any]]:
        for n in range(3):
            yield {"id": n, "name": f"n{n}"}

    response = await get(lambda: CSVResponse(rows(), filename="report é.csv"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="report _.csv"')
    assert response.body == b"id,name\r\n0,n0\r\n1,n1\r\n2,n2\r\n"


@pytest.mark.anyio
async def test_the_encoding_is_honoured_and_stated() -> None:
    response = await get(lambda: CSVResponse([["é"]], encoding="latin-1"))
    assert response.headers["content-type"] == "text/csv; charset=latin-1"
    assert response.body == b"\xe9\r\n"


@pytest.mark.anyio
async def test_many_rows_go_out_in_few_large_messages() -> None:
    rows = [(n, 'text, with "quotes"', "ünïcode") for n in range(20_000)]
    async with StreamingTestClient(app_with(lambda: CSVResponse(iter(rows)))).stream("GET", "/") as response:
        body = await response.read()
        sizes = [len(m.get("body", b"")) for m in response.messages if m["type"] == "http.response.body"]
    expected = io.StringIO()
    csv.writer(expected).writerows(rows)
    assert body == expected.getvalue().encode()
    assert len(sizes) < 30


@pytest.mark.anyio
async def test_async_rows_are_batched_when_ready_and_not_held_when_the_source_waits() -> None:
    release = anyio.Event()

    async def rows() -> AsyncIterator[list[Any]]:
        for n in range(500):
            yield [n]
            await anyio.sleep(0)  # noqa: ASYNC115 - what FastAPI adds after each item: not a wait
        await release.wait()
        yield ["last"]

    client = StreamingTestClient(app_with(lambda: CSVResponse(rows())))
    async with client.stream("GET", "/") as response:
        chunks = response.iter_bytes()
        first = await anext(chunks)
        assert first == b"".join(b"%d\r\n" % n for n in range(500))
        release.set()
        assert await anext(chunks) == b"last\r\n"


@pytest.mark.anyio
async def test_a_bad_row_before_the_first_chunk_is_a_500() -> None:
    response = await get(lambda: CSVResponse(iter([["ok"], "bad"])), raise_app_exceptions=False)
    assert response.status_code == 500


@pytest.mark.anyio
async def test_a_bad_row_after_the_first_chunk_aborts_the_stream() -> None:
    async def rows() -> AsyncIterator[Any]:
        yield ["ok"]
        await anyio.sleep(0.05)
        yield "bad"

    async with StreamingTestClient(app_with(lambda: CSVResponse(rows()))).stream("GET", "/") as response:
        assert response.status_code == 200
        with pytest.raises(StreamAborted) as info:
            await response.read()
    assert isinstance(info.value.__cause__, TypeError)
    assert "row 2" in str(info.value.__cause__)


@pytest.mark.anyio
async def test_a_disconnect_closes_an_async_source() -> None:
    closed = anyio.Event()

    async def rows() -> AsyncIterator[list[int]]:
        try:
            n = 0
            while True:
                yield [n]
                n += 1
                await anyio.sleep(0.001)
        finally:
            closed.set()

    async with StreamingTestClient(app_with(lambda: CSVResponse(rows()))).stream("GET", "/") as response:
        await anext(response.iter_bytes())
        await response.disconnect()
    with anyio.fail_after(2):
        await closed.wait()


def test_bad_content_and_arguments_are_refused_in_the_endpoint() -> None:
    with pytest.raises(TypeError, match="single str"):
        CSVResponse("a,b\n")
    with pytest.raises(TypeError, match="single dict"):
        CSVResponse({"a": 1})
    with pytest.raises(TypeError, match="iterable"):
        CSVResponse(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Content-Disposition"):
        CSVResponse([], filename="a.csv", headers={"Content-Disposition": "inline"})


# -- FastAPI ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_fastapi_generator_path_operation_with_a_yield_dependency_and_background() -> None:
    app = FastAPI()
    events: list[str] = []

    async def session() -> AsyncIterator[str]:
        events.append("open")
        yield "db"
        events.append("closed")

    @app.get("/export", response_class=CSVResponse)
    def export(db: str = Depends(session)) -> Iterator[dict[str, Any]]:
        for n in range(3):
            events.append(f"row {n}")
            yield {"n": n, "db": db}
        assert "closed" not in events

    @app.get("/aexport", response_class=CSVResponse)
    async def aexport() -> AsyncIterator[list[int]]:
        for n in range(2):
            yield [n]

    @app.get("/withtask", response_class=CSVResponse)
    def withtask(tasks: BackgroundTasks) -> Iterator[list[int]]:
        tasks.add_task(events.append, "background ran")
        yield [1]

    client = StreamingTestClient(app)
    response = await client.get("/export")
    assert response.status_code == 200
    assert response.body == b"n,db\r\n0,db\r\n1,db\r\n2,db\r\n"
    assert events[:4] == ["open", "row 0", "row 1", "row 2"]
    assert (await client.get("/aexport")).body == b"0\r\n1\r\n"
    assert (await client.get("/withtask")).body == b"1\r\n"
    assert "background ran" in events
    schema = (await client.get("/openapi.json")).json()
    assert "text/csv" in schema["paths"]["/export"]["get"]["responses"]["200"]["content"]


@pytest.mark.anyio
async def test_a_background_task_runs_after_a_complete_csv_stream() -> None:
    ran: list[str] = []
    response = await get(lambda: CSVResponse([[1]], background=BackgroundTask(ran.append, "yes")))
    assert response.body == b"1\r\n"
    assert ran == ["yes"]


@pytest.mark.anyio
async def test_the_async_producer_hands_over_the_tail() -> None:
    async def rows() -> AsyncIterator[list[int]]:
        yield [1]

    producer = AsyncBatchProducer(rows(), CSVEncoder(), batch_size=1)
    assert producer.stopped is False


@pytest.mark.anyio
async def test_a_fast_async_source_is_cut_into_large_batches_and_any_sequence_is_a_row() -> None:
    async def rows() -> AsyncIterator[Any]:
        for n in range(30_000):
            yield range(n, n + 3)

    async with StreamingTestClient(app_with(lambda: CSVResponse(rows()))).stream("GET", "/") as response:
        body = await response.read()
    assert body == b"".join(b"%d,%d,%d\r\n" % (n, n + 1, n + 2) for n in range(30_000))
    assert len(response.messages) < 30
