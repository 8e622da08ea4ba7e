"""FileResponse on real servers: what curl and a raw socket see, and what the server read.

One server of each kind serves ``tests.e2e.files_app`` for the whole module, from a temporary
directory this module fills: a few MiB of random bytes (with an old mtime, so that its
Last-Modified is a strong validator), a file with a non-ASCII name, a page with ``.br`` and
``.gz`` siblings, a sparse 128 MiB file for the disconnect test, and per-test files that shrink.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .clients import CURL_PARTIAL_FILE, CurlResult, H1Connection, curl, http1
from .servers import KINDS, RunningServer, start_server
from .state import server_state

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

APP = "tests.e2e.files_app:app"
#: The variable naming the directory files_app serves (its DIR_ENV; not imported, so that this
#: process never builds the app).
DIR_ENV = "FILES_E2E_DIR"
MIB = 1024 * 1024
RANDOM = "random.bin"
RANDOM_BYTES = 3 * MIB + 12345
UNICODE = "naïve résumé 日本.txt"
PAGE = "page.txt"
LARGE = "large.bin"
LARGE_BYTES = 128 * MIB
#: An mtime far in the past (2020-01-01T00:00:00Z): Last-Modified is then a strong validator.
OLD_MTIME = 1577836800
OLD_DATE = "Mon, 01 Jan 1990 00:00:00 GMT"


def _kinds() -> list[str]:
    wanted = [name.strip() for name in os.environ.get("E2E_SERVERS", "").split(",") if name.strip()]
    return [name for name in KINDS if not wanted or name in wanted]


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("files")
    (directory / RANDOM).write_bytes(os.urandom(RANDOM_BYTES))
    os.utime(directory / RANDOM, (OLD_MTIME, OLD_MTIME))
    (directory / UNICODE).write_text("une page au nom accentué\n" * 100, encoding="utf-8")
    page = b"the page itself, uncompressed\n" * 200
    (directory / PAGE).write_bytes(page)
    (directory / f"{PAGE}.gz").write_bytes(gzip.compress(page, mtime=0))
    # No brotli encoder is installed; the server never decodes, so any distinct bytes will do.
    (directory / f"{PAGE}.br").write_bytes(b"\x8b\x7f stand-in for the brotli encoding of page.txt")
    with (directory / LARGE).open("wb") as large:
        large.truncate(LARGE_BYTES)
    return directory


@pytest.fixture(scope="module", params=_kinds())
def files_server(request: pytest.FixtureRequest, files_dir: Path) -> Iterator[RunningServer]:
    # STREAMING_E2E_IMPL (see files_app) reaches the server with the rest of the environment.
    server = start_server(request.param, app=APP, env={DIR_ENV: str(files_dir)})
    try:
        yield server
    finally:
        server.stop()


# --- helpers -------------------------------------------------------------------------------


def _get(server: RunningServer, path: str, *args: str, **kwargs: Any) -> CurlResult:
    return curl(server.port, path, *args, timeout=kwargs.pop("timeout", 10.0), **kwargs)


def _validators(server: RunningServer, name: str = RANDOM) -> tuple[str, str]:
    result = _get(server, f"/file/{name}", method="HEAD")
    etag, last_modified = result.header("etag"), result.header("last-modified")
    assert etag, result.describe()
    assert last_modified, result.describe()
    return etag, last_modified


def _no_body_response(
    server: RunningServer, headers: dict[str, str], method: str = "GET"
) -> tuple[Any, bytes]:
    """A raw request on a connection the server closes; returns the head and every byte after it."""
    with H1Connection(server.port, timeout=5.0) as conn:
        conn.send_request(method, f"/file/{RANDOM}", {**headers, "Connection": "close"})
        head = conn.read_head()
        rest = conn.read_available(time.monotonic() + 1.0)
        return head, rest


def _probe(server: RunningServer, probe_id: str) -> dict[str, Any]:
    probe: dict[str, Any] = server_state(server, probe_id)["probe"] or {}
    return probe


def _wait_probe(server: RunningServer, probe_id: str, key: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        probe = _probe(server, probe_id)
        if probe.get(key) or time.monotonic() > deadline:
            return probe
        time.sleep(0.02)


def _disposition_params(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Disposition value into its type and parameters (quoted strings unescaped)."""
    kind, _, rest = value.partition(";")
    params = {}
    for match in re.finditer(
        r';?\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', ";" + rest
    ):
        name, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[name] = raw
    return kind.strip().lower(), params


