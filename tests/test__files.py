"""FileResponse in process: statuses, headers, bodies, sources, errors and the core's hooks."""

from __future__ import annotations

import email.parser
import io
import os
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiofiles
import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse as StarletteFileResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from streaming_responses import FileChangedError, FileResponse, FileResponseError, Framing, Outcome
from streaming_responses._files import FileProducer
from streaming_responses._producers import Producer
from streaming_responses._streaming import CallPlan
from streaming_responses._types import Scope
from streaming_responses.testing import StreamAborted, StreamingTestClient
from tests.asgi import Recorder, http_scope

DATA = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    return path


class Recorded(FileResponse):
    """A FileResponse that keeps the producer of each call, for the tests that count reads."""

    producers: list[Producer]

    async def prepare(self, scope: Scope) -> CallPlan:
        plan = await super().prepare(scope)
        self.__dict__.setdefault("producers", []).append(plan.producer)
        return plan


def first_producer(response: FileResponse) -> Producer:
    assert isinstance(response, Recorded)
    return response.producers[0]


def client_for(
    make: Callable[[], FileResponse], **kwargs: Any
) -> tuple[StreamingTestClient, list[FileResponse]]:
    made: list[FileResponse] = []

    async def endpoint(request: Request) -> FileResponse:
        response = make()
        made.append(response)
        return response

    app = Starlette(routes=[Route("/", endpoint, methods=["GET", "HEAD", "POST", "PUT"])])
    return StreamingTestClient(app, **kwargs), made


@pytest.mark.anyio
async def test_a_whole_file_is_sent_with_its_length_and_validators(data_file: Path) -> None:
    client, _ = client_for(lambda: FileResponse(data_file))
    response = await client.get("/")
    assert response.status_code == 200
    assert response.body == DATA
    assert response.headers["content-length"] == str(len(DATA))
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"].startswith('"')
    mtime = (await anyio.Path(data_file).stat()).st_mtime
    assert response.headers["last-modified"] == formatdate(int(mtime), usegmt=True)


@pytest.mark.anyio
async def test_small_reads_follow_chunk_size(data_file: Path) -> None:
    client, made = client_for(lambda: Recorded(data_file, chunk_size=64 * 1024))
    response = await client.get("/")
    assert response.body == DATA
    producer = first_producer(made[0])
    assert isinstance(producer, FileProducer)
    assert producer.blocks_read == 16


