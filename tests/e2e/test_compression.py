"""Compressed streams on real servers, with real clients: raw sockets, h2c, curl, Chromium.

The event-stream tests run in *lockstep* (``tests.e2e.compression_app``): the server makes
event ``n + 1`` only after the client decoded event ``n`` from the bytes it had received and
acknowledged it. An event held in a compressor's window would therefore never be decoded and
the stream would stall (the client's read times out and the test fails); it cannot merely be
late. So the tests assert decodability on arrival without any clock; how many milliseconds
each event takes is measured by the benchmark harness (``benchmarks.suite_compression``).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.decoders import CODINGS, StreamDecoder, decode
from tests.sse_parser import EventStreamParser

from .clients import CURL_PARTIAL_FILE, H1Connection, H2Connection, H2Response, curl, http1
from .servers import KINDS, RunningServer, start_server
from .state import wait_for_probe

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

APP = "tests.e2e.compression_app:app"
EVENTS = 8
#: What a browser offers: each stream allows only the coding under test (``compress=(coding,)``).
ACCEPT = {"Accept-Encoding": "gzip, deflate, br, zstd"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module", params=list(KINDS))
def compression_server(request: pytest.FixtureRequest) -> Iterator[RunningServer]:
    server = start_server(request.param, app=APP)
    try:
        yield server
    finally:
        server.stop()


def _grew(taken: int, stream: H2Response) -> bool:
    return len(stream.data) > taken or stream.finished


def _ack(server: RunningServer, stream: str, n: int) -> None:
    response = http1(server.port, "POST", f"/ack?id={stream}&n={n}")
    assert response.status == 200, response.describe()


class LockstepReader:
    """Decodes a compressed event stream as its bytes arrive and acknowledges each event."""

    def __init__(self, server: RunningServer, stream: str, coding: str) -> None:
        self.server = server
        self.stream = stream
        self.decoder = StreamDecoder(coding)
        self.parser = EventStreamParser()
        self.numbers: list[int] = []
        #: Seconds from the server's yield to the decode, per event (reported, never asserted).
        self.latencies: list[float] = []

    def feed(self, data: bytes) -> None:
        arrived = time.monotonic()
        for event in self.parser.feed(self.decoder.feed(data)):
            payload = json.loads(event.data)
            self.numbers.append(payload["n"])
            self.latencies.append(arrived - payload["at"])
            _ack(self.server, self.stream, payload["n"])

    def describe(self) -> str:
        shown = ", ".join(f"{seconds * 1000:.1f}" for seconds in self.latencies)
        return f"events {self.numbers}, yield-to-decode ms [{shown}]"


@pytest.mark.parametrize("coding", CODINGS)
def test_each_event_decodes_on_arrival_over_http1(compression_server: RunningServer, coding: str) -> None:
    stream = uuid.uuid4().hex[:12]
    reader = LockstepReader(compression_server, stream, coding)
    with H1Connection(compression_server.port, timeout=10.0) as conn:
        conn.send_request("GET", f"/lockstep?id={stream}&n={EVENTS}&coding={coding}", ACCEPT)
        head = conn.read_head()
        assert head.status == 200
        assert head.header("content-encoding") == coding, head.headers
        assert head.header("vary") == "Accept-Encoding"
        assert head.header("content-length") is None
        while True:
            frame = conn.read_frame()  # a held-back event: no frame within 10 s, TimeoutError
            if not frame:
                break
            reader.feed(frame)
    assert reader.numbers == list(range(1, EVENTS + 1)), reader.describe()
    assert reader.decoder.finished
    probe = wait_for_probe(compression_server, stream, "outcome")
    assert probe["outcome"] == "complete", probe
    assert probe["content_encoding"] == coding


@pytest.mark.parametrize("coding", CODINGS)
def test_each_event_decodes_on_arrival_over_h2c(coding: str) -> None:
    server = start_server("hypercorn", app=APP)
    stream = uuid.uuid4().hex[:12]
    reader = LockstepReader(server, stream, coding)
    try:
        with H2Connection(server.port, timeout=10.0) as conn:
            stream_id = conn.request("GET", f"/lockstep?id={stream}&n={EVENTS}&coding={coding}", ACCEPT)
            response = conn.streams[stream_id]
            taken = 0
            while not response.finished:
                more = functools.partial(_grew, taken)
                assert conn.wait(stream_id, more), response.describe()
                reader.feed(response.data[taken:])
                taken = len(response.data)
        assert response.header("content-encoding") == coding
        assert response.ended, response.describe()
        assert reader.numbers == list(range(1, EVENTS + 1)), reader.describe()
        assert reader.decoder.finished
    finally:
        server.stop()


@pytest.mark.parametrize("coding", CODINGS)
def test_curl_compressed_downloads_csv_intact(compression_server: RunningServer, coding: str) -> None:
    probe = uuid.uuid4().hex[:12]
    plain = curl(compression_server.port, "/report.csv?coding=&rows=20000")
    assert plain.exit_code == 0, plain.describe()
    assert plain.header("content-encoding") is None
    result = curl(
        compression_server.port,
        f"/report.csv?id={probe}&coding={coding}&rows=20000",
        "--compressed",
        headers={"Accept-Encoding": coding},
        timeout=20,
    )
    assert result.exit_code == 0, result.describe()
    assert result.header("content-encoding") == coding
    assert result.header("content-disposition") == 'attachment; filename="report.csv"'
    assert result.body == plain.body
    assert result.body.count(b"\r\n") == 20001
    record = wait_for_probe(compression_server, probe, "outcome")
    assert record["content_encoding"] == coding
    assert record["bytes_sent"] == len(plain.body)
    assert record["encoded_bytes"] < len(plain.body) * 0.3


@pytest.mark.parametrize("coding", CODINGS)
def test_curl_compressed_downloads_json_lines_intact(compression_server: RunningServer, coding: str) -> None:
    result = curl(
        compression_server.port, "/items.jsonl?n=20000", "--compressed", headers={"Accept-Encoding": coding}
    )
    assert result.exit_code == 0, result.describe()
    assert result.header("content-encoding") == coding
    lines = result.body.split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line)["id"] for line in lines[:-1]] == list(range(20000))


@pytest.mark.parametrize("coding", CODINGS)
def test_a_failed_compressed_csv_is_never_complete_for_curl(
    compression_server: RunningServer, coding: str
) -> None:
    result = curl(
        compression_server.port,
        f"/report.csv?coding={coding}&rows=20000&broken=15000",
        "--compressed",
        headers={"Accept-Encoding": coding},
        timeout=20,
    )
    assert result.status == 200, result.describe()
    assert result.exit_code == CURL_PARTIAL_FILE, result.describe()
    assert result.body.startswith(b"id,name,text,half\r\n0,")


def test_a_client_that_asks_for_nothing_gets_the_identity_with_vary(
    compression_server: RunningServer,
) -> None:
    response = http1(compression_server.port, "GET", "/items.jsonl?n=100")
    assert response.status == 200
    assert response.header("content-encoding") is None
    assert response.header("vary") == "Accept-Encoding"
    coded = http1(compression_server.port, "GET", "/items.jsonl?n=100", {"Accept-Encoding": "br"})
    assert coded.header("content-encoding") == "br"
    assert decode("br", coded.body) == response.body


# -- a real browser ------------------------------------------------------------------------------


def _report(port: int, probe_id: str) -> Any:
    return json.loads(http1(port, "GET", f"/_report?id={probe_id}").body)


@pytest.mark.timeout(120)
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps installs it)")
def test_chromium_eventsource_receives_every_compressed_event_on_arrival() -> None:
    assert CHROMIUM is not None
    server = start_server("uvicorn-httptools", app=APP)
    probe_id = uuid.uuid4().hex[:12]
    profile = tempfile.mkdtemp(prefix="e2e-chromium-")
    browser = None
    try:
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                f"--user-data-dir={profile}",
                server.url(f"/page?id={probe_id}&total={EVENTS}&codings={','.join(CODINGS)}"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        report = None
        while report is None and time.monotonic() < deadline:
            report = _report(server.port, probe_id)
            time.sleep(0.2)
        streams = {
            coding: wait_for_probe(server, f"{probe_id}-{coding}", "content_encoding") for coding in CODINGS
        }
    finally:
        if browser is not None:
            browser.kill()
            browser.wait(10)
        server.stop()
        shutil.rmtree(profile, ignore_errors=True)
    assert report is not None, f"the page never reported; streams: {streams!r}"
    for coding in CODINGS:
        # Chromium offers gzip, deflate, br and zstd even on http://127.0.0.1; each stream was
        # sent with the one coding it allowed, and every event reached the page in lockstep.
        assert streams[coding]["content_encoding"] == coding, streams
        assert report[coding]["done"], report
        assert report[coding]["seen"] == list(range(1, EVENTS + 1)), report