def _parse_byteranges(body: bytes, boundary: bytes) -> list[tuple[str, str, bytes]]:
    """The parts of a multipart/byteranges body: (Content-Range, Content-Type, data) each.

    Each part is cut by the length its Content-Range gives, so bytes that happen to look like
    the boundary inside the data cannot confuse it (RFC 9110 section 14.6).
    """
    marker = b"--" + boundary
    rest = body[body.index(marker) + len(marker) :]
    parts = []
    while not rest.startswith(b"--"):
        assert rest.startswith(b"\r\n"), rest[:80]
        head, _, rest = rest[2:].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["content-range"])
        assert match, headers
        length = int(match.group(2)) - int(match.group(1)) + 1
        data, rest = rest[:length], rest[length:]
        assert rest.startswith(b"\r\n" + marker), rest[:80]
        rest = rest[2 + len(marker) :]
        parts.append((headers["content-range"], headers.get("content-type", ""), data))
    return parts


# --- whole files ---------------------------------------------------------------------------


def test_a_whole_file_downloads_byte_identical_with_content_length_and_validators(
    files_server: RunningServer, files_dir: Path
) -> None:
    data = (files_dir / RANDOM).read_bytes()

    result = _get(files_server, f"/file/{RANDOM}")

    assert result.exit_code == 0, result.describe()
    assert result.status == 200
    assert hashlib.sha256(result.body).hexdigest() == hashlib.sha256(data).hexdigest()
    assert result.header("content-length") == str(len(data))
    assert result.header("transfer-encoding") is None
    assert result.header("etag")
    assert result.header("last-modified") == "Wed, 01 Jan 2020 00:00:00 GMT"
    assert result.header("accept-ranges") == "bytes"


def test_head_sends_the_same_headers_as_get_and_no_body(files_server: RunningServer) -> None:
    get = _get(files_server, f"/file/{RANDOM}")
    head, rest = _no_body_response(files_server, {}, method="HEAD")

    assert head.status == 200
    assert rest == b""
    for name in ("content-length", "content-type", "etag", "last-modified", "accept-ranges"):
        assert head.header(name) == get.header(name), name


def test_head_on_a_file_object_reads_nothing_from_it(files_server: RunningServer, probe_id: str) -> None:
    result = _get(files_server, f"/object/{RANDOM}?id={probe_id}", method="HEAD")

    assert result.status == 200, result.describe()
    assert result.header("content-length") == str(RANDOM_BYTES)
    probe = _probe(files_server, probe_id)
    assert probe["bytes_read"] == 0, probe
    assert "http.response.pathsend" not in probe["messages"], probe


def test_a_file_object_downloads_whole_and_is_read_once_and_closed(
    files_server: RunningServer, files_dir: Path, probe_id: str
) -> None:
    result = _get(files_server, f"/object/{RANDOM}?id={probe_id}")

    assert result.exit_code == 0, result.describe()
    assert result.body == (files_dir / RANDOM).read_bytes()
    assert result.header("content-length") == str(RANDOM_BYTES)
    probe = _wait_probe(files_server, probe_id, "closed")
    assert probe["closed"] is True, probe
    assert probe["bytes_read"] == RANDOM_BYTES, probe


# --- ranges --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("curl_range", "start", "end"),
    [
        ("0-99", 0, 99),
        ("1000-", 1000, RANDOM_BYTES - 1),
        ("-500", RANDOM_BYTES - 500, RANDOM_BYTES - 1),
        (f"{MIB}-{2 * MIB - 1}", MIB, 2 * MIB - 1),
    ],
    ids=["first-100", "open-ended", "suffix", "middle-mib"],
)
def test_a_single_range_is_206_with_its_content_range_and_exactly_those_bytes(
    files_server: RunningServer, files_dir: Path, curl_range: str, start: int, end: int
) -> None:
    data = (files_dir / RANDOM).read_bytes()

    result = _get(files_server, f"/file/{RANDOM}", "--range", curl_range)

    assert result.exit_code == 0, result.describe()
    assert result.status == 206
    assert result.header("content-range") == f"bytes {start}-{end}/{RANDOM_BYTES}"
    assert result.header("content-length") == str(end - start + 1)
    assert result.body == data[start : end + 1]


