"""Raw ASGI recorders for protocol tests: a scripted ``receive`` and a recording ``send``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import anyio

from streaming_responses._types import Message, Scope


def http_scope(
    method: str = "GET",
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    http_version: str = "1.1",
    trailers: bool = False,
) -> Scope:
    """A minimal HTTP scope; ``trailers`` offers the ASGI trailers extension."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": http_version,
        "method": method,
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "extensions": {"http.response.trailers": {}} if trailers else {},
    }
    return scope


@dataclass
class Recorder:
    """Records every message sent, with the time it was sent; plays back a request body."""

    body_messages: list[Message] = field(default_factory=lambda: [{"type": "http.request"}])
    sent: list[Message] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    disconnect: anyio.Event = field(default_factory=anyio.Event)
    receive_calls: int = 0
    send_delay: float = 0.0

    async def receive(self) -> Message:
        self.receive_calls += 1
        if self.body_messages:
            return self.body_messages.pop(0)
        await self.disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.send_delay:
            await anyio.sleep(self.send_delay)
        self.sent.append(message)
        self.times.append(time.perf_counter())

    @property
    def start(self) -> Message:
        assert self.sent, "nothing was sent"
        assert self.sent[0]["type"] == "http.response.start"
        return self.sent[0]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.start["headers"])

    @property
    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]

    @property
    def body(self) -> bytes:
        return b"".join(self.bodies)

    @property
    def ended(self) -> bool:
        """Whether the final body message (more_body False) was sent."""
        return any(m["type"] == "http.response.body" and not m.get("more_body") for m in self.sent)

    @property
    def trailers(self) -> dict[bytes, bytes] | None:
        found = [m for m in self.sent if m["type"] == "http.response.trailers"]
        if not found:
            return None
        return {k: v for m in found for k, v in m["headers"]}
