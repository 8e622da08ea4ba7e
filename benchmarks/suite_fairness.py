"""Fairness under many sync producers: a trivial request's latency, and memory per slow client.

Rows (one uvicorn, the tabular app):

* ``csv-slow-clients-latency``: 200 clients download a large CSV from a sync generator and read
  it slowly (a small receive buffer, 4 KiB every 250 ms); meanwhile a trivial request
  (``GET /info``) is timed on fresh connections for the whole window. Reported: its p99 under
  that load against its p99 on the idle server just before (the baseline). Target: <= 50 ms.
* ``csv-slow-clients-rss``: the server's VmRSS growth with the 200 slow clients connected and
  stalled, divided by the number of clients. Target: <= 512 KiB per client.

Both rows come from the same run: the clients connect, the latency window runs, the RSS is
sampled at its end, then every client is closed and the server stopped.
"""

from __future__ import annotations

import selectors
import socket
import statistics
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from benchmarks._server import Server, ServerError, serve
from benchmarks.suite_files import vm_rss_kib

ROWS: tuple[str, ...] = ("csv-slow-clients-latency", "csv-slow-clients-rss")

CLIENTS, CLIENTS_SMOKE = 200, 10
WINDOW, WINDOW_SMOKE = 20.0, 2.0
#: Rows of the CSV each slow client asks for: far more than it reads during the window.
CSV_ROWS = 200_000
READ_BYTES = 4096
READ_EVERY = 0.25
RCVBUF = 8192
LATENCY_TARGET_MS = 50.0
RSS_TARGET_KIB = 512.0


class SlowClients:
    """``count`` sockets reading their CSV download ``READ_BYTES`` every ``READ_EVERY`` s."""

    def __init__(self, server: Server, count: int) -> None:
        parts = urlsplit(server.url("/"))
        self._address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._count = count
        self.sockets: list[socket.socket] = []
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="slow-clients", daemon=True)

    def __enter__(self) -> SlowClients:
        request = f"GET /csv/ours?rows={CSV_ROWS} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
        for _ in range(self._count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            sock.connect(self._address)
            sock.sendall(request)
            sock.setblocking(False)
            self.sockets.append(sock)
        self._thread.start()
        return self

    def _read(self) -> None:
        selector = selectors.DefaultSelector()
        for sock in self.sockets:
            selector.register(sock, selectors.EVENT_READ)
        while not self._stop.is_set():
            began = time.monotonic()
            for key, _ in selector.select(timeout=0):
                try:
                    data = key.fileobj.recv(READ_BYTES)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                self.received += len(data)
            self._stop.wait(max(0.0, READ_EVERY - (time.monotonic() - began)))
        selector.close()

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.sockets:
            sock.close()


def _trivial_ms(server: Server) -> float:
    parts = urlsplit(server.url("/info"))
    began = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=30) as sock:
        sock.sendall(b"GET /info HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        while sock.recv(65536):
            pass
    return (time.perf_counter() - began) * 1000


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _latencies(server: Server, seconds: float) -> list[float]:
    samples: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        samples.append(_trivial_ms(server))
        time.sleep(0.02)
    return samples


def _row(name: str, description: str, target: str, **rest: Any) -> dict[str, Any]:
    return {"name": name, "description": description, "target": target, "error": None, **rest}


def run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict[str, Any]]:
    """Measure both rows in one run (``rounds`` does not apply: one window is the measurement)."""
    wanted = [row for row in ROWS if only is None or row in only]
    clients = CLIENTS_SMOKE if smoke else CLIENTS
    window = WINDOW_SMOKE if smoke else WINDOW
    try:
        with serve(app="benchmarks.app_tabular:app") as server:
            print(f"  {clients} slow CSV clients ...", file=sys.stderr, flush=True)
            _latencies(server, 1.0)  # warm up
            with SlowClients(server, 1):  # builds the app's cached rows before RSS is read
                time.sleep(1.0)
            idle = _latencies(server, min(5.0, window))
            rss_before = vm_rss_kib(server.pid)
            with SlowClients(server, clients) as slow:
                loaded = _latencies(server, window)
                rss_during = vm_rss_kib(server.pid)
                received = slow.received
    except ServerError as exc:
        return [_row(name, name, "-", verified=False, error=str(exc)) for name in wanted]
    per_client = (rss_during - rss_before) / clients
    idle_p99, loaded_p99 = _p99(idle), _p99(loaded)
    results = []
    if "csv-slow-clients-latency" in wanted:
        results.append(
            _row(
                "csv-slow-clients-latency",
                f"p99 of a trivial request while {clients} slow clients download CSV from sync sources",
                f"<= {LATENCY_TARGET_MS:g} ms",
                verified=received > 0,
                samples={"idle_ms": idle, "loaded_ms": loaded, "received_bytes": received},
                summary={
                    "unit": "ms",
                    "ours": loaded_p99,
                    "baseline": idle_p99,
                    "baseline_name": "the idle server",
                    "ratio": loaded_p99 / idle_p99 if idle_p99 else None,
                    "median_loaded": statistics.median(loaded),
                    "passed": None if smoke else loaded_p99 <= LATENCY_TARGET_MS,
                },
            )
        )
    if "csv-slow-clients-rss" in wanted:
        results.append(
            _row(
                "csv-slow-clients-rss",
                f"server RSS growth per slow CSV client ({clients} clients, sync sources)",
                f"<= {RSS_TARGET_KIB:g} KiB",
                verified=received > 0,
                rss_before_kib=rss_before,
                rss_during_kib=rss_during,
                summary={
                    "unit": "KiB",
                    "ours": per_client,
                    "baseline": None,
                    "baseline_name": "-",
                    "ratio": None,
                    "passed": None if smoke else per_client <= RSS_TARGET_KIB,
                },
            )
        )
    return results
