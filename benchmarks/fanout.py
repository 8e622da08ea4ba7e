"""The fan-out load: many SSE subscribers, one publisher at a fixed rate, latency per delivery.

``python -m benchmarks.fanout --subscribe PORT/PATH*COUNT ... --publish PORT/PATH ... --rate R
--events N`` starts ``--processes`` receiver processes (``--receive``) that hold the
subscribers' connections, warms up until every subscriber got an event, then publishes ``N``
events at ``R`` per second (POSTs on keep-alive connections, alternating between the publish
URLs; each body is ``<seq> <monotonic ns>``), and prints one JSON object: every delivery's
publish-to-receive latency, how many deliveries arrived, and how many were duplicates.

Receivers read raw HTTP/1.1 (chunked) and take every ``data:`` line of the events, LF or CRLF
(sse-starlette's default), so both sides are parsed alike. CLOCK_MONOTONIC is shared by the
processes of one machine, so a receiver's clock reads the publisher's stamps directly.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

HOST = "127.0.0.1"
_DATA = re.compile(rb"data: (\d+|w) ?(\d*)")
#: Seconds to wait for deliveries after the last publish before counting what is missing.
GRACE = 5.0


def _target(text: str) -> tuple[int, str, int]:
    where, _, count = text.partition("*")
    port, _, path = where.partition("/")
    return int(port), "/" + path, int(count or 1)


class _Subscriber:
    """One SSE connection: dechunks, finds ``data:`` lines, records latencies and duplicates."""

    def __init__(self, events: int) -> None:
        self.buffer = b""
        self.body = b""
        self.seen = bytearray(events)
        self.warm = False

    def feed(self, data: bytes, latencies: array.array[float], now: int) -> int:
        """Take raw bytes; return how many measured deliveries they completed."""
        self.buffer += data
        body = self.body
        buffer = self.buffer
        while True:  # chunked transfer coding (RFC 9112 §7.1)
            end = buffer.find(b"\r\n")
            if end < 0:
                break
            size = int(buffer[:end].split(b";")[0] or b"0", 16)
            if len(buffer) < end + 2 + size + 2:
                break
            body += buffer[end + 2 : end + 2 + size]
            buffer = buffer[end + 4 + size :]
        self.buffer = buffer
        cut = max(body.rfind(b"\n\n"), body.rfind(b"\r\n\r\n"))
        if cut < 0:
            self.body = body
            return 0
        complete, self.body = body[:cut], body[cut:]
        delivered = 0
        seen = self.seen
        for seq, stamp in _DATA.findall(complete):
            if seq == b"w":
                self.warm = True
                continue
            index = int(seq)
            if index < len(seen):
                seen[index] += 1
                if seen[index] == 1:
                    latencies.append((now - int(stamp)) / 1e6)
                    delivered += 1
        return delivered


async def _subscribe(port: int, path: str, subscriber: _Subscriber, latencies: array.array[float]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{path}: {head[:60]!r}")
    try:
        while True:
            data = await reader.read(262144)
            if not data:
                return
            subscriber.feed(data, latencies, time.monotonic_ns())
    finally:
        writer.close()


async def _receive(targets: Sequence[tuple[int, str, int]], events: int, ready_marker: str) -> dict[str, Any]:
    """Hold the subscribers; say ``ready`` once each got a warm-up event; count until stdin ends."""
    latencies: array.array[float] = array.array("d")
    subscribers: list[_Subscriber] = []
    tasks = []
    for port, path, count in targets:
        for _ in range(count):
            subscriber = _Subscriber(events)
            subscribers.append(subscriber)
            tasks.append(asyncio.create_task(_subscribe(port, path, subscriber, latencies)))
            await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    while not all(s.warm for s in subscribers):
        if any(task.done() for task in tasks):
            for task in tasks:
                if task.done():
                    task.result()
        await asyncio.sleep(0.01)
    os.close(os.open(ready_marker, os.O_CREAT | os.O_WRONLY))  # tells the publisher
    # The publisher closes our stdin when it has published everything (plus the grace time).
    await loop.run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    duplicates = sum(max(0, count - 1) for s in subscribers for count in s.seen)
    return {
        "latencies": base64.b64encode(latencies.tobytes()).decode(),
        "delivered": len(latencies),
        "duplicates": duplicates,
    }


class _Publisher:
    """POSTs on keep-alive connections, a few per URL, each used by one request at a time."""

    def __init__(self, targets: Sequence[tuple[int, str, int]]) -> None:
        self.targets = targets
        self.idle: list[asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = []

    async def open(self, per_target: int = 4) -> None:
        for port, _, _ in self.targets:
            queue: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
            for _ in range(per_target):
                queue.put_nowait(await asyncio.open_connection(HOST, port))
            self.idle.append(queue)

    async def post(self, index: int, body: bytes | None = None, stamp: bool = False) -> None:
        which = index % len(self.targets)
        _, path, _ = self.targets[which]
        reader, writer = await self.idle[which].get()
        if stamp:
            body = f"{index} {time.monotonic_ns()}".encode()
        assert body is not None
        head_out = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head_out.encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        self.idle[which].put_nowait((reader, writer))
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"publish answered {head[:40]!r}")

    def close(self) -> None:
        for queue in self.idle:
            while not queue.empty():
                queue.get_nowait()[1].close()


def _start_receivers(args: argparse.Namespace, scratch: str) -> list[tuple[subprocess.Popen[bytes], str]]:
    """One receiver process per share of the subscribers; each writes its JSON to a file."""
    shares: list[list[tuple[int, str, int]]] = [[] for _ in range(args.processes)]
    for port, path, count in (_target(text) for text in args.subscribe):
        for n in range(args.processes):
            share = count // args.processes + (1 if n < count % args.processes else 0)
            if share:
                shares[n].append((port, path, share))
    receivers = []
    for n, share in enumerate(shares):
        if not share:
            continue
        output = os.path.join(scratch, f"receiver-{n}.json")
        command = [sys.executable, "-m", "benchmarks.fanout", "--receive", "--events", str(args.events)]
        command += ["--output", output]
        command += [arg for port, path, count in share for arg in ("--subscribe", f"{port}{path}*{count}")]
        receivers.append((subprocess.Popen(command, stdin=subprocess.PIPE), output))
    return receivers


def _all_ready(receivers: Sequence[tuple[subprocess.Popen[bytes], str]]) -> bool:
    """Whether every receiver has left its ready marker (each subscriber got a warm-up event)."""
    return all(os.path.exists(output + ".ready") for _, output in receivers)


async def _publish(
    args: argparse.Namespace, receivers: Sequence[tuple[subprocess.Popen[bytes], str]]
) -> dict[str, Any]:
    """Warm up until every receiver is ready, then publish ``args.events`` at ``args.rate``."""
    publisher = _Publisher([_target(text) for text in args.publish])
    try:
        await publisher.open()
        warmups = 0
        deadline = time.monotonic() + 120
        while not _all_ready(receivers):
            if time.monotonic() > deadline:
                raise RuntimeError("not every subscriber got a warm-up event within 120 s")
            failed = [process.returncode for process, _ in receivers if process.poll() is not None]
            if failed:
                raise RuntimeError(f"a receiver exited with {failed} before it was ready")
            await publisher.post(warmups, b"w")
            warmups += 1
            await asyncio.sleep(0.25)
        pending: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        behind = 0.0
        for index in range(args.events):
            delay = start + index / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                behind = max(behind, -delay)
            task = asyncio.create_task(publisher.post(index, stamp=True))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
        published_in = time.monotonic() - start
        await asyncio.sleep(GRACE if not args.smoke else 0.5)
    finally:
        publisher.close()
    return {"published_in": published_in, "publisher_behind_s": behind}


def _run(args: argparse.Namespace) -> dict[str, Any]:
    scratch = tempfile.mkdtemp(prefix="bench-fanout-")
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    receivers = _start_receivers(args, scratch)
    try:
        published = asyncio.run(_publish(args, receivers))
        results = []
        for process, output in receivers:
            assert process.stdin is not None
            process.stdin.close()
            if process.wait(60) != 0:
                raise RuntimeError(f"a receiver failed (exit {process.returncode})")
            with open(output) as file:
                results.append(json.load(file))
    finally:
        for process, _ in receivers:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (children.ru_utime + children.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    latencies: array.array[float] = array.array("d")
    for result in results:
        latencies.frombytes(base64.b64decode(result["latencies"]))
    total = sum(count for _, _, count in (_target(text) for text in args.subscribe))
    return {
        "rate": args.rate,
        "events": args.events,
        "subscribers": total,
        "expected": total * args.events,
        "delivered": len(latencies),
        "duplicates": sum(result["duplicates"] for result in results),
        "receivers_cpu_s": client_cpu,
        **published,
        "latencies_ms": latencies.tolist(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fanout")
    parser.add_argument("--subscribe", action="append", default=[], help="PORT/PATH*COUNT")
    parser.add_argument("--publish", action="append", default=[], help="PORT/PATH")
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--receive", action="store_true", help="(internal) be a receiver")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--output", help="(internal) where a receiver writes its JSON")
    args = parser.parse_args(argv)
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if args.receive:
        targets = [_target(text) for text in args.subscribe]
        result = asyncio.run(_receive(targets, args.events, args.output + ".ready"))
        with open(args.output, "w") as file:
            json.dump(result, file)
    else:
        print(json.dumps(_run(args)))


if __name__ == "__main__":
    main()
