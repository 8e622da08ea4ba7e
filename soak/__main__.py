"""``python -m soak [--minutes M] [--streams N]``: the soak run behind ``make soak``.

One uvicorn (httptools) serves ``soak.app``; this process keeps ``N`` streams of mixed classes
open against it for ``M`` minutes with clients that connect, read at random speeds and leave at
random points (or read to the end), then stops starting new ones and lets every stream drain.
It reports the server's RSS over time, the tasks and producer threads left over (must be 0),
the server's outcomes by class against the clients' own counts (must agree), and the warnings
and errors the server logged (must be 0). Exit status 1 if any check fails. Only 127.0.0.1 is
contacted; the server is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks._server import Server, serve
from benchmarks.suite_files import vm_rss_kib

#: Classes and how often each is asked for.
KINDS = {"async": 3, "sync": 2, "events": 3, "csv": 2, "jsonl": 2, "page": 1, "file": 1}
#: Share of clients that leave before the end (a file is always read whole: it ends at once).
LEAVE_SHARE = 0.4
SAMPLE_EVERY = 10.0
#: Parts asked for by a client that will leave: far more than it reads before it does.
ENDLESS = 100_000
RAMP_SECONDS = 10.0


class Tally:
    """The clients' own counts: ``<kind>:complete``, ``<kind>:left``, and anything unexpected."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []


async def one_stream(server: Server, tally: Tally, rng: random.Random) -> None:
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    parts = rng.randint(5, 40)
    leave_after = rng.randint(1, parts - 3) if kind != "file" and rng.random() < LEAVE_SHARE else None
    if leave_after is not None:
        # A stream the client leaves has no end in sight, so the server cannot have finished
        # it first, however far behind a loaded client falls.
        parts = ENDLESS
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(f"GET /s/{kind}?n={parts} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            tally.problems.append(f"{kind}: {head[:60]!r}")
            return
        body = b""
        while True:
            data = await reader.read(rng.randint(1024, 16384))
            if not data:
                break
            body += data
            if leave_after is not None and body.count(b"p" * 1000) >= leave_after:
                tally.counts[f"{kind}:left"] += 1
                return
            await asyncio.sleep(rng.uniform(0.0, 0.1))  # a reader of random speed
        chunked = b"transfer-encoding: chunked" in head.lower()
        complete = body.endswith(b"\r\n0\r\n\r\n") if chunked else len(body) > 0
        if complete:
            tally.counts[f"{kind}:complete"] += 1
        else:
            tally.problems.append(f"{kind}: ended without its end ({len(body)} bytes)")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def keep_open(server: Server, tally: Tally, streams: int, seconds: float, seed: int) -> None:
    rng = random.Random(seed)
    end = time.monotonic() + seconds

    async def client(index: int) -> None:
        await asyncio.sleep(RAMP_SECONDS * index / streams)
        while time.monotonic() < end:
            try:
                await one_stream(server, tally, rng)
            except (OSError, asyncio.IncompleteReadError) as exc:
                tally.problems.append(f"client: {exc!r}")

    await asyncio.gather(*(client(index) for index in range(streams)))


def sample(server: Server, began: float, samples: list[dict[str, Any]]) -> None:
    stats = server.get_json("/_stats", timeout=30)
    samples.append(
        {
            "at": round(time.monotonic() - began, 1),
            "rss_kib": vm_rss_kib(server.pid),
            "tasks": stats["tasks"],
            "threads": stats["threads"],
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--output", type=Path, default=Path("soak/results.json"))
    args = parser.parse_args(argv)
    tally = Tally()
    samples: list[dict[str, Any]] = []
    with serve(app="soak.app:app") as server:
        baseline = server.get_json("/_stats")
        began = time.monotonic()
        sample(server, began, samples)

        async def run() -> None:
            task = asyncio.ensure_future(keep_open(server, tally, args.streams, args.minutes * 60, args.seed))
            while not task.done():
                await asyncio.wait([task], timeout=SAMPLE_EVERY)
                await asyncio.to_thread(sample, server, began, samples)
                print(f"  {samples[-1]}", file=sys.stderr, flush=True)
            await task

        asyncio.run(run())
        time.sleep(2.0)  # the last closes reach the server
        final = server.get_json("/_stats")
        sample(server, began, samples)
    return report(args, tally, baseline, final, samples)


def report(
    args: argparse.Namespace,
    tally: Tally,
    baseline: dict[str, Any],
    final: dict[str, Any],
    samples: list[dict[str, Any]],
) -> int:
    server_counts: Counter[str] = Counter()
    for key, count in final["outcomes"].items():
        kind, outcome = key.split(":")
        server_counts[f"{kind}:{'left' if outcome == 'disconnected' else outcome}"] += count
    client_counts = tally.counts
    keys = sorted(set(server_counts) | set(client_counts))
    disagreements = {
        key: (server_counts[key], client_counts[key])
        for key in keys
        if server_counts[key] != client_counts[key]
    }
    leaked_tasks = final["tasks"] - baseline["tasks"]
    checks = {
        "outcomes agree": not disagreements,
        "no unexpected client results": not tally.problems,
        "no task left": leaked_tasks == 0,
        "no producer thread left": final["producer_threads"] == 0,
        "nothing logged": not final["logged"],
    }
    result = {
        "minutes": args.minutes,
        "streams": args.streams,
        "responses": sum(client_counts.values()),
        "server_outcomes": dict(server_counts),
        "client_counts": dict(client_counts),
        "disagreements": disagreements,
        "client_problems": tally.problems[:20],
        "leaked_tasks": leaked_tasks,
        "threads_before_after": [baseline["threads"], final["threads"]],
        "producer_threads_left": final["producer_threads"],
        "logged": final["logged"],
        "log_samples": final["log_samples"],
        "rss_kib": samples,
        "checks": checks,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    rss = [s["rss_kib"] for s in samples]
    print(f"responses: {result['responses']} over {args.minutes:g} min with {args.streams} streams open")
    print(f"RSS KiB: start {rss[0]}, peak {max(rss)}, end {rss[-1]}")
    for key in keys:
        print(f"  {key:18} server {server_counts[key]:7}  clients {client_counts[key]:7}")
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    print(f"wrote {args.output}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