def test_several_ranges_come_back_as_multipart_byteranges_that_parse_back_to_the_file(
    files_server: RunningServer, files_dir: Path
) -> None:
    data = (files_dir / RANDOM).read_bytes()

    result = _get(files_server, f"/file/{RANDOM}", "--range", "0-9,100-199,-50")

    assert result.exit_code == 0, result.describe()
    assert result.status == 206
    content_type = result.header("content-type") or ""
    match = re.fullmatch(r"multipart/byteranges;\s*boundary=\"?([^\";]+)\"?", content_type)
    assert match, content_type
    if result.header("content-length") is not None:
        assert result.header("content-length") == str(len(result.body))
    parts = _parse_byteranges(result.body, match.group(1).encode())
    size = RANDOM_BYTES
    assert [(content_range, part) for content_range, _, part in parts] == [
        (f"bytes 0-9/{size}", data[0:10]),
        (f"bytes 100-199/{size}", data[100:200]),
        (f"bytes {size - 50}-{size - 1}/{size}", data[size - 50 :]),
    ]
    assert all(part_type == "application/octet-stream" for _, part_type, _ in parts), parts


def test_an_unsatisfiable_range_is_416_with_the_file_size(files_server: RunningServer) -> None:
    result = _get(files_server, f"/file/{RANDOM}", "--range", f"{RANDOM_BYTES}-")

    assert result.status == 416, result.describe()
    assert result.header("content-range") == f"bytes */{RANDOM_BYTES}"


def test_a_malformed_range_never_gives_a_server_error(files_server: RunningServer) -> None:
    for value in ("bytes=abc", "bytes=5-1", "lines=0-9", "bytes=" + ",".join(["0-0"] * 500), "bytes=-"):
        result = _get(files_server, f"/file/{RANDOM}", headers={"Range": value})
        assert result.status is not None, (value, result.describe())
        assert result.status < 500, (value, result.describe())
        assert result.exit_code == 0, (value, result.describe())


# --- conditional requests ------------------------------------------------------------------


def test_a_matching_if_none_match_or_if_modified_since_is_304_with_validators_and_no_body(
    files_server: RunningServer,
) -> None:
    etag, last_modified = _validators(files_server)
    weak = etag if etag.startswith("W/") else f"W/{etag}"
    for headers in (
        {"If-None-Match": etag},
        {"If-None-Match": weak},
        {"If-None-Match": f'"other", {etag}'},
        {"If-None-Match": "*"},
        {"If-Modified-Since": last_modified},
    ):
        head, rest = _no_body_response(files_server, headers)
        assert head.status == 304, (headers, head)
        assert rest == b"", headers
        assert head.header("etag") == etag, (headers, head)
        assert head.header("last-modified") == last_modified, (headers, head)


def test_a_stale_if_modified_since_or_another_etag_gives_the_whole_file(files_server: RunningServer) -> None:
    for headers in ({"If-Modified-Since": OLD_DATE}, {"If-None-Match": '"some-other-version"'}):
        result = _get(files_server, f"/file/{RANDOM}", headers=headers)
        assert result.status == 200, (headers, result.describe())
        assert len(result.body) == RANDOM_BYTES


def test_a_failed_if_match_or_if_unmodified_since_is_412(files_server: RunningServer) -> None:
    etag, last_modified = _validators(files_server)
    for headers in ({"If-Match": '"not-this-one"'}, {"If-Unmodified-Since": OLD_DATE}):
        head, _rest = _no_body_response(files_server, headers)
        assert head.status == 412, (headers, head)
    for headers in ({"If-Match": etag}, {"If-Match": "*"}, {"If-Unmodified-Since": last_modified}):
        result = _get(files_server, f"/file/{RANDOM}", headers=headers)
        assert result.status == 200, (headers, result.describe())


def test_if_range_honours_the_range_only_for_the_current_validator(
    files_server: RunningServer, files_dir: Path
) -> None:
    data = (files_dir / RANDOM).read_bytes()
    etag, last_modified = _validators(files_server)
    for if_range in (etag, last_modified):
        result = _get(files_server, f"/file/{RANDOM}", "--range", "10-19", headers={"If-Range": if_range})
        assert result.status == 206, (if_range, result.describe())
        assert result.body == data[10:20]
    for if_range in ('"an-older-version"', OLD_DATE):
        result = _get(files_server, f"/file/{RANDOM}", "--range", "10-19", headers={"If-Range": if_range})
        assert result.status == 200, (if_range, result.describe())
        assert result.body == data