@pytest.mark.anyio
async def test_one_range_is_a_206_with_content_range(data_file: Path) -> None:
    client, _ = client_for(lambda: FileResponse(data_file))
    response = await client.get("/", headers={"range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes 1000-1999/{len(DATA)}"
    assert response.headers["content-length"] == "1000"
    assert response.body == DATA[1000:2000]
    suffix = await client.get("/", headers={"range": "bytes=-10"})
    assert suffix.body == DATA[-10:]


@pytest.mark.anyio
async def test_several_ranges_are_a_multipart_body_that_parses_back(data_file: Path) -> None:
    client, _ = client_for(lambda: FileResponse(data_file, media_type="application/pdf"))
    response = await client.get("/", headers={"range": "bytes=0-9, 5-19, 100-199, -5"})
    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    assert int(response.headers["content-length"]) == len(response.body)
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + response.body
    )
    parts: list[Any] = message.get_payload()  # type: ignore[assignment]
    size = len(DATA)
    assert [part["Content-Range"] for part in parts] == [
        f"bytes 0-19/{size}",
        f"bytes 100-199/{size}",
        f"bytes {size - 5}-{size - 1}/{size}",
    ]
    assert [part.get_payload(decode=True) for part in parts] == [DATA[0:20], DATA[100:200], DATA[-5:]]
    assert {part["Content-Type"] for part in parts} == {"application/pdf"}


@pytest.mark.anyio
async def test_an_unsatisfiable_range_is_a_416_and_a_malformed_one_a_200(data_file: Path) -> None:
    client, _ = client_for(lambda: FileResponse(data_file))
    response = await client.get("/", headers={"range": f"bytes={len(DATA)}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(DATA)}"
    assert response.body == b""
    assert "etag" in response.headers
    malformed = await client.get("/", headers={"range": "bytes=oops"})
    assert malformed.status_code == 200
    assert malformed.body == DATA
    many = await client.get("/", headers={"range": "bytes=" + ",".join(f"{n}-{n}" for n in range(0, 100, 2))})
    assert many.status_code == 200


@pytest.mark.anyio
async def test_conditional_requests_get_304_and_412_with_validators(data_file: Path) -> None:
    client, _ = client_for(lambda: FileResponse(data_file, filename="data.bin"))
    first = await client.get("/")
    etag = first.headers["etag"]
    modified = first.headers["last-modified"]
    not_modified = await client.get("/", headers={"if-none-match": f"W/{etag}"})
    assert not_modified.status_code == 304
    assert not_modified.body == b""
    assert not_modified.headers["etag"] == etag
    assert not_modified.headers["last-modified"] == modified
    assert "content-type" not in not_modified.headers
    assert "content-disposition" not in not_modified.headers
    assert (await client.get("/", headers={"if-modified-since": modified})).status_code == 304
    failed = await client.get("/", headers={"if-match": '"other"'})
    assert failed.status_code == 412
    assert failed.headers["content-length"] == "0"
    assert (await client.request("PUT", "/", headers={"if-none-match": "*"})).status_code == 412
    assert (await client.get("/", headers={"if-match": etag})).status_code == 200


@pytest.mark.anyio
async def test_if_range_with_a_stale_etag_sends_the_whole_file(data_file: Path) -> None:
    client, _ = client_for(lambda: FileResponse(data_file))
    etag = (await client.head("/")).headers["etag"]
    honoured = await client.get("/", headers={"range": "bytes=0-0", "if-range": etag})
    assert honoured.status_code == 206
    stale = await client.get("/", headers={"range": "bytes=0-0", "if-range": '"stale"'})
    assert stale.status_code == 200
    assert stale.body == DATA


@pytest.mark.anyio
async def test_head_sends_the_headers_and_reads_nothing(data_file: Path) -> None:
    client, made = client_for(lambda: Recorded(data_file))
    response = await client.head("/")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(DATA))
    assert response.body == b""
    producer = first_producer(made[0])
    assert isinstance(producer, FileProducer)
    assert producer.blocks_read == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("report.pdf", 'attachment; filename="report.pdf"'),
        ('a"b.txt', 'attachment; filename="a\\"b.txt"'),
        ("naïve.txt", "attachment; filename=\"na_ve.txt\"; filename*=UTF-8''na%C3%AFve.txt"),
        ("evil\r\nset-cookie: x.txt", "attachment; filename=\"evil  set-cookie: x.txt\"; filename*=UTF-8''"),
    ],
)
async def test_the_download_name_can_never_break_the_header(
    data_file: Path, filename: str, expected: str
) -> None:
    client, _ = client_for(lambda: FileResponse(data_file, filename=filename))
    response = await client.head("/")
    assert response.headers["content-disposition"].startswith(expected)
    assert "\r" not in response.headers["content-disposition"]
    expected_type = "application/pdf" if filename.endswith(".pdf") else "text/plain; charset=utf-8"
    assert response.headers["content-type"] == expected_type


@pytest.mark.anyio
async def test_precompressed_siblings_follow_accept_encoding(tmp_path: Path) -> None:
    path = tmp_path / "app.js"
    path.write_bytes(b"plain")
    (tmp_path / "app.js.br").write_bytes(b"brotli")
    (tmp_path / "app.js.gz").write_bytes(b"gzipped")
    client, _ = client_for(lambda: FileResponse(path, precompressed=True))
    plain = await client.get("/")
    brotli = await client.get("/", headers={"accept-encoding": "gzip, br"})
    gzipped = await client.get("/", headers={"accept-encoding": "br;q=0, gzip"})
    assert (plain.body, brotli.body, gzipped.body) == (b"plain", b"brotli", b"gzipped")
    assert "content-encoding" not in plain.headers
    assert brotli.headers["content-encoding"] == "br"
    assert gzipped.headers["content-encoding"] == "gzip"
    assert {r.headers["vary"] for r in (plain, brotli, gzipped)} == {"Accept-Encoding"}
    assert len({r.headers["etag"] for r in (plain, brotli, gzipped)}) == 3
    assert brotli.headers["content-type"].startswith("text/javascript")
    ranged = await client.get("/", headers={"accept-encoding": "br", "range": "bytes=1-2"})
    assert ranged.status_code == 206
    assert ranged.body == b"ro"
    several = await client.get("/", headers={"accept-encoding": "br", "range": "bytes=0-0,2-2"})
    assert several.status_code == 200
    assert several.body == b"brotli"
    cached = await client.get("/", headers={"accept-encoding": "br", "if-none-match": brotli.headers["etag"]})
    assert cached.status_code == 304
    assert cached.headers["vary"] == "Accept-Encoding"


