"""Real clients for the end-to-end tests: raw HTTP/1.1 sockets, curl, and h2c over ``h2``.

Each client reports what a user on the wire would see (status, headers, body bytes, whether the
body was properly terminated, whether the server closed the connection, trailers) as plain data,
and never blocks longer than its timeout: a server that hangs shows up as ``timed_out``.
Every client talks to 127.0.0.1 only.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from tests.sse_parser import EventStreamParser, ParsedEvent

HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 5.0


class ConnectionClosed(Exception):
    """The server closed (or reset) the connection while more data was expected."""


# --- raw HTTP/1.1 -------------------------------------------------------------------------


@dataclass
class Head:
    status: int
    reason: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``None``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def chunked(self) -> bool:
        return "chunked" in (self.header("transfer-encoding") or "").lower()

    @property
    def content_length(self) -> int | None:
        value = self.header("content-length")
        return int(value) if value is not None else None


@dataclass
class RawResponse:
    """One HTTP/1.1 response as read off a socket."""

    head: Head
    body: bytes = b""
    #: The chunk-size frames of a chunked body, in order (without the terminating empty one).
    frames: list[bytes] = field(default_factory=list)
    #: Whether the body ended properly: the zero-size chunk, or all Content-Length bytes.
    terminated: bool = False
    #: Whether the server closed or reset the connection.
    closed: bool = False
    #: Whether the client gave up waiting (the server neither finished nor closed).
    timed_out: bool = False
    #: Bytes that arrived after a Content-Length body was complete.
    extra: bytes = b""
    #: ``(time.monotonic(), bytes)`` for every read of this response (the head's included).
    reads: list[tuple[float, int]] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.head.status

    def header(self, name: str) -> str | None:
        return self.head.header(name)

    def describe(self) -> str:
        """A one-paragraph account for assertion messages."""
        return (
            f"status={self.head.status} headers={self.head.headers} body={self.body[:300]!r}"
            f"{'...' if len(self.body) > 300 else ''} ({len(self.body)} bytes, {len(self.frames)} frames, "
            f"{len(self.reads)} reads) terminated={self.terminated} closed={self.closed} "
            f"timed_out={self.timed_out} extra={self.extra!r}"
        )


class H1Connection:
    """A raw HTTP/1.1 client on one socket, readable step by step.

    ``timeout`` bounds every single wait on the socket.
    """

    def __init__(self, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._buffer = b""
        self.closed_by_server = False
        #: ``(time.monotonic(), bytes)`` for every recv that returned data.
        self.reads: list[tuple[float, int]] = []

    # -- lifecycle

    def __enter__(self) -> H1Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self, *, reset: bool = False) -> None:
        """Close the socket; ``reset=True`` sends a TCP RST instead of a FIN."""
        if reset:
            # SO_LINGER with a zero timeout makes close() abort the connection.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()

    # -- writing

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))

    def send_chunk(self, data: bytes) -> None:
        """Send one frame of a chunked request body (``b""`` ends the body)."""
        self.send(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    # -- reading

    def _fill(self, deadline: float | None = None) -> None:
        """One recv into the buffer; raises ConnectionClosed on EOF/reset, TimeoutError on timeout."""
        if self.closed_by_server:
            raise ConnectionClosed("the server had already closed the connection")
        timeout = self.timeout if deadline is None else max(0.0, deadline - time.monotonic())
        if timeout <= 0:
            raise TimeoutError("deadline passed")
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.closed_by_server = True
            raise ConnectionClosed(str(exc)) from exc
        except TimeoutError as exc:
            raise TimeoutError(f"no data from the server within {timeout:.2f}s") from exc
        if not data:
            self.closed_by_server = True
            raise ConnectionClosed("the server closed the connection")
        self.reads.append((time.monotonic(), len(data)))
        self._buffer += data

    def _read_until(self, marker: bytes, deadline: float | None = None) -> bytes:
        while marker not in self._buffer:
            self._fill(deadline)
        data, _, self._buffer = self._buffer.partition(marker)
        return data

    def _read_exact(self, n: int, deadline: float | None = None) -> bytes:
        while len(self._buffer) < n:
            self._fill(deadline)
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def read_head(self) -> Head:
        raw = self._read_until(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        _, status, *reason = status_line.split(" ", 2)
        headers = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return Head(int(status), reason[0] if reason else "", headers)

    def read_frame(self, deadline: float | None = None) -> bytes:
        """The data of the next chunk of a chunked body; ``b""`` for the terminating chunk.

        After the terminating chunk the trailer section (normally empty) is consumed too.
        """
        size_line = self._read_until(b"\r\n", deadline)
        size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
        if size == 0:
            # The trailer section: field lines up to an empty line (RFC 9112 section 7.1.2).
            while self._read_until(b"\r\n", deadline):
                pass
            return b""
        data = self._read_exact(size, deadline)
        if self._read_exact(2, deadline) != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")
        return data

    def read_available(self, deadline: float) -> bytes:
        """Whatever arrives (buffered first) before ``deadline``; stops at EOF."""
        data = b""
        while True:
            data += self._buffer
            self._buffer = b""
            try:
                self._fill(deadline)
            except (TimeoutError, ConnectionClosed):
                data += self._buffer
                self._buffer = b""
                return data

    def read_response(
        self,
        method: str = "GET",
        *,
        total_timeout: float | None = None,
        on_frame: Callable[[bytes], None] | None = None,
        check_extra: float = 0.0,
    ) -> RawResponse:
        """Read one whole response, however it ends, within ``total_timeout`` seconds.

        ``check_extra`` waits that long after a Content-Length body for bytes that should not
        be there.
        """
        deadline = time.monotonic() + (total_timeout if total_timeout is not None else self.timeout)
        first_read = len(self.reads)
        head = self.read_head()
        response = RawResponse(head=head)
        try:
            if method == "HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
                response.terminated = True
            elif head.chunked:
                while True:
                    frame = self.read_frame(deadline)
                    if not frame:
                        response.terminated = True
                        break
                    response.frames.append(frame)
                    response.body += frame
                    if on_frame is not None:
                        on_frame(frame)
            elif head.content_length is not None:
                expected = head.content_length
                while len(response.body) < expected:
                    if not self._buffer:
                        self._fill(deadline)
                    take = self._buffer[: expected - len(response.body)]
                    self._buffer = self._buffer[len(take) :]
                    response.body += take
                response.terminated = True
                if check_extra:
                    response.extra = self.read_available(time.monotonic() + check_extra)
            else:
                response.body = self.read_available(deadline)
                response.terminated = self.closed_by_server
                if not self.closed_by_server:
                    response.timed_out = True
        except ConnectionClosed:
            if head.content_length is not None and not head.chunked:
                response.body += self._buffer
                self._buffer = b""
        except TimeoutError:
            response.timed_out = True
        response.closed = self.closed_by_server
        response.reads = self.reads[first_read:]
        return response

    def wait_closed(self, timeout: float) -> bool:
        """Whether the server closes the connection within ``timeout`` (data read is dropped)."""
        deadline = time.monotonic() + timeout
        self.read_available(deadline)
        return self.closed_by_server


class EventStreamReader:
    """An event stream read off a raw HTTP/1.1 socket and parsed as a browser would.

    ``ended`` says the terminating chunk arrived (a clean end of the body), ``aborted`` that
    the connection closed without it.
    """

    def __init__(self, port: int, path: str, last_id: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Last-Event-ID": last_id} if last_id is not None else None
        self.conn = H1Connection(port, timeout=timeout)
        self.conn.send_request("GET", path, headers)
        self.head = self.conn.read_head()
        self.pid = int(self.head.header("x-worker-pid") or 0)
        self.parser = EventStreamParser()
        self.ended = False
        self.aborted = False

    def read(self, deadline: float) -> None:
        """Read and parse the next chunk (or note how the body ended)."""
        try:
            frame = self.conn.read_frame(deadline)
        except ConnectionClosed:
            self.aborted = True
            return
        if frame:
            self.parser.feed(frame)
        else:
            self.ended = True

    def events(self, count: int, timeout: float = 30.0) -> list[ParsedEvent]:
        """Read until ``count`` events arrived (or the stream ended); return all so far."""
        deadline = time.monotonic() + timeout
        while len(self.parser.events) < count and not (self.ended or self.aborted):
            self.read(deadline)
        return self.parser.events

    def until_closed(self, timeout: float = 30.0) -> list[ParsedEvent]:
        """Read until the body ended or the connection closed; return every event."""
        deadline = time.monotonic() + timeout
        while not (self.ended or self.aborted):
            self.read(deadline)
        return self.parser.events

    def close(self) -> None:
        self.conn.close()


def http1(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    check_extra: float = 0.0,
) -> RawResponse:
    """Send one request on a fresh connection and read the whole response."""
    with H1Connection(port, timeout=timeout) as conn:
        conn.send_request(method, path, headers, body)
        return conn.read_response(method, total_timeout=timeout, check_extra=check_extra)


# --- curl ---------------------------------------------------------------------------------

#: curl's exit code for "transfer closed with outstanding read data remaining".
CURL_PARTIAL_FILE = 18


@dataclass
class CurlResult:
    exit_code: int
    status: int | None
    headers: list[tuple[str, str]]
    body: bytes
    stderr: str

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def describe(self) -> str:
        return (
            f"curl exit={self.exit_code} status={self.status} headers={self.headers} "
            f"body={self.body[:300]!r} ({len(self.body)} bytes) stderr={self.stderr.strip()!r}"
        )


def curl(
    port: int,
    path: str,
    *args: str,
    method: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> CurlResult:
    """Run curl against 127.0.0.1 (HTTP/1.1 unless ``args`` say otherwise); ``--max-time`` bounds it."""
    with tempfile.TemporaryDirectory(prefix="e2e-curl-") as tmp:
        header_file = Path(tmp) / "headers"
        argv = ["curl", "--silent", "--show-error", "--no-buffer", "--http1.1"]
        argv += ["--max-time", f"{timeout:g}", "--dump-header", str(header_file)]
        if method is not None:
            argv += ["--head"] if method == "HEAD" else ["--request", method]
        for name, value in (headers or {}).items():
            argv += ["--header", f"{name}: {value}"]
        argv += [*args, f"http://{HOST}:{port}{path}"]
        proc = subprocess.run(argv, capture_output=True, timeout=timeout + 5, check=False)
        raw_headers = header_file.read_bytes().decode("latin-1") if header_file.exists() else ""
    status, headers_out = _parse_curl_headers(raw_headers)
    body = proc.stdout
    if method == "HEAD":
        body = b""  # with --head curl prints the headers to stdout as well
    return CurlResult(proc.returncode, status, headers_out, body, proc.stderr.decode(errors="replace"))


def _parse_curl_headers(raw: str) -> tuple[int | None, list[tuple[str, str]]]:
    # The last block wins (curl dumps interim responses too).
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    if not blocks:
        return None, []
    status_line, *lines = blocks[-1].split("\n")
    parts = status_line.split(" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    return status, headers


# --- h2c (HTTP/2 with prior knowledge) ------------------------------------------------------


@dataclass
class H2Response:
    """One HTTP/2 stream as the client saw it."""

    stream_id: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    data: bytes = b""
    #: ``(time.monotonic(), bytes)`` per DATA frame.
    frames: list[tuple[float, int]] = field(default_factory=list)
    trailers: list[tuple[str, str]] | None = None
    #: The stream ended with END_STREAM (a clean end, as far as HTTP/2 framing goes).
    ended: bool = False
    #: The RST_STREAM error code, if the server reset the stream.
    reset: int | None = None
    #: The server closed the connection (GOAWAY or EOF) before the stream ended.
    connection_closed: bool = False
    timed_out: bool = False

    @property
    def status(self) -> int | None:
        value = self.header(":status")
        return int(value) if value is not None else None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def trailer(self, name: str) -> str | None:
        for key, value in self.trailers or []:
            if key == name:
                return value
        return None

    @property
    def finished(self) -> bool:
        return self.ended or self.reset is not None or self.connection_closed

    def describe(self) -> str:
        return (
            f"h2 stream {self.stream_id}: headers={self.headers} data={self.data[:300]!r} "
            f"({len(self.data)} bytes) trailers={self.trailers} ended={self.ended} reset={self.reset} "
            f"connection_closed={self.connection_closed} timed_out={self.timed_out}"
        )


class H2Connection:
    """An HTTP/2 client over a plain socket using prior knowledge (RFC 9113 section 3.3)."""

    def __init__(self, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.streams: dict[int, H2Response] = {}
        self.closed = False
        self._flush()

    def __enter__(self) -> H2Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        *,
        end_stream: bool = True,
    ) -> int:
        """Open a stream; with ``end_stream=False`` the body stays open for :meth:`send_data`."""
        stream_id: int = self.conn.get_next_available_stream_id()
        fields = [(":method", method), (":scheme", "http"), (":authority", HOST), (":path", path)]
        fields += [(k.lower(), v) for k, v in (headers or {}).items()]
        self.streams[stream_id] = H2Response(stream_id)
        self.conn.send_headers(stream_id, fields, end_stream=end_stream and not body)
        if body:
            self.conn.send_data(stream_id, body, end_stream=end_stream)
        self._flush()
        return stream_id

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        self.conn.send_data(stream_id, data, end_stream=end_stream)
        self._flush()

    def reset(self, stream_id: int) -> None:
        """Cancel the stream (RST_STREAM with CANCEL), as a browser does when a tab closes."""
        self.conn.reset_stream(stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
        self._flush()

    def _pump(self, deadline: float) -> None:
        """Read once from the socket and apply the events to the stream records."""
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise TimeoutError("deadline passed")
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError as exc:
            raise TimeoutError("no data from the server") from exc
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            for stream in self.streams.values():
                if not stream.finished:
                    stream.connection_closed = True
            return
        now = time.monotonic()
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            raise
        for event in events:
            self._apply(event, now)
        self._flush()

    def _apply(self, event: h2.events.Event, now: float) -> None:
        stream_id = getattr(event, "stream_id", None)
        stream = self.streams.get(stream_id) if stream_id is not None else None
        if isinstance(event, h2.events.ResponseReceived) and stream is not None:
            stream.headers = _decode_fields(event.headers or [])
        elif isinstance(event, h2.events.TrailersReceived) and stream is not None:
            stream.trailers = _decode_fields(event.headers or [])
        elif isinstance(event, h2.events.DataReceived) and stream is not None:
            payload = event.data or b""
            stream.data += payload
            stream.frames.append((now, len(payload)))
            # Give the window back at once so that a long stream never stalls on flow control.
            if event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, stream.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and stream is not None:
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset) and stream is not None:
            stream.reset = int(event.error_code) if event.error_code is not None else -1
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.closed = True
            for other in self.streams.values():
                if not other.finished:
                    other.connection_closed = True

    def wait(self, stream_id: int, until: Callable[[H2Response], bool], timeout: float | None = None) -> bool:
        """Read until ``until(stream)`` holds, the stream finishes, or ``timeout`` passes."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        stream = self.streams[stream_id]
        while not until(stream):
            if stream.finished or self.closed:
                return until(stream)
            try:
                self._pump(deadline)
            except TimeoutError:
                stream.timed_out = True
                return False
        return True

    def response(self, stream_id: int, timeout: float | None = None) -> H2Response:
        """Read until the stream finishes (or the timeout passes) and return it."""
        self.wait(stream_id, lambda s: s.finished, timeout)
        return self.streams[stream_id]


def _decode_fields(fields: Iterable[tuple[bytes | str, bytes | str]]) -> list[tuple[str, str]]:
    out = []
    for name, value in fields:
        key = name.decode("latin-1") if isinstance(name, bytes) else name
        val = value.decode("latin-1") if isinstance(value, bytes) else value
        out.append((key, val))
    return out


def h2c(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> H2Response:
    """One request on a fresh h2c connection, read to the end of its stream."""
    with H2Connection(port, timeout=timeout) as conn:
        stream_id = conn.request(method, path, headers, body)
        return conn.response(stream_id, timeout)
