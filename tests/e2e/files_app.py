"""The application the file-serving end-to-end tests run: FileResponse over files in one directory.

Run it as ``tests.e2e.files_app:app`` from the repository root with ``FILES_E2E_DIR`` naming the
directory it serves (the tests create it and its files). Routes:

* ``GET|HEAD /file/{name}``: ``FileResponse(<dir>/name)``; ``?filename=`` sets the download name,
  ``?inline=1`` makes it ``inline``, ``?precompressed=1`` turns on the ``.br``/``.gz`` siblings.
* ``GET|HEAD /object/{name}``: the same file handed over as an open file object wrapped in
  :class:`CountingFile`, which records how many bytes the response read and whether it closed
  the file.
* ``GET /_state?id=...``: what the server saw for the request that carried ``?id=`` (JSON).

What only the server can see is recorded per ``?id=``: the bytes and reads of a file object,
whether it was closed, and (by :class:`SendRecorder`, wrapped around the whole app) the type and
size of every ASGI message the response sent, plus whether the scope offered
``http.response.pathsend``. ``GET /_state`` without ``id`` is the readiness probe of
``tests/e2e/servers.py``.

``STREAMING_E2E_IMPL=starlette`` swaps in Starlette's own ``FileResponse`` (dropping our keyword
arguments, reading file objects by their ``name``), to validate the harness: many tests must
fail against it, which shows that they can.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse as StarletteFileResponse
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streaming_responses import FileResponse

DIR_ENV = "FILES_E2E_DIR"
IMPL_ENV = "STREAMING_E2E_IMPL"
PATHSEND = "http.response.pathsend"


class Probes:
    """What happened to each request, keyed by its ``id`` query parameter (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, Any]] = {}

    def update(self, probe_id: str, **fields: Any) -> None:
        with self._lock:
            self._records.setdefault(probe_id, {}).update(fields)

    def add(self, probe_id: str, key: str, amount: int) -> None:
        with self._lock:
            record = self._records.setdefault(probe_id, {})
            record[key] = record.get(key, 0) + amount

    def count_message(self, probe_id: str, message_type: str, body_bytes: int) -> None:
        with self._lock:
            record = self._records.setdefault(probe_id, {})
            messages: dict[str, int] = record.setdefault("messages", {})
            messages[message_type] = messages.get(message_type, 0) + 1
            record["body_bytes"] = record.get("body_bytes", 0) + body_bytes

    def get(self, probe_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._records.get(probe_id)
            return None if record is None else {**record, "messages": dict(record.get("messages", {}))}


class CountingFile:
    """A binary file object that records every read into a probe.

    It offers ``read``, ``seek``, ``tell`` and ``close`` but no ``fileno``, so that whatever
    reads the file has to go through :meth:`read` and is counted.
    """

    def __init__(self, path: Path, probes: Probes, probe_id: str) -> None:
        self._file = path.open("rb")
        self._probes = probes
        self._id = probe_id
        self.name = str(path)
        probes.update(probe_id, bytes_read=0, reads=0, closed=False)

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._probes.add(self._id, "bytes_read", len(data))
        self._probes.add(self._id, "reads", 1)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        self._file.close()
        self._probes.update(self._id, closed=True)


class SendRecorder:
    """Middleware recording every message a response sends, for requests with ``?id=``."""

    def __init__(self, app: ASGIApp, probes: Probes) -> None:
        self.app = app
        self.probes = probes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        probe_id = _probe_id(scope)
        if probe_id is None or scope["type"] != "http" or scope["path"] == "/_state":
            await self.app(scope, receive, send)
            return
        self.probes.update(probe_id, pathsend_offered=PATHSEND in (scope.get("extensions") or {}))

        async def recording_send(message: Message) -> None:
            body = message.get("body", b"") if message["type"] == "http.response.body" else b""
            self.probes.count_message(probe_id, message["type"], len(body))
            await send(message)

        await self.app(scope, receive, recording_send)


def _probe_id(scope: Scope) -> str | None:
    query: bytes = scope.get("query_string", b"")
    for pair in query.decode("latin-1").split("&"):
        key, _, value = pair.partition("=")
        if key == "id" and value:
            return value
    return None


def _directory() -> Path:
    try:
        return Path(os.environ[DIR_ENV])
    except KeyError:
        raise RuntimeError(f"set {DIR_ENV} to the directory the file tests serve") from None


def _path(request: Request) -> Path:
    name: str = request.path_params["name"]
    path = _directory() / name
    if "/" in name or name.startswith("."):
        raise HTTPException(404, f"no file {name!r}")
    return path


def _options(request: Request) -> dict[str, Any]:
    params = request.query_params
    options: dict[str, Any] = {}
    if "filename" in params:
        options["filename"] = params["filename"]
    if params.get("inline") == "1":
        options["content_disposition_type"] = "inline"
    if params.get("precompressed") == "1":
        options["precompressed"] = True
    return options


def _starlette_file_response(source: Any, **options: Any) -> Response:
    """Starlette's FileResponse with what it understands of our arguments (harness check only)."""
    options.pop("precompressed", None)
    options.pop("size", None)
    path = source if isinstance(source, Path) else Path(source.name)
    if not isinstance(source, Path):
        source.close()
    return StarletteFileResponse(path, **options)


def build_app() -> ASGIApp:
    """The app, with its own probe records."""
    probes = Probes()
    file_response: Any = _starlette_file_response if os.environ.get(IMPL_ENV) == "starlette" else FileResponse

    async def state(request: Request) -> Response:
        probe_id = request.query_params.get("id")
        return JSONResponse({"pid": os.getpid(), "probe": probes.get(probe_id) if probe_id else None})

    async def file(request: Request) -> Response:
        response: Response = file_response(_path(request), **_options(request))
        return response

    async def file_object(request: Request) -> Response:
        path = _path(request)
        probe_id = request.query_params.get("id") or "anonymous"
        source = CountingFile(path, probes, probe_id)
        # CountingFile hides fileno(), so the response cannot fstat it: the size is given.
        response: Response = file_response(source, size=path.stat().st_size, **_options(request))
        return response

    starlette = Starlette(
        routes=[
            Route("/_state", state),
            Route("/file/{name}", file, methods=["GET", "HEAD"]),
            Route("/object/{name}", file_object, methods=["GET", "HEAD"]),
        ]
    )
    return SendRecorder(starlette, probes)


app = build_app()