# --- Content-Disposition -------------------------------------------------------------------


def test_content_disposition_carries_a_unicode_name_with_an_ascii_fallback(
    files_server: RunningServer, files_dir: Path
) -> None:
    path = "/file/" + urllib.parse.quote(UNICODE) + "?filename=" + urllib.parse.quote(UNICODE)

    result = _get(files_server, path)

    assert result.status == 200, result.describe()
    assert result.body == (files_dir / UNICODE).read_bytes()
    kind, params = _disposition_params(result.header("content-disposition") or "")
    assert kind == "attachment"
    charset, _, encoded = params["filename*"].partition("''")
    assert charset.lower() == "utf-8"
    assert urllib.parse.unquote(encoded, encoding="utf-8", errors="strict") == UNICODE
    assert params["filename"].isascii()
    assert params["filename"].isprintable()

    with tempfile.TemporaryDirectory(prefix="e2e-curl-J-") as tmp:
        done = subprocess.run(
            ["curl", "-sS", "--http1.1", "-J", "-O", f"http://127.0.0.1:{files_server.port}{path}"],
            cwd=tmp,
            capture_output=True,
            timeout=15,
            check=False,
        )
        saved = os.listdir(tmp)
        assert done.returncode == 0, done.stderr
        # curl 7.88 reads only the ASCII filename= parameter, so it saves the fallback name.
        assert saved == [params["filename"]], saved
        assert (Path(tmp) / saved[0]).read_bytes() == (files_dir / UNICODE).read_bytes()


def test_quotes_and_line_breaks_in_a_filename_cannot_break_or_inject_a_header(
    files_server: RunningServer,
) -> None:
    evil = 'a"b\r\nX-Injected: yes\r\n\r\nc.txt'
    path = f"/file/{PAGE}?inline=1&filename=" + urllib.parse.quote(evil)

    response = http1(files_server.port, "GET", path, {"Connection": "close"}, timeout=5.0)

    assert response.status == 200, response.describe()
    assert response.header("x-injected") is None, response.describe()
    values = [value for name, value in response.head.headers if name == "content-disposition"]
    assert len(values) == 1, response.head.headers
    kind, params = _disposition_params(values[0])
    assert kind == "inline"
    assert "\r" not in values[0]
    assert "\n" not in values[0]
    # The control characters are gone (dropped or replaced); the rest of the name is kept.
    decoded = urllib.parse.unquote(params["filename*"].partition("''")[2])
    assert "\r" not in decoded
    assert "\n" not in decoded
    assert decoded.startswith('a"b')
    assert decoded.endswith("c.txt")


# --- precompressed siblings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept_encoding", "encoding"),
    [
        ("br", "br"),
        ("gzip", "gzip"),
        ("gzip;q=0", None),
        ("br;q=0, gzip", "gzip"),
        ("gzip;q=0.5, br;q=0.9", "br"),
        ("br;q=0.2, gzip;q=0.8", "gzip"),
        ("identity", None),
        (None, None),
    ],
)
def test_precompressed_siblings_follow_accept_encoding_and_its_q_values(
    files_server: RunningServer, files_dir: Path, accept_encoding: str | None, encoding: str | None
) -> None:
    headers = {} if accept_encoding is None else {"Accept-Encoding": accept_encoding}
    sibling = {None: PAGE, "br": f"{PAGE}.br", "gzip": f"{PAGE}.gz"}[encoding]
    identity = _get(files_server, f"/file/{PAGE}?precompressed=1")

    result = _get(files_server, f"/file/{PAGE}?precompressed=1", headers=headers)

    assert result.status == 200, result.describe()
    assert result.body == (files_dir / sibling).read_bytes()
    assert result.header("content-encoding") == encoding
    assert result.header("content-length") == str(len(result.body))
    assert result.header("content-type") == "text/plain; charset=utf-8"
    assert "accept-encoding" in (result.header("vary") or "").lower(), result.describe()
    if encoding is not None:
        assert result.header("etag") != identity.header("etag")
    if encoding == "gzip":
        assert gzip.decompress(result.body) == (files_dir / PAGE).read_bytes()


def test_without_precompressed_the_siblings_are_ignored(files_server: RunningServer, files_dir: Path) -> None:
    result = _get(files_server, f"/file/{PAGE}", headers={"Accept-Encoding": "br, gzip"})

    assert result.status == 200
    assert result.header("content-encoding") is None
    assert result.body == (files_dir / PAGE).read_bytes()


