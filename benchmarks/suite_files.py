"""The file-serving rows: a 1 GiB file against Starlette, nginx and granian, and a slow client's RSS.

This suite owns the servers it measures (uvicorn and granian serving ``benchmarks.app_files``,
and nginx with ``sendfile on``) and the data they serve: one file of random bytes written once
per run into a temporary directory and deleted at the end. Random bytes, not a sparse file:
nginx's sendfile and our reads must both touch real page-cache pages, and a body that is wrong
by a shifted block cannot hash the same. The rule that keeps the numbers honest: every side is
hashed (SHA-256, whole body) once before it is timed, every timed download is checked for its
status and size, and the sides alternate within each round on the same server and client.

Rows:

* ``file-1gib-vs-starlette``: ours on uvicorn against ``starlette.responses.FileResponse`` on the
  same uvicorn; ratio = Starlette's time / ours.
* ``file-1gib-vs-nginx``: ours on uvicorn against nginx (one worker, sendfile); ratio = nginx's
  time / ours, so 0.8 means ours takes 1.25x nginx's time.
* ``file-1gib-granian``: ours on granian (which offers ``http.response.pathsend``) against
  Starlette's on granian; informative.
* ``file-slow-client-rss``: the growth of the server's VmRSS while curl reads the file at 1 MiB/s,
  ours and Starlette's, each on a fresh uvicorn.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks._clients import BenchmarkError, curl
from benchmarks._server import HOST, ROOT, ServerError, free_port, uvicorn_command

ROWS: tuple[str, ...] = (
    "file-1gib-vs-starlette",
    "file-1gib-vs-nginx",
    "file-1gib-granian",
    "file-slow-client-rss",
)

APP = "benchmarks.app_files:app"
DIR_ENV = "BENCH_FILES_DIR"
MIB = 1024 * 1024
#: The body of the throughput rows, at full and at smoke size.
FULL_BYTES = 1024 * MIB
SMOKE_BYTES = 8 * MIB
BIG = "big.bin"
#: A small file each fresh server serves once before it is measured (imports, threads, caches).
WARM = "warm.bin"
WARM_BYTES = 1 * MIB
#: The slow client: curl ``--limit-rate`` for this many seconds.
SLOW_RATE = MIB
SLOW_BLOCK = 16 * 1024
SLOW_RCVBUF = 64 * 1024
SLOW_SECONDS = 10.0
SMOKE_SLOW_SECONDS = 2.0
RSS_SAMPLE_SECONDS = 0.1
#: Targets.
MIN_RATIO_VS_STARLETTE = 5.0
MIN_RATIO_VS_NGINX = 0.8  # nginx's time / ours: ours takes at most 1.25x nginx's time
MAX_RSS_GROWTH_MIB = 8.0
NGINX = "/usr/sbin/nginx"


# --- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataFile:
    """A file written for this run, with what its body must hash to."""

    path: Path
    size: int
    sha256: str


def write_random_file(path: Path, size: int, *, seed: int) -> DataFile:
    """Write ``size`` pseudo-random bytes (reproducible from ``seed``) and hash them on the way."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = rng.randbytes(min(MIB, left))
            digest.update(block)
            out.write(block)
            left -= len(block)
        out.flush()
        os.fsync(out.fileno())
    return DataFile(path, size, digest.hexdigest())


# --- servers -------------------------------------------------------------------------------


@dataclass
class Process:
    """A server subprocess this suite started; stopped only through :func:`_stop` by its pid."""

    name: str
    port: int
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    command: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


def _loop() -> str:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _granian_command(port: int) -> tuple[str, ...]:
    return (
        sys.executable,
        "-m",
        "granian",
        APP,
        "--interface",
        "asgi",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        _loop(),
        "--log-level",
        "warning",
        "--no-ws",
    )


@contextlib.contextmanager
def _started(
    name: str,
    command: Callable[[int], Sequence[str]],
    ready_path: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[Process]:
    """Run ``command(port)`` until the ``with`` block ends; ready once ``ready_path`` answers 200."""
    port = free_port()
    argv = tuple(command(port))
    child_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile() as log:
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(name, port, popen, log, argv)
        try:
            _wait_ready(process, ready_path, timeout)
            yield process
        finally:
            _stop(popen)


def _wait_ready(process: Process, path: str, timeout: float) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        if process.popen.poll() is not None:
            raise ServerError(f"{process.name} exited with {process.popen.returncode}:\n{process.output()}")
        try:
            with opener.open(process.url(path), timeout=1.0) as response:
                body = response.read()
                if path == "/info":
                    process.extra.update(json.loads(body))
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{process.name} did not answer within {timeout:g}s:\n{process.output()}"
                ) from None
            time.sleep(0.05)