@pytest.mark.anyio
async def test_sync_file_objects_are_sent_and_closed(data_file: Path) -> None:
    files: list[Any] = []

    def make() -> FileResponse:
        file = open(data_file, "rb")  # noqa: SIM115 - the response closes it
        files.append(file)
        return FileResponse(file)

    client, _ = client_for(make)
    response = await client.get("/")
    assert response.body == DATA
    assert response.headers["content-length"] == str(len(DATA))
    assert "etag" in response.headers
    ranged = await client.get("/", headers={"range": "bytes=10-19"})
    assert ranged.body == DATA[10:20]
    assert all(file.closed for file in files)


@pytest.mark.anyio
async def test_a_file_object_of_unknown_size_is_chunked_and_a_known_size_is_declared() -> None:
    client, _ = client_for(lambda: FileResponse(io.BytesIO(b"abc" * 1000), media_type="text/plain"))
    response = await client.get("/")
    assert response.body == b"abc" * 1000
    assert response.framing is Framing.CHUNKED
    assert response.headers["accept-ranges"] == "none"
    client, _ = client_for(lambda: FileResponse(io.BytesIO(b"abcdef"), size=4))
    sized = await client.get("/", headers={"range": "bytes=1-2"})
    assert sized.status_code == 206
    assert sized.body == b"bc"


@pytest.mark.anyio
async def test_async_file_objects_from_aiofiles_and_anyio(data_file: Path) -> None:
    opened: list[Any] = []

    async def endpoint(request: Request) -> FileResponse:
        if request.query_params.get("kind") == "anyio":
            file: Any = await anyio.open_file(data_file, "rb")
        else:
            file = await aiofiles.open(data_file, "rb")
        opened.append(file)
        return FileResponse(file)

    client = StreamingTestClient(Starlette(routes=[Route("/", endpoint)]))
    for kind in ("aiofiles", "anyio"):
        response = await client.get(f"/?kind={kind}")
        assert response.body == DATA
        assert response.headers["content-length"] == str(len(DATA))
        ranged = await client.get(f"/?kind={kind}", headers={"range": "bytes=5-9"})
        assert ranged.body == DATA[5:10]


@pytest.mark.anyio
async def test_a_missing_path_or_a_directory_fails_before_the_start(tmp_path: Path) -> None:
    for path, message in ((tmp_path / "nope.txt", "does not exist"), (tmp_path, "is not a file")):
        client, _ = client_for(lambda path=path: FileResponse(path))  # type: ignore[misc]
        with pytest.raises(FileResponseError, match=message):
            await client.get("/")
        lenient, _ = client_for(lambda path=path: FileResponse(path), raise_app_exceptions=False)  # type: ignore[misc]
        assert (await lenient.get("/")).status_code == 500
    assert issubclass(FileResponseError, RuntimeError)


@pytest.mark.anyio
async def test_a_file_that_shrinks_while_sent_never_looks_complete(data_file: Path) -> None:
    client, made = client_for(lambda: FileResponse(data_file, chunk_size=64 * 1024))
    async with client.stream("GET", "/") as response:
        chunks = response.iter_bytes()
        await anext(chunks)
        os.truncate(data_file, 100_000)
        with pytest.raises(StreamAborted) as info:
            async for _ in chunks:
                pass
    assert isinstance(info.value.__cause__, FileChangedError)
    assert made[0].outcome is not None
    assert made[0].outcome.kind is Outcome.ERROR


