"""The two clients: curl for throughput, a raw-socket reader for latency.

Both check what they received before they return a number: a wrong status, size or framing
raises :class:`BenchmarkError`, so a broken response can never pass for a fast one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.parse

CURL_FORMAT = "%{http_code} %{size_download} %{time_total}"


class BenchmarkError(Exception):
    """A measurement is invalid: the response was wrong, so there is no number to report."""


def curl(url: str, *, expected_bytes: int, output: str = os.devnull, timeout: float = 300.0) -> float:
    """Download ``url`` with curl and return its ``time_total`` in seconds.

    Raises :class:`BenchmarkError` unless curl exits 0 with status 200 and exactly
    ``expected_bytes`` bytes. ``-q`` ignores any ``~/.curlrc`` and ``--noproxy`` any proxy
    variables, so every run measures the same thing.
    """
    command = [
        "curl",
        "-q",
        "--silent",
        "--show-error",
        "--http1.1",
        "--noproxy",
        "*",
        "--max-time",
        f"{timeout:g}",
        "--output",
        output,
        "--write-out",
        CURL_FORMAT,
        url,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 10, check=False)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"curl did not finish {url} within {timeout:g}s") from None
    if done.returncode != 0:
        raise BenchmarkError(f"curl exited {done.returncode} for {url}: {done.stderr.strip()}")
    try:
        status, size, seconds = done.stdout.split()
        size_downloaded, total = int(size), float(seconds)
    except ValueError:
        raise BenchmarkError(f"cannot parse curl's --write-out for {url}: {done.stdout!r}") from None
    if status != "200":
        raise BenchmarkError(f"{url} answered {status}, expected 200")
    if size_downloaded != expected_bytes:
        raise BenchmarkError(f"{url} sent {size_downloaded} bytes, expected {expected_bytes}")
    return total


def download(url: str, *, timeout: float = 600.0) -> bytes:
    """Fetch ``url`` with curl and return the body, for checking it before anything is timed."""
    with tempfile.TemporaryDirectory(prefix="bench-body-") as scratch:
        path = os.path.join(scratch, "body")
        done = subprocess.run(
            ["curl", "-q", "--silent", "--show-error", "--http1.1", "--noproxy", "*", "-o", path, url],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise BenchmarkError(f"curl exited {done.returncode} for {url}: {done.stderr.strip()}")
        with open(path, "rb") as body:
            return body.read()


class ChunkedDecoder:
    """Incremental decoder of an HTTP/1.1 chunked body (RFC 9112 §7.1).

    Feed it bytes as they arrive; it returns the body bytes decoded so far and sets ``done``
    after the last chunk and the trailer section.

    >>> decoder = ChunkedDecoder()
    >>> decoder.feed(b"3\\r\\nabc\\r\\n0\\r\\n\\r\\n"), decoder.done
    (b'abc', True)
    """

    def __init__(self) -> None:
        self.done = False
        self._buffer = bytearray()
        self._state = "size"
        self._remaining = 0

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes from the wire; return the body bytes they complete."""
        if self.done and data:
            raise BenchmarkError("bytes after the end of a chunked body")
        self._buffer += data
        out = bytearray()
        while not self.done:
            if self._state == "data":
                taken = bytes(self._buffer[: self._remaining])
                if not taken:
                    break
                del self._buffer[: len(taken)]
                out += taken
                self._remaining -= len(taken)
                if self._remaining == 0:
                    self._state = "crlf"
                continue
            if self._state == "crlf":
                if len(self._buffer) < 2:
                    break
                if self._buffer[:2] != b"\r\n":
                    raise BenchmarkError("chunk data not followed by CRLF")
                del self._buffer[:2]
                self._state = "size"
                continue
            line = self._line()
            if line is None:
                break
            if self._state == "size":
                self._remaining = self._chunk_size(line)
                self._state = "data" if self._remaining else "trailers"
            elif not line:  # the empty line that ends the trailer section
                self.done = True
        return bytes(out)

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    @staticmethod
    def _chunk_size(line: bytes) -> int:
        try:
            return int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise BenchmarkError(f"bad chunk size line {line!r}") from None


def read_stamps(url: str, *, timeout: float = 60.0) -> list[tuple[int, int]]:
    """GET ``url`` and return ``(stamped_ns, received_ns)`` for each record of its body.

    The body is a sequence of ``_payload.stamp()`` records. ``received_ns`` is
    ``time.monotonic_ns()`` right after the ``recv`` that completed the record, so it is the
    moment this process could first have acted on it.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    request = f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    try:
        return _read_records(host, port, request, url, timeout)
    except OSError as exc:  # refused, reset or timed out: the server is broken, not slow
        raise BenchmarkError(f"{url}: {exc!r}") from exc


def _read_records(host: str, port: int, request: bytes, url: str, timeout: float) -> list[tuple[int, int]]:
    records: list[tuple[int, int]] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        _headers, rest = _read_head(sock, url)
        decoder = ChunkedDecoder()
        pending = bytearray()
        data = rest
        while True:
            received = time.monotonic_ns()
            pending += decoder.feed(data)
            *lines, tail = bytes(pending).split(b"\n")
            pending = bytearray(tail)
            try:
                records.extend((int(line), received) for line in lines)
            except ValueError:
                raise BenchmarkError(f"{url}: a record is not a time stamp: {lines!r}") from None
            if decoder.done:
                break
            data = sock.recv(65536)
            if not data:
                raise BenchmarkError(f"{url}: connection closed before the end of the chunked body")
    if pending:
        raise BenchmarkError(f"{url}: body ends with a partial record {bytes(pending)!r}")
    return records


def _read_head(sock: socket.socket, url: str) -> tuple[dict[str, str], bytes]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise BenchmarkError(f"{url}: connection closed before the response head")
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    if status_line.split(" ")[1:2] != ["200"]:
        raise BenchmarkError(f"{url} answered {status_line!r}, expected 200")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() != "chunked":
        raise BenchmarkError(f"{url}: expected a chunked (streamed) response, got headers {headers}")
    return headers, rest