def _stop(popen: subprocess.Popen[bytes]) -> None:
    # SIGTERM to the pid this suite started (nginx's master stops its worker itself); SIGKILL to
    # the process group it was started in only if it will not stop.
    try:
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)


def _nginx_config(prefix: Path, root: Path, port: int) -> str:
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would switch to "nobody", who cannot read a private temp dir.
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
{temp_paths}
    server {{
        listen {HOST}:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


@contextlib.contextmanager
def _nginx(root: Path) -> Iterator[Process]:
    """nginx serving ``root`` on a free loopback port, with its config and state in a temp dir."""
    with tempfile.TemporaryDirectory(prefix="bench-nginx-") as scratch:
        prefix = Path(scratch)
        conf = prefix / "nginx.conf"

        def command(port: int) -> list[str]:
            conf.write_text(_nginx_config(prefix, root, port))
            return [
                NGINX,
                "-c",
                str(conf),
                "-p",
                str(prefix),
                "-e",
                str(prefix / "error.log"),
                "-g",
                "daemon off;",
            ]

        with _started("nginx", command, f"/{WARM}") as process:
            version = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=False)
            process.extra["version"] = version.stderr.strip()
            process.extra["error_log"] = str(prefix / "error.log")
            yield process


# --- clients -------------------------------------------------------------------------------


def verify_sha256(url: str, data: DataFile, *, timeout: float = 300.0) -> None:
    """Download ``url`` whole and check its size and SHA-256 against ``data``."""
    command = ["curl", "-q", "--silent", "--show-error", "--fail", "--http1.1", "--noproxy", "*"]
    command += ["--max-time", f"{timeout:g}", url]
    digest = hashlib.sha256()
    size = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        while block := proc.stdout.read(MIB):
            digest.update(block)
            size += len(block)
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        code = proc.wait()
    if code != 0:
        raise BenchmarkError(f"curl exited {code} for {url}: {stderr.strip()}")
    if size != data.size or digest.hexdigest() != data.sha256:
        raise BenchmarkError(f"{url} sent {size} bytes that do not hash like the {data.size}-byte file")


def slow_read(url: str, data: DataFile, seconds: float) -> int:
    """Read ``url`` at ``SLOW_RATE`` bytes/s for ``seconds``; return the bytes received (a checked prefix).

    A paced raw-socket reader rather than ``curl --limit-rate``: curl 7.88 let 1.5 to 3.9 MiB/s
    through on loopback when asked for 1 MiB/s. The receive buffer is kept small so that the
    kernel does not read far ahead on the client's behalf.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or HOST, parts.port or 80
    request = f"GET {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    body = bytearray()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_RCVBUF)
        sock.settimeout(10.0)
        sock.connect((host, port))
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            block = sock.recv(SLOW_BLOCK)
            if not block:
                raise BenchmarkError(f"{url}: connection closed before the response head")
            head += block
        head, _, first = head.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if status_line.split(" ")[1:2] != ["200"]:
            raise BenchmarkError(f"{url} answered {status_line!r}, expected 200")
        body += first
        begun = time.monotonic()
        while (elapsed := time.monotonic() - begun) < seconds and len(body) < data.size:
            allowed = int(SLOW_RATE * elapsed) - len(body)
            if allowed <= 0:
                time.sleep(min(0.05, -allowed / SLOW_RATE + 0.001))
                continue
            block = sock.recv(min(allowed, SLOW_BLOCK))
            if not block:
                raise BenchmarkError(f"{url}: connection closed after {len(body)} of {data.size} bytes")
            body += block
    with data.path.open("rb") as source:
        if bytes(body) != source.read(len(body)):
            raise BenchmarkError(f"{url}: the {len(body)} bytes read slowly are not the file's first bytes")
    return len(body)


def vm_rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` in KiB, from ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchmarkError(f"no VmRSS for pid {pid}")


class RssSampler:
    """Samples a process's VmRSS every ``RSS_SAMPLE_SECONDS`` in a thread, while in its ``with``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(vm_rss_kib(self.pid))
            self._stop.wait(RSS_SAMPLE_SECONDS)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


# --- rows ----------------------------------------------------------------------------------


def _row(name: str, description: str, target: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "target": target,
        "error": None,
        "verified": False,
        "load_before": os.getloadavg(),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (nginx's and granian's workers)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _alternate(urls: dict[str, str], pids: dict[str, int], size: int, rounds: int) -> list[dict[str, Any]]:
    """Time each side once per round with curl, the first side alternating between rounds.

    Each timing also records the CPU seconds the serving process tree spent on it: on a shared
    machine the wall time depends on the load, the CPU time much less.
    """
    sides = list(urls)
    timings = []
    for number in range(rounds):
        order = sides if number % 2 == 0 else sides[::-1]
        timing = {}
        for side in order:
            cpu_before = _cpu_seconds(pids[side])
            seconds = curl(urls[side], expected_bytes=size)
            cpu = _cpu_seconds(pids[side]) - cpu_before
            timing[side] = {"seconds": seconds, "bytes": size, "server_cpu_seconds": cpu}
        timings.append(timing)
    return timings


def _medians(timings: list[dict[str, Any]], key: str = "seconds") -> dict[str, float]:
    return {side: statistics.median(timing[side][key] for timing in timings) for side in timings[0]}


def _throughput_row(
    row: dict[str, Any],
    urls: dict[str, str],
    pids: dict[str, int],
    data: DataFile,
    *,
    rounds: int,
    smoke: bool,
    baseline_name: str,
    min_ratio: float | None,
    verified: set[str],
) -> dict[str, Any]:
    for url in urls.values():
        if url not in verified:
            verify_sha256(url, data)
            verified.add(url)
    timings = _alternate(urls, pids, data.size, rounds)
    medians = _medians(timings)
    ours, baseline = medians["ours"], medians["baseline"]
    ratio = baseline / ours if ours > 0 else float("inf")
    row["verified"] = True
    row["urls"] = urls
    row["bytes"] = data.size
    row["rounds"] = timings
    row["server_cpu_seconds"] = _medians(timings, "server_cpu_seconds")
    row["throughput_mib_s"] = {
        side: data.size / MIB / seconds for side, seconds in medians.items() if seconds
    }
    row["summary"] = {
        "unit": "s",
        "ours": ours,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": ratio,
        # A row without a target has nothing to miss: it passes outside smoke mode.
        "passed": None if smoke else (min_ratio is None or ratio >= min_ratio),
    }
    return row


def _rss_growth(side: str, data: DataFile, warm: DataFile, seconds: float) -> dict[str, Any]:
    """On a fresh uvicorn: warm up, then sample VmRSS while a 1 MiB/s client reads ``data``."""
    env = {DIR_ENV: str(data.path.parent)}
    with _started("uvicorn", lambda port: uvicorn_command(APP, port, _loop()), "/info", env=env) as server:
        verify_sha256(server.url(f"/{side}/{warm.path.name}"), warm)
        time.sleep(0.3)
        before = vm_rss_kib(server.pid)
        with RssSampler(server.pid) as sampler:
            received = slow_read(server.url(f"/{side}/{data.path.name}"), data, seconds)
        if server.popen.poll() is not None:
            raise BenchmarkError(f"the {side} server died during the slow read:\n{server.output()}")
    peak = max(sampler.samples, default=before)
    return {
        "rss_before_kib": before,
        "rss_peak_kib": peak,
        "growth_mib": max(0, peak - before) / 1024,
        "samples": len(sampler.samples),
        "bytes_received": received,
        "rate_mib_s": received / MIB / seconds,
    }


def run(*, rounds: int, smoke: bool, only: frozenset[str] | None) -> list[dict[str, Any]]:
    """Measure the file rows (all, or those named in ``only``); see the module docstring."""
    wanted = [name for name in ROWS if only is None or name in only]
    results: list[dict[str, Any]] = []
    size = SMOKE_BYTES if smoke else FULL_BYTES
    scratch = Path(tempfile.mkdtemp(prefix="bench-files-"))
    try:
        data_dir = scratch / "data"
        data_dir.mkdir()
        data = write_random_file(data_dir / BIG, size, seed=1)
        warm = write_random_file(data_dir / WARM, WARM_BYTES, seed=2)
        env = {DIR_ENV: str(data_dir)}
        verified: set[str] = set()
        uvicorn_rows = [name for name in wanted if name in ROWS[:2]]
        if uvicorn_rows:
            results.extend(_uvicorn_rows(uvicorn_rows, data, env, rounds, smoke, verified))
        if ROWS[2] in wanted:
            results.append(_granian_row(data, env, rounds, smoke, verified))
        if ROWS[3] in wanted:
            results.append(_rss_row(data, warm, smoke))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _failed(row: dict[str, Any], exc: Exception) -> dict[str, Any]:
    row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def _uvicorn_rows(
    names: list[str],
    data: DataFile,
    env: dict[str, str],
    rounds: int,
    smoke: bool,
    verified: set[str],
) -> list[dict[str, Any]]:
    size_text = f"{data.size // MIB} MiB"
    rows = {
        ROWS[0]: _row(
            ROWS[0],
            f"{size_text} file, ours vs Starlette's FileResponse, both on uvicorn, curl to /dev/null",
            f">= {MIN_RATIO_VS_STARLETTE:g}x",
        ),
        ROWS[1]: _row(
            ROWS[1],
            f"{size_text} file, ours on uvicorn vs nginx (sendfile, 1 worker); ratio = nginx time / ours",
            f">= {MIN_RATIO_VS_NGINX:g}x (ours <= {1 / MIN_RATIO_VS_NGINX:g}x nginx's time)",
        ),
    }
    out = []
    try:
        with _started(
            "uvicorn", lambda port: uvicorn_command(APP, port, _loop()), "/info", env=env
        ) as server:
            ours = server.url(f"/ours/{data.path.name}")
            for name in names:
                row = rows[name]
                row["server"] = {"command": list(server.command), **server.extra}
                try:
                    if name == ROWS[0]:
                        urls = {"ours": ours, "baseline": server.url(f"/starlette/{data.path.name}")}
                        _throughput_row(
                            row,
                            urls,
                            {"ours": server.pid, "baseline": server.pid},
                            data,
                            rounds=rounds,
                            smoke=smoke,
                            baseline_name="starlette",
                            min_ratio=MIN_RATIO_VS_STARLETTE,
                            verified=verified,
                        )
                    else:
                        _nginx_row(row, ours, server.pid, data, rounds, smoke, verified)
                except (BenchmarkError, ServerError, OSError, ValueError) as exc:
                    _failed(row, exc)
                row["server_log"] = server.output()
                row["load_after"] = os.getloadavg()
                out.append(row)
    except (ServerError, OSError) as exc:
        out = [_failed(rows[name], exc) for name in names]
    return out


def _nginx_row(
    row: dict[str, Any], ours: str, pid: int, data: DataFile, rounds: int, smoke: bool, verified: set[str]
) -> None:
    if not os.access(NGINX, os.X_OK):
        if not smoke:
            raise BenchmarkError(f"{NGINX} is missing: `make system-deps` installs nginx-light")
        # Smoke mode without nginx: measure our side only, say so, judge nothing.
        row["skipped"] = f"{NGINX} is missing"
        timings = _alternate({"ours": ours}, {"ours": pid}, data.size, rounds)
        row["rounds"] = timings
        row["verified"] = True
        row["summary"] = {
            "unit": "s",
            "ours": _medians(timings)["ours"],
            "baseline": None,
            "baseline_name": "nginx (missing)",
            "ratio": None,
            "passed": None,
        }
        return
    with _nginx(data.path.parent) as nginx:
        row["nginx"] = {"command": list(nginx.command), **nginx.extra}
        urls = {"ours": ours, "baseline": nginx.url(f"/{data.path.name}")}
        _throughput_row(
            row,
            urls,
            {"ours": pid, "baseline": nginx.pid},
            data,
            rounds=rounds,
            smoke=smoke,
            baseline_name="nginx",
            min_ratio=MIN_RATIO_VS_NGINX,
            verified=verified,
        )
        row["nginx_log"] = Path(nginx.extra["error_log"]).read_text(errors="replace")


def _granian_row(
    data: DataFile, env: dict[str, str], rounds: int, smoke: bool, verified: set[str]
) -> dict[str, Any]:
    row = _row(
        ROWS[2],
        f"{data.size // MIB} MiB file, ours vs Starlette's FileResponse, both on granian (pathsend)",
        "none (informative)",
    )
    try:
        with _started("granian", _granian_command, "/info", env=env) as server:
            row["server"] = {"command": list(server.command), **server.extra}
            urls = {
                "ours": server.url(f"/ours/{data.path.name}"),
                "baseline": server.url(f"/starlette/{data.path.name}"),
            }
            _throughput_row(
                row,
                urls,
                {"ours": server.pid, "baseline": server.pid},
                data,
                rounds=rounds,
                smoke=smoke,
                baseline_name="starlette on granian",
                min_ratio=None,
                verified=verified,
            )
            row["server_log"] = server.output()
    except (BenchmarkError, ServerError, OSError, ValueError) as exc:
        _failed(row, exc)
    row["load_after"] = os.getloadavg()
    return row


def _rss_row(data: DataFile, warm: DataFile, smoke: bool) -> dict[str, Any]:
    seconds = SMOKE_SLOW_SECONDS if smoke else SLOW_SECONDS
    row = _row(
        ROWS[3],
        f"uvicorn VmRSS growth while a client reads the file at {SLOW_RATE // MIB} MiB/s for {seconds:g} s, "
        "fresh server per side",
        f"<= {MAX_RSS_GROWTH_MIB:g} MiB",
    )
    try:
        sides = {side: _rss_growth(side, data, warm, seconds) for side in ("ours", "starlette")}
    except (BenchmarkError, ServerError, OSError, ValueError) as exc:
        return _failed(row, exc)
    ours = sides["ours"]["growth_mib"]
    row["verified"] = True
    row["sides"] = sides
    row["load_after"] = os.getloadavg()
    row["summary"] = {
        "unit": "MiB",
        "ours": ours,
        "baseline": sides["starlette"]["growth_mib"],
        "baseline_name": "starlette",
        "ratio": None,
        "passed": None if smoke else ours <= MAX_RSS_GROWTH_MIB,
    }
    return row