@pytest.mark.anyio
async def test_a_file_replaced_after_its_stat_is_an_error_before_the_start(data_file: Path) -> None:
    response = FileResponse(data_file)
    original = response._prepare

    async def prepare_then_replace(scope: Any) -> Any:
        result = await original(scope)
        await anyio.Path(data_file).unlink()
        await anyio.Path(data_file).write_bytes(b"new content")
        return result

    response._prepare = prepare_then_replace  # type: ignore[method-assign]
    with pytest.raises(FileChangedError, match="changed"):
        await response(http_scope(), Recorder().receive, Recorder().send)


@pytest.mark.anyio
async def test_a_disconnect_mid_file_stops_the_reads(data_file: Path) -> None:
    client, made = client_for(lambda: Recorded(data_file, chunk_size=16 * 1024))
    async with client.stream("GET", "/") as response:
        chunks = response.iter_bytes()
        await anext(chunks)
        await response.disconnect()
    producer = first_producer(made[0])
    assert isinstance(producer, FileProducer)
    assert producer.blocks_read < len(DATA) // (16 * 1024) // 2
    assert made[0].outcome is not None
    assert made[0].outcome.kind is Outcome.DISCONNECTED


@pytest.mark.anyio
async def test_pathsend_is_used_for_whole_files_where_offered(data_file: Path) -> None:
    recorder = Recorder()
    scope = http_scope()
    scope["extensions"] = {"http.response.pathsend": {}}
    await FileResponse(data_file)(scope, recorder.receive, recorder.send)
    assert recorder.start["status"] == 200
    assert recorder.headers[b"content-length"] == str(len(DATA)).encode()
    absolute = str(await anyio.Path(data_file).absolute())
    assert recorder.sent[1] == {"type": "http.response.pathsend", "path": absolute}
    ranged = Recorder()
    scope["headers"] = [(b"range", b"bytes=0-0")]
    await FileResponse(data_file)(scope, ranged.receive, ranged.send)
    assert ranged.start["status"] == 206
    assert ranged.body == DATA[:1]


def test_the_headers_match_starlettes_for_the_same_file(data_file: Path) -> None:
    def app_for(cls: type[Any]) -> Starlette:
        async def endpoint(request: Request) -> Any:
            return cls(data_file, 200, {"x-extra": "1"}, None, None, "data.bin", None, "inline")

        return Starlette(routes=[Route("/", endpoint)])

    with TestClient(app_for(StarletteFileResponse)) as theirs, TestClient(app_for(FileResponse)) as ours:
        expected = theirs.get("/")
        got = ours.get("/")
        assert got.content == expected.content == DATA
        for name in (
            "content-type",
            "content-length",
            "accept-ranges",
            "content-disposition",
            "last-modified",
            "x-extra",
        ):
            assert got.headers[name] == expected.headers[name], name
        expected_range = theirs.get("/", headers={"range": "bytes=10-20"})
        got_range = ours.get("/", headers={"range": "bytes=10-20"})
        assert got_range.status_code == expected_range.status_code == 206
        assert got_range.headers["content-range"] == expected_range.headers["content-range"]
        assert got_range.content == expected_range.content


def test_a_custom_status_sends_the_whole_file_and_ignores_conditionals(data_file: Path) -> None:
    async def endpoint(request: Request) -> FileResponse:
        return FileResponse(data_file, status_code=404, media_type="text/html")

    with TestClient(Starlette(routes=[Route("/", endpoint)])) as client:
        response = client.get("/", headers={"range": "bytes=0-0", "if-none-match": "*"})
    assert response.status_code == 404
    assert response.content == DATA


def test_bad_arguments_are_refused_by_name(data_file: Path) -> None:
    with pytest.raises(TypeError, match="path"):
        FileResponse(123)
    with pytest.raises(TypeError, match="bytes"):
        FileResponse(os.fsencode(data_file))
    with pytest.raises(TypeError, match="size"):
        FileResponse(data_file, size=3)
    with pytest.raises(ValueError, match="size"):
        FileResponse(io.BytesIO(), size=-1)
    with pytest.raises(ValueError, match="precompressed"):
        FileResponse(io.BytesIO(), precompressed=True)
    with pytest.raises(ValueError, match="chunk_size"):
        FileResponse(data_file, chunk_size=0)
    with pytest.raises(TypeError, match="stat_result"):
        FileResponse(data_file, stat_result=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="filename"):
        FileResponse(data_file, filename=1)  # type: ignore[arg-type]
    assert "data.bin" in repr(FileResponse(data_file))