# --- the file's reads, on the server -------------------------------------------------------


def test_a_client_that_disconnects_after_1_mib_stops_the_file_reads(
    files_server: RunningServer, probe_id: str
) -> None:
    request = f"GET /object/{LARGE}?id={probe_id} HTTP/1.1\r\nHost: e2e\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", files_server.port), timeout=10.0) as sock:
        sock.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < MIB:
            data = sock.recv(65536)
            assert data, f"the server closed the connection early: {received[:300]!r}"
            received += data
    head = received.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith("HTTP/1.1 200"), head
    assert f"content-length: {LARGE_BYTES}" in head.lower(), head

    probe = _wait_probe(files_server, probe_id, "closed")
    assert probe.get("closed") is True, f"the file object was never closed: {probe}"
    time.sleep(0.5)
    later = _probe(files_server, probe_id)
    assert later["bytes_read"] == probe["bytes_read"], (probe, later)
    # What was read beyond the client's 1 MiB sits in the socket buffers and the server's own
    # (observed: 5 to 9 MiB on uvicorn and hypercorn, about 17 MiB on granian).
    bound = 32 * MIB
    assert probe["bytes_read"] < bound, f"read {probe['bytes_read']} of {LARGE_BYTES} bytes: {probe}"
    assert probe["body_bytes"] < bound, probe


def test_a_file_that_shrinks_while_being_sent_ends_as_a_broken_transfer(
    files_server: RunningServer, files_dir: Path
) -> None:
    name = f"shrink-{files_server.name}.bin"
    path = files_dir / name
    # Much more than the server, the kernel's socket buffers and curl together hold at once, so
    # the file is still being read when it shrinks, even on a loaded machine.
    path.write_bytes(os.urandom(48 * MIB))
    with tempfile.TemporaryDirectory(prefix="e2e-shrink-") as tmp:
        output = Path(tmp) / "body"
        argv = ["curl", "-sS", "--http1.1", "--limit-rate", "2M", "--max-time", "40", "-o", str(output)]
        argv += [
            "--write-out",
            "%{http_code} %{size_download}",
            f"http://127.0.0.1:{files_server.port}/file/{name}",
        ]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            try:
                deadline = time.monotonic() + 10
                while not (output.exists() and output.stat().st_size >= 256 * 1024):
                    assert proc.poll() is None, proc.communicate()
                    assert time.monotonic() < deadline, "the download did not start"
                    time.sleep(0.02)
                os.truncate(path, MIB)
                stdout, stderr = proc.communicate(timeout=45)
            finally:
                if proc.poll() is None:
                    proc.kill()
    status, size = stdout.decode().split()
    assert status == "200"
    assert proc.returncode == CURL_PARTIAL_FILE, (proc.returncode, stderr, size)
    assert int(size) < 48 * MIB
    if files_server.name != "granian":
        # The server took the error path (on granian the server itself sends the file, with
        # pathsend, so it is granian that cuts the connection short).
        assert "shrank while it was being sent" in files_server.output()


def test_granian_sends_a_whole_file_with_pathsend_and_the_others_read_and_stream_it(
    files_server: RunningServer, probe_id: str
) -> None:
    result = _get(files_server, f"/file/{RANDOM}?id={probe_id}")
    assert result.exit_code == 0, result.describe()
    assert len(result.body) == RANDOM_BYTES, result.describe()

    probe = _probe(files_server, probe_id)
    assert probe["pathsend_offered"] is (files_server.name == "granian"), probe
    if probe["pathsend_offered"]:
        # The whole file went out as one pathsend message: the app read none of it.
        assert probe["messages"] == {"http.response.start": 1, "http.response.pathsend": 1}, probe
        assert probe["body_bytes"] == 0, probe
    else:
        assert "http.response.pathsend" not in probe["messages"], probe
        assert probe["body_bytes"] == RANDOM_BYTES, probe


def test_a_range_on_granian_is_streamed_not_pathsent(files_server: RunningServer, probe_id: str) -> None:
    result = _get(files_server, f"/file/{RANDOM}?id={probe_id}", "--range", "0-99")

    assert result.status == 206, result.describe()
    probe = _probe(files_server, probe_id)
    assert "http.response.pathsend" not in probe["messages"], probe
    assert probe["body_bytes"] == 100, probe
