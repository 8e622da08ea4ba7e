"""ASGI type aliases and the chunk types shared by every module.

This module owns names only: nothing here runs. Keeping the aliases in one place lets every
other module speak of ``Scope`` or ``Send`` without importing Starlette's private helpers.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, MutableMapping
from typing import Any, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

#: What a producer may hand the core: bytes-like data, or text encoded with the response charset.
Chunk: TypeAlias = "bytes | bytearray | memoryview | str"

#: The push style: an async callable that receives ``write`` and awaits it once per chunk.
Write: TypeAlias = Callable[[Any], Awaitable[None]]
Writer: TypeAlias = Callable[[Write], Awaitable[None]]

#: Anything a streaming response accepts as its body.
Content: TypeAlias = "Iterable[Any] | AsyncIterable[Any] | Writer"

RawHeaders: TypeAlias = list[tuple[bytes, bytes]]
