"""Compressed streams: the encoders, the compress= option, and compression through every class."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import jinja2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streaming_responses import (
    CompressionError,
    CSVResponse,
    EventBroker,
    EventSourceResponse,
    FileResponse,
    JSONLinesResponse,
    Outcome,
    ResponseStateError,
    ServerSentEvent,
    StreamingResponse,
    StreamingTemplateResponse,
    StreamingTemplates,
    StreamOutcome,
    _compression,
    _events,
    end_all_streams,
)
from streaming_responses._compression import (
    BROTLI_LGWIN,
    CODINGS,
    DEFAULT_LEVELS,
    MIN_SIZE,
    ZSTD_WINDOW_LOG,
    MessageCoder,
    coded_start,
    installed,
    make_encoder,
    offered,
    parse_compress,
)
from streaming_responses._core import ChunkPump, PumpSettings
from streaming_responses._framing import Framing, FramingDecision
from streaming_responses._producers import make_producer
from streaming_responses.testing import StreamAborted, StreamingTestClient
from tests.asgi import Recorder, http_scope
from tests.decoders import StreamDecoder, decode
from tests.sse_parser import parse_stream

# -- the encoders -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    coding=st.sampled_from(CODINGS),
    messages=st.lists(st.binary(max_size=3000) | st.text(max_size=2000).map(str.encode), max_size=12),
    level=st.integers(1, 9),
)
def test_each_flushed_message_decodes_completely_as_it_arrives(
    coding: str, messages: list[bytes], level: int
) -> None:
    encoder = make_encoder(coding, level)
    decoder = StreamDecoder(coding)
    body = decoded = b""
    for message in messages:
        body += message
        decoded += decoder.feed(encoder.compress(message) + encoder.flush())
        assert decoded == body  # nothing held in the compressor's window
        assert not decoder.finished
    decoded += decoder.feed(encoder.finish())
    assert decoded == body
    assert decoder.finished


def _zstd_window(frame: bytes) -> int:
    # RFC 8878 §3.1.1.1: magic number, Frame_Header_Descriptor, then the Window_Descriptor
    # (absent only for a single-segment frame, which a stream of unknown size never is).
    assert frame[:4] == b"\x28\xb5\x2f\xfd"
    assert not frame[4] & 0x20
    exponent, mantissa = frame[5] >> 3, frame[5] & 7
    base = 1 << (10 + exponent)
    return base + base // 8 * mantissa


def _brotli_window_bits(stream: bytes) -> int:
    # RFC 7932 §9.1: WBITS in the first 1, 4 or 7 bits of the stream, least significant first.
    bits = stream[0] | stream[1] << 8
    if not bits & 1:
        return 16
    if (bits >> 1) & 7:
        return 17 + ((bits >> 1) & 7)
    if (bits >> 4) & 7:
        return 8 + ((bits >> 4) & 7)
    return 17


@pytest.mark.parametrize("level", [1, 3, 19])
def test_a_zstd_stream_declares_the_bounded_window_at_every_level(level: int) -> None:
    encoder = make_encoder("zstd", level)
    frame = encoder.compress(os.urandom(300_000)) + encoder.flush()
    assert _zstd_window(frame) == 1 << ZSTD_WINDOW_LOG == 128 * 1024


@pytest.mark.parametrize("level", [2, 3, 11])
def test_a_brotli_stream_declares_the_bounded_window_at_every_level(level: int) -> None:
    encoder = make_encoder("br", level)
    stream = encoder.compress(os.urandom(300_000)) + encoder.flush()
    assert _brotli_window_bits(stream) == BROTLI_LGWIN == 17


def test_a_message_coder_flushes_each_message_and_ends_only_the_last() -> None:
    coder = MessageCoder("zstd", 3)
    with pytest.raises(ResponseStateError, match="only after the response started"):
        coder.code(b"early", more=True)
    coder.start()
    decoder = StreamDecoder("zstd")
    assert decoder.feed(coder.code(b"one ", more=True)) == b"one "
    assert coder.code(b"", more=True) == b""  # nothing pending after a flush
    assert decoder.feed(coder.code(b"two", more=False)) == b"two"
    assert decoder.finished
    assert coder.encoded > 0


def test_a_failed_coder_codes_nothing_more_and_never_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "streaming_responses._compression.make_encoder", lambda coding, level: FailingEncoder(1)
    )
    coder = MessageCoder("gzip", 4)
    coder.start()
    decoder = StreamDecoder("gzip")
    assert decoder.feed(coder.code(b"kept", more=True)) == b"kept"
    with pytest.raises(CompressionError, match="gzip failed: MemoryError"):
        coder.code(b"lost", more=True)
    assert coder.failed
    assert coder.code(b"", more=False) == b""
    assert not decoder.finished


def test_every_coding_is_installed_here_and_gzip_always_is() -> None:
    assert all(installed(coding) for coding in CODINGS)
    assert not installed("deflate")


def test_a_missing_package_means_its_coding_is_not_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    installed.cache_clear()
    monkeypatch.setitem(sys.modules, "brotli", None)  # import brotli now raises ImportError
    try:
        assert offered(parse_compress(True)) == (("zstd", 3), ("gzip", 4))
    finally:
        installed.cache_clear()


# -- the option ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (False, ()),
        (True, (("zstd", 3), ("br", 3), ("gzip", 4))),
        (("gzip",), (("gzip", 4),)),
        (["br", "zstd"], (("br", 3), ("zstd", 3))),
        ((), ()),
        ({"zstd": 9, "gzip": None}, (("zstd", 9), ("gzip", 4))),
        ({"br": 11}, (("br", 11),)),
    ],
)
def test_compress_reads_off_on_a_sequence_or_levels(value: Any, expected: Any) -> None:
    assert parse_compress(value) == expected


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("gzip", TypeError, r"sequence of encodings such as \('gzip',\)"),
        (1, TypeError, "must be True, False, a sequence"),
        (None, TypeError, "not NoneType"),
        (("deflate",), ValueError, "unknown encoding 'deflate'; the encodings are 'zstd', 'br', 'gzip'"),
        (("gzip", "gzip"), ValueError, "names the encoding 'gzip' twice"),
        ({"gzip": 10}, ValueError, "level of 'gzip' must be from 1 to 9, got 10"),
        ({"zstd": 22}, ValueError, "level of 'zstd' must be from 1 to 19"),
        ({"br": 2.5}, TypeError, "level of 'br' must be an int or None, not float"),
        ({"br": 1}, ValueError, "level of 'br' must be from 2 to 11, got 1"),
        ({"br": True}, TypeError, "level of 'br' must be an int or None, not bool"),
    ],
)
def test_a_bad_compress_value_is_refused_by_name(value: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_compress(value)
    with pytest.raises(error, match="compress"):
        StreamingResponse([b"x"], compress=value)


def test_the_defaults_are_on_for_text_streams_and_off_for_drop_ins() -> None:
    on = [EventSourceResponse, CSVResponse, JSONLinesResponse, StreamingTemplateResponse]
    for cls in on:
        assert inspect.signature(cls).parameters["compress"].default is True, cls
    for cls in (StreamingResponse, FileResponse):
        assert inspect.signature(cls).parameters["compress"].default is False, cls
    assert inspect.signature(StreamingTemplates.stream).parameters["compress"].default is True
    assert StreamingResponse([b"x"]).options.compress == ()
    assert EventSourceResponse([]).options.compress == parse_compress(True)


# -- the start of a coded response ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "decision", "coded_length", "expected_headers", "expected"),
    [
        (
            [(b"etag", b'"v1"'), (b"content-type", b"text/csv")],
            FramingDecision(Framing.CHUNKED, None),
            None,
            [(b"etag", b'"v1-gzip"'), (b"content-type", b"text/csv"), (b"content-encoding", b"gzip")],
            FramingDecision(Framing.CHUNKED, None),
        ),
        (
            [(b"etag", b'W/"v1"')],
            FramingDecision(Framing.CONTENT_LENGTH, 5000),
            None,
            [(b"etag", b'W/"v1-gzip"'), (b"content-encoding", b"gzip")],
            FramingDecision(Framing.CHUNKED, None),  # the identity's declared length is never sent
        ),
        (
            [],
            FramingDecision(Framing.CONTENT_LENGTH, 5000),
            321,
            [(b"content-encoding", b"gzip")],
            FramingDecision(Framing.CONTENT_LENGTH, 321),
        ),
        (
            [],
            FramingDecision(Framing.NO_BODY, None),
            None,
            [(b"content-encoding", b"gzip")],
            FramingDecision(Framing.NO_BODY, None),
        ),
    ],
)
def test_a_coded_start_names_the_coding_and_never_sends_the_identity_length(
    headers: Any, decision: FramingDecision, coded_length: int | None, expected_headers: Any, expected: Any
) -> None:
    assert coded_start(headers, "gzip", decision, coded_length) == (expected_headers, expected)


# -- every class, every coding ---------------------------------------------------------------------

KINDS = ("streaming", "sse", "csv", "jsonl", "template", "file")
SSE_ERROR = b"event: error\ndata: stream failed\n\n"


class Boom(Exception):
    pass


def _source(items: list[str], fail: int | None, pauses: frozenset[int] = frozenset()) -> AsyncIterator[str]:
    async def produce() -> AsyncIterator[str]:
        for n, item in enumerate(items):
            if n == fail:
                raise Boom("boom")
            yield item
            if n in pauses:  # the source waits: what was produced so far goes out
                await anyio.sleep(0.001)
        if fail is not None:
            raise Boom("boom")

    return produce()


def make_response(
    kind: str,
    items: list[str],
    *,
    fail: int | None = None,
    pauses: frozenset[int] = frozenset(),
    compress: Any = True,
    **options: Any,
) -> Response:
    """One response of ``kind`` over ``items`` (an error before item ``fail``, if given; the
    source waits a moment after the items in ``pauses``)."""
    if kind == "streaming":
        return StreamingResponse(
            _source(items, fail, pauses), media_type="text/plain", compress=compress, **options
        )
    if kind == "sse":
        return EventSourceResponse(_source(items, fail, pauses), ping=None, compress=compress, **options)
    if kind == "csv":

        async def rows() -> AsyncIterator[list[str]]:
            async for item in _source(items, fail, pauses):
                yield [item]

        return CSVResponse(rows(), compress=compress, **options)
    if kind == "jsonl":
        return JSONLinesResponse(_source(items, fail, pauses), compress=compress, **options)
    if kind == "template":
        environment = jinja2.Environment(enable_async=True, autoescape=False)
        template = environment.from_string("{% for item in items %}{{ item }}|{% endfor %}")
        return StreamingTemplateResponse(
            template, {"items": _source(items, fail, pauses)}, compress=compress, **options
        )
    assert kind == "file"
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - the response closes it
    handle.write("".join(items).encode())
    handle.seek(0)
    return FileResponse(handle, media_type="text/plain", compress=compress, **options)


def app_of(make: Callable[[], Response]) -> Starlette:
    async def endpoint(request: Request) -> Response:
        return make()

    return Starlette(routes=[Route("/", endpoint, methods=["GET", "HEAD"])])


async def identity_body(kind: str, items: list[str]) -> bytes:
    response = await StreamingTestClient(app_of(lambda: make_response(kind, items, compress=False))).get(
        "/", headers={"accept-encoding": "zstd, br, gzip"}
    )
    assert "content-encoding" not in response.headers
    return response.body


#: The first item of every round trip: a body of it alone is already long enough to be coded.
FILLER = "".join(f"{n:04d}," for n in range(MIN_SIZE // 5 + 1))
texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\x00"), max_size=400)


@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("kind", KINDS)
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    items=st.lists(texts, max_size=25),
    scale=st.integers(1, 8),
    pauses=st.frozensets(st.integers(0, 24), max_size=4),
    ending=st.sampled_from(["complete", "error", "disconnect"]),
    cut=st.integers(0, 30),
    http2=st.booleans(),
)
def test_the_decoded_body_is_the_identity_body_or_a_prefix_of_it(
    kind: str,
    coding: str,
    items: list[str],
    scale: int,
    pauses: frozenset[int],
    ending: str,
    cut: int,
    http2: bool,
) -> None:
    """Whatever the class, coding and ending, the client never decodes a byte the identity body
    does not have at that place, and a failed stream never ends its coded stream without
    trailers that say so. A first item of 1 KiB keeps every body above the size below which a
    complete body goes uncoded (that case has its own test); ``scale`` makes the others longer,
    and ``pauses`` make the source wait, so that bodies start before they end."""
    if kind == "file" and ending == "error":
        ending = "complete"
    items = [FILLER, *(item * scale for item in items)]
    anyio.run(_round_trip, kind, coding, items, pauses, ending, cut, http2)


async def _round_trip(
    kind: str, coding: str, items: list[str], pauses: frozenset[int], ending: str, cut: int, http2: bool
) -> None:
    reference = await identity_body(kind, items)
    fail = cut if ending == "error" else None
    client = StreamingTestClient(
        app_of(lambda: make_response(kind, items, fail=fail, pauses=pauses)),
        http_version="2" if http2 else "1.1",
        raise_app_exceptions=False,
    )
    headers = {"accept-encoding": coding, "te": "trailers"}
    received: list[bytes] = []
    async with client.stream("GET", "/", headers=headers) as response:
        try:
            async for chunk in response.iter_bytes():
                received.append(chunk)
                if ending == "disconnect" and len(received) > cut % 3:
                    await response.disconnect()
                    break
        except StreamAborted:
            assert ending == "error"
    if response.status_code == 500:
        assert ending == "error"  # it failed before the start: nothing was sent
        return
    used = response.headers.get("content-encoding")
    assert used in (None, coding)
    event(f"{ending}, {'coded' if used else 'identity'}, {'complete' if response.complete else 'cut off'}")
    assert "accept-encoding" in response.headers["vary"].lower()
    decoder = StreamDecoder(used) if used is not None else None
    wire = b"".join(received)
    decoded = wire if decoder is None else decoder.feed(wire)
    if kind == "sse" and decoded.endswith(SSE_ERROR):
        assert ending == "error"
        decoded = decoded[: -len(SSE_ERROR)]
    assert reference.startswith(decoded)
    trailers = response.trailers
    clean = response.complete and (trailers is None or trailers["stream-status"] == "complete")
    if ending == "complete":
        assert clean
    if clean:
        assert decoded == reference
        assert decoder is None or decoder.finished
    elif ending == "error":
        if trailers is None:  # aborted: the coded stream must not end as if complete
            assert decoder is None or not decoder.finished
        else:
            assert trailers["stream-status"] == "error"
    if "content-length" in response.headers and response.complete:
        assert int(response.headers["content-length"]) == len(wire)


LONG_ITEMS = [f"item {n}, some text that repeats {n % 7};" * 3 for n in range(400)]


@pytest.mark.anyio
@pytest.mark.parametrize("coding", CODINGS)
@pytest.mark.parametrize("kind", KINDS)
async def test_every_class_sends_each_coding_the_client_asks_for(kind: str, coding: str) -> None:
    reference = await identity_body(kind, LONG_ITEMS)
    outcomes: list[StreamOutcome] = []
    client = StreamingTestClient(app_of(lambda: make_response(kind, LONG_ITEMS, on_outcome=outcomes.append)))
    response = await client.get("/", headers={"accept-encoding": f"{coding}, identity;q=0.5"})
    assert response.headers["content-encoding"] == coding
    assert response.headers["vary"] == "Accept-Encoding"
    assert decode(coding, response.body) == reference
    assert len(response.body) < len(reference) / 3
    if "content-length" in response.headers:  # complete before the start: its coded length
        assert int(response.headers["content-length"]) == len(response.body)
    [outcome] = outcomes
    assert outcome.kind is Outcome.COMPLETE
    assert outcome.bytes_sent == len(reference)  # the body before coding
    assert outcome.encoded_bytes == len(response.body)
    assert outcome.content_encoding == coding


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("accept", "compress", "expected"),
    [
        ("gzip, br, zstd", True, "zstd"),
        ("gzip, br", True, "br"),
        ("gzip;q=1, zstd;q=0.5", True, "gzip"),
        ("zstd;q=0, *", True, "br"),
        ("gzip, br, zstd", ("gzip", "br"), "gzip"),
        ("gzip, br, zstd", {"br": 5}, "br"),
        ("deflate", True, None),
        (None, True, None),
    ],
)
async def test_the_request_and_the_allowed_codings_choose(
    accept: str | None, compress: Any, expected: str
) -> None:
    client = StreamingTestClient(app_of(lambda: make_response("jsonl", LONG_ITEMS, compress=compress)))
    response = await client.get("/", headers={} if accept is None else {"accept-encoding": accept})
    assert response.headers.get("content-encoding") == expected
    assert response.headers["vary"] == "Accept-Encoding"


@pytest.mark.anyio
async def test_a_response_that_does_not_negotiate_sends_no_vary() -> None:
    client = StreamingTestClient(app_of(lambda: make_response("streaming", LONG_ITEMS, compress=False)))
    response = await client.get("/", headers={"accept-encoding": "gzip"})
    assert "vary" not in response.headers
    assert "content-encoding" not in response.headers


@pytest.mark.anyio
async def test_a_missing_package_answers_with_another_coding_or_none(monkeypatch: pytest.MonkeyPatch) -> None:
    installed.cache_clear()
    monkeypatch.setitem(sys.modules, "brotli", None)
    try:
        client = StreamingTestClient(app_of(lambda: make_response("csv", LONG_ITEMS)))
        both = await client.get("/", headers={"accept-encoding": "br, gzip"})
        assert both.headers["content-encoding"] == "gzip"
        client = StreamingTestClient(app_of(lambda: make_response("csv", LONG_ITEMS, compress=("br",))))
        only = await client.get("/", headers={"accept-encoding": "br"})
        assert "content-encoding" not in only.headers
        assert "vary" not in only.headers  # nothing here can be negotiated
        assert only.body == await identity_body("csv", LONG_ITEMS)
    finally:
        installed.cache_clear()


# -- headers ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_small_complete_body_is_sent_as_it_is_and_a_larger_one_with_its_coded_length() -> None:
    small = ["x" * (MIN_SIZE - 1)]
    large = ["x" * MIN_SIZE]
    client = StreamingTestClient(app_of(lambda: StreamingResponse(small, compress=True)))
    response = await client.get("/", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert response.headers["content-length"] == str(MIN_SIZE - 1)
    assert response.headers["vary"] == "Accept-Encoding"
    client = StreamingTestClient(app_of(lambda: StreamingResponse(large, compress=True)))
    response = await client.get("/", headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-length"] == str(len(response.body)) != str(MIN_SIZE)
    assert decode("gzip", response.body) == large[0].encode()


async def _slow(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
        await anyio.sleep(0.001)  # each chunk alone: the body is not complete before the start


@pytest.mark.anyio
@pytest.mark.parametrize("coding", CODINGS)
async def test_a_declared_length_is_enforced_on_the_body_before_coding(coding: str) -> None:
    chunks = [b"a" * 700, b"b" * 700, b"c" * 700]
    client = StreamingTestClient(
        app_of(lambda: StreamingResponse(_slow(chunks), content_length=2100, compress=True))
    )
    response = await client.get("/", headers={"accept-encoding": coding})
    assert response.headers["content-encoding"] == coding
    assert "content-length" not in response.headers
    assert response.framing is Framing.CHUNKED
    assert decode(coding, response.body) == b"".join(chunks)

    outcomes: list[StreamOutcome] = []
    client = StreamingTestClient(
        app_of(
            lambda: StreamingResponse(
                _slow(chunks), content_length=2101, compress=True, on_outcome=outcomes.append
            )
        ),
        raise_app_exceptions=False,
    )
    async with client.stream("GET", "/", headers={"accept-encoding": coding}) as short:
        with pytest.raises(StreamAborted):
            await short.read()
    assert outcomes[0].kind is Outcome.ERROR
    assert "content_length=2101" in str(outcomes[0].error)
    decoder = StreamDecoder(coding)
    assert decoder.feed(b"".join(message["body"] for message in short.messages[1:])) == b"".join(chunks)
    assert not decoder.finished


@pytest.mark.anyio
async def test_the_etag_of_a_coded_answer_differs_from_the_identity_one() -> None:
    def make() -> Response:
        return StreamingResponse(_slow([b"x" * 2000]), headers={"etag": '"v1"'}, compress=True)

    client = StreamingTestClient(app_of(make))
    coded = await client.get("/", headers={"accept-encoding": "br"})
    plain = await client.get("/")
    assert coded.headers["etag"] == '"v1-br"'
    assert plain.headers["etag"] == '"v1"'


@pytest.mark.anyio
async def test_a_file_answer_is_compressed_when_asked_with_an_etag_of_its_own(tmp_path: Any) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"".join(item.encode() for item in LONG_ITEMS))
    client = StreamingTestClient(app_of(lambda: FileResponse(path, compress=True)))
    coded = await client.get("/", headers={"accept-encoding": "zstd"})
    plain = await client.get("/")
    assert coded.headers["content-encoding"] == "zstd"
    assert coded.headers["content-length"] == str(len(coded.body))  # read whole before the start
    assert decode("zstd", coded.body) == path.read_bytes()
    assert coded.headers["etag"] != plain.headers["etag"]
    assert coded.headers["etag"].endswith('-zstd"')
    assert coded.headers["vary"] == plain.headers["vary"] == "Accept-Encoding"


# -- never compressed ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_head_and_answers_without_a_body_are_never_coded_but_vary() -> None:
    for status in (200, 204, 304):
        client = StreamingTestClient(
            app_of(functools.partial(make_response, "csv", LONG_ITEMS, status_code=status))
        )
        for method in ("HEAD", "GET"):
            if method == "GET" and status == 200:
                continue
            response = await client.request(method, "/", headers={"accept-encoding": "gzip"})
            assert "content-encoding" not in response.headers, (method, status)
            assert response.headers["vary"] == "Accept-Encoding"
            assert response.body == b""


@pytest.mark.anyio
async def test_ranges_are_of_the_identity_and_never_coded(tmp_path: Any) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(b"0123456789" * 500)
    client = StreamingTestClient(app_of(lambda: FileResponse(path, compress=True)))
    one = await client.get("/", headers={"accept-encoding": "gzip", "range": "bytes=10-19"})
    assert one.status_code == 206
    assert "content-encoding" not in one.headers
    assert one.body == b"0123456789"
    several = await client.get("/", headers={"accept-encoding": "gzip", "range": "bytes=0-0,10-19"})
    assert several.status_code == 206
    assert several.headers["content-type"].startswith("multipart/byteranges")
    assert "content-encoding" not in several.headers


@pytest.mark.anyio
async def test_a_response_that_already_has_a_content_encoding_is_left_alone() -> None:
    import gzip

    body = gzip.compress(b"x" * 5000)

    def make() -> Response:
        return StreamingResponse([body], headers={"content-encoding": "gzip"}, compress=True)

    response = await StreamingTestClient(app_of(make)).get("/", headers={"accept-encoding": "zstd, gzip"})
    assert response.headers.getlist("content-encoding") == ["gzip"]
    assert "vary" not in response.headers
    assert response.body == body


@pytest.mark.anyio
async def test_pathsend_is_never_coded(tmp_path: Any) -> None:
    path = tmp_path / "data.txt"
    path.write_bytes(b"x" * 5000)
    scope = http_scope(headers=[(b"accept-encoding", b"gzip")])
    scope["extensions"]["http.response.pathsend"] = {}
    recorder = Recorder()
    await FileResponse(path, compress=True)(scope, recorder.receive, recorder.send)
    assert recorder.sent[1] == {"type": "http.response.pathsend", "path": str(path)}
    assert b"content-encoding" not in recorder.headers
    assert recorder.headers[b"content-length"] == b"5000"
    assert recorder.headers[b"vary"] == b"Accept-Encoding"


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["csv", "sse"])
async def test_behind_starlettes_gzip_middleware_a_body_is_coded_once(kind: str) -> None:
    app = GZipMiddleware(app_of(lambda: make_response(kind, LONG_ITEMS)), exclude_content_types=())
    reference = await identity_body(kind, LONG_ITEMS)
    for accept in ("gzip", "zstd, gzip", "br, gzip"):
        response = await StreamingTestClient(app).get("/", headers={"accept-encoding": accept})
        [coding] = response.headers.getlist("content-encoding")
        assert decode(coding, response.body) == reference, accept


# -- every byte through the compressor, every message flushed ----------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("coding", CODINGS)
async def test_each_event_decodes_on_arrival_before_the_next_exists(coding: str) -> None:
    """Lockstep: the generator makes event n+1 only after the client decoded event n from what
    it received. An event held back in the compressor would stall the test (a TimeoutError),
    not make it slower."""
    gate: list[anyio.Event] = [anyio.Event() for _ in range(5)]

    async def events() -> AsyncIterator[ServerSentEvent]:
        for n in range(5):
            yield ServerSentEvent(f"event {n}", id=str(n))
            await gate[n].wait()

    client = StreamingTestClient(app_of(lambda: EventSourceResponse(events(), ping=None)))
    async with client.stream("GET", "/", headers={"accept-encoding": coding}) as response:
        assert response.headers["content-encoding"] == coding
        decoder = StreamDecoder(coding)
        text = b""
        chunks = response.iter_bytes()
        for n in range(5):
            while f"data: event {n}\nid: {n}\n\n".encode() not in text:
                text += decoder.feed(await anext(chunks))
            gate[n].set()
        assert [event.data for event in parse_stream(text)] == [f"event {n}" for n in range(5)]
        async for chunk in chunks:
            decoder.feed(chunk)
        assert decoder.finished


@pytest.mark.anyio
@pytest.mark.parametrize("coding", CODINGS)
async def test_pings_and_the_opening_comment_go_through_the_compressor(coding: str) -> None:
    release = anyio.Event()

    async def idle() -> AsyncIterator[str]:
        await release.wait()
        yield "done"

    client = StreamingTestClient(app_of(lambda: EventSourceResponse(idle(), ping=0.01)))
    async with client.stream("GET", "/", headers={"accept-encoding": coding}) as response:
        decoder = StreamDecoder(coding)
        chunks = response.iter_bytes()
        assert decoder.feed(await anext(chunks)) == b":\n\n"
        assert decoder.feed(await anext(chunks)) == b": ping\n\n"
        assert decoder.feed(await anext(chunks)) == b": ping\n\n"
        release.set()
        rest = b"".join([chunk async for chunk in chunks])
    assert decoder.feed(rest).endswith(b"data: done\n\n")
    assert decoder.finished


@pytest.mark.anyio
@pytest.mark.parametrize("coding", CODINGS)
async def test_the_error_event_is_coded_and_the_coded_stream_is_left_unfinished(coding: str) -> None:
    outcomes: list[StreamOutcome] = []
    client = StreamingTestClient(
        app_of(lambda: make_response("sse", ["one", "two"], fail=2, on_outcome=outcomes.append)),
        raise_app_exceptions=False,
    )
    async with client.stream("GET", "/", headers={"accept-encoding": coding}) as response:
        with pytest.raises(StreamAborted):
            await response.read()
    decoder = StreamDecoder(coding)
    text = decoder.feed(b"".join(message["body"] for message in response.messages[1:]))
    assert text.endswith(b"data: two\n\n" + SSE_ERROR)
    assert not decoder.finished
    assert outcomes[0].kind is Outcome.ERROR


@pytest.mark.anyio
@pytest.mark.parametrize("coding", CODINGS)
async def test_the_shutdown_event_is_coded_and_the_coded_stream_ends(coding: str) -> None:
    async def endless() -> AsyncIterator[str]:
        while True:
            yield "tick"
            await anyio.sleep(0.01)

    client = StreamingTestClient(
        app_of(lambda: EventSourceResponse(endless(), shutdown_event=ServerSentEvent("bye", event="bye")))
    )
    async with client.stream("GET", "/", headers={"accept-encoding": coding}) as response:
        chunks = response.iter_bytes()
        decoder = StreamDecoder(coding)
        text = b""
        while b"data: tick" not in text:
            text += decoder.feed(await anext(chunks))
        assert end_all_streams() == 1
        async for chunk in chunks:
            text += decoder.feed(chunk)
        assert response.complete
    assert text.endswith(b"event: bye\ndata: bye\n\n")
    assert decoder.finished


# -- compressor errors ----------------------------------------------------------------------------------


class FailingEncoder:
    """A gzip encoder that raises on its ``after``-th compress call."""

    coding = "gzip"

    def __init__(self, after: int) -> None:
        self._inner = make_encoder("gzip", 4)
        self._left = after

    def compress(self, data: bytes) -> bytes:
        self._left -= 1
        if self._left < 0:
            raise MemoryError("the compressor ran out of memory")
        return self._inner.compress(data)

    def flush(self) -> bytes:
        return self._inner.flush()

    def finish(self) -> bytes:
        return self._inner.finish()


def fail_after(monkeypatch: pytest.MonkeyPatch, calls: int) -> None:
    monkeypatch.setattr(
        "streaming_responses._compression.make_encoder", lambda coding, level: FailingEncoder(calls)
    )


@pytest.mark.anyio
async def test_a_compressor_error_mid_stream_aborts_and_never_ends_the_coded_stream(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fail_after(monkeypatch, 3)  # the opening comment and two events, then the third event fails
    outcomes: list[StreamOutcome] = []

    async def events() -> AsyncIterator[str]:
        for n in range(5):
            yield f"event {n}"
            await anyio.sleep(0.001)

    client = StreamingTestClient(
        app_of(lambda: EventSourceResponse(events(), ping=None, on_outcome=outcomes.append)),
        raise_app_exceptions=False,
    )
    async with client.stream("GET", "/", headers={"accept-encoding": "gzip"}) as response:
        with pytest.raises(StreamAborted):
            await response.read()
    decoder = StreamDecoder("gzip")
    text = decoder.feed(b"".join(message["body"] for message in response.messages[1:]))
    whole = b":\n\n" + b"".join(f"data: event {n}\n\n".encode() for n in range(5))
    # Two messages were coded (their events depend on how the sender batched them), the
    # third failed; the error event could not be coded and was not sent.
    assert whole.startswith(text)
    assert text.endswith(b"\n\n")
    assert text.startswith(b":\n\ndata: event 0\n\n")
    assert len(text) < len(whole)
    assert not decoder.finished
    [outcome] = outcomes
    assert outcome.kind is Outcome.ERROR
    assert isinstance(outcome.error, CompressionError)
    assert outcome.error.coding == "gzip"
    assert "compressing the stream with gzip failed: MemoryError" in str(outcome.error)
    assert outcome.bytes_sent == len(text)
    assert "compressing the stream with gzip failed" in caplog.text


@pytest.mark.anyio
async def test_a_compressor_error_is_reported_in_trailers_where_they_reach_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_after(monkeypatch, 2)
    client = StreamingTestClient(
        app_of(lambda: StreamingResponse(_slow([b"a" * 10, b"b" * 10, b"c" * 10]), compress=True)),
        http_version="2",
    )
    response = await client.get("/", headers={"accept-encoding": "gzip", "te": "trailers"})
    assert response.complete
    assert response.trailers is not None
    assert response.trailers["stream-status"] == "error"
    assert response.trailers["stream-error"] == "CompressionError"
    decoder = StreamDecoder("gzip")
    assert (b"a" * 10 + b"b" * 10 + b"c" * 10).startswith(decoder.feed(response.body))
    assert not decoder.finished


@pytest.mark.anyio
async def test_a_compressor_error_before_the_start_is_an_error_response(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_after(monkeypatch, 0)
    # A body the CSV encoder holds in one message (32 KiB), so it is complete before the start.
    items = LONG_ITEMS[:200]
    client = StreamingTestClient(app_of(lambda: make_response("csv", items)), raise_app_exceptions=False)
    response = await client.get("/", headers={"accept-encoding": "gzip"})
    assert response.status_code == 500
    assert "content-encoding" not in response.headers


@pytest.mark.anyio
async def test_a_compressor_error_while_ending_on_shutdown_cuts_the_stream_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []

    class Counting(FailingEncoder):
        def compress(self, data: bytes) -> bytes:
            sent.append(len(data))
            return super().compress(data)

    monkeypatch.setattr("streaming_responses._compression.make_encoder", lambda coding, level: Counting(2))
    outcomes: list[StreamOutcome] = []

    async def events() -> AsyncIterator[str]:
        yield "one"
        await anyio.Event().wait()

    def make() -> Response:
        return EventSourceResponse(
            events(), ping=None, shutdown_event=ServerSentEvent("bye"), on_outcome=outcomes.append
        )

    client = StreamingTestClient(app_of(make), raise_app_exceptions=False)
    async with client.stream("GET", "/", headers={"accept-encoding": "gzip"}) as response:
        chunks = response.iter_bytes()
        await anext(chunks)
        await anext(chunks)
        assert end_all_streams() == 1
        with pytest.raises(StreamAborted):
            await response.read()
    assert outcomes[0].kind is Outcome.SHUTDOWN
    assert not response.complete


# -- broker fan-out ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_published_event_is_encoded_once_and_compressed_per_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = EventBroker(history=10)
    subscribed = anyio.Event()

    async def endpoint(request: Request) -> Response:
        async def events() -> AsyncIterator[ServerSentEvent]:
            async with broker.subscribe() as subscription:
                if broker.subscribers == len(CODINGS):
                    subscribed.set()
                async for event in subscription:
                    yield event

        return EventSourceResponse(events(), ping=None)

    client = StreamingTestClient(Starlette(routes=[Route("/", endpoint)]))
    event = ServerSentEvent({"price": 12.5, "note": "x" * 2000}, event="tick")
    encodings = 0
    real = _events._encode_fields

    def counting(*args: Any) -> bytes:
        nonlocal encodings
        encodings += args[1] == "tick"  # (data text, event, id, retry, comment)
        return real(*args)

    monkeypatch.setattr(_events, "_encode_fields", counting)
    async with (
        client.stream("GET", "/", headers={"accept-encoding": "zstd"}) as first,
        client.stream("GET", "/", headers={"accept-encoding": "br"}) as second,
        client.stream("GET", "/", headers={"accept-encoding": "gzip"}) as third,
    ):
        with anyio.fail_after(5):
            await subscribed.wait()
        sent = await broker.publish(event)
        for response, coding in ((first, "zstd"), (second, "br"), (third, "gzip")):
            assert response.headers["content-encoding"] == coding
            decoder = StreamDecoder(coding)
            chunks = response.iter_bytes()
            text = b""
            while not text.endswith(sent.encode()):
                text += decoder.feed(await anext(chunks))
            assert text == b":\n\n" + sent.encode()
    # Once, when the broker gave the event its id: those bytes served every connection and coding.
    assert encodings == 1


# -- the pump with a recorder ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_every_body_message_the_core_sends_is_flushed() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for n in range(20):
            yield f"chunk {n}\n".encode() * 50
            await anyio.lowlevel.checkpoint()

    settings = PumpSettings(status_code=200, raw_headers=[], compress=(("zstd", 3),))
    pump = ChunkPump(settings, make_producer(chunks()))
    recorder = Recorder()
    await pump.run(http_scope(headers=[(b"accept-encoding", b"zstd")]), recorder.receive, recorder.send)
    decoder = StreamDecoder("zstd")
    total = b""
    for message in recorder.sent[1:]:
        piece = decoder.feed(message["body"])
        if message["body"]:
            assert piece, "a message whose bytes decode to nothing was held in the window"
        total += piece
    assert total == b"".join(f"chunk {n}\n".encode() * 50 for n in range(20))
    assert decoder.finished


def test_a_level_outside_its_range_is_refused_when_a_response_is_made() -> None:
    with pytest.raises(ValueError, match="level of 'br' must be from 2 to 11"):
        CSVResponse([], compress={"br": 12})
    assert DEFAULT_LEVELS == {"zstd": 3, "br": 3, "gzip": 4}
    assert _compression.MIN_SIZE == 1024


@pytest.mark.anyio
async def test_streaming_templates_stream_compresses_unless_told_not_to(tmp_path: Any) -> None:
    (tmp_path / "page.html").write_text(
        "<html><head></head><body>{% for n in rows %}<p>{{ n }}</p>{% endfor %}"
    )
    templates = StreamingTemplates(directory=str(tmp_path))

    async def page(request: Request) -> Response:
        off = request.query_params.get("off") == "1"
        return templates.stream(request, "page.html", {"rows": range(2000)}, compress=not off)

    client = StreamingTestClient(Starlette(routes=[Route("/", page)]))
    coded = await client.get("/", headers={"accept-encoding": "br"})
    plain = await client.get("/?off=1", headers={"accept-encoding": "br"})
    assert coded.headers["content-encoding"] == "br"
    assert "content-encoding" not in plain.headers
    assert "vary" not in plain.headers
    assert decode("br", coded.body) == plain.body
    assert plain.body.endswith(b"<p>1999</p>")
