"""The app the file benchmarks serve: the same files through our FileResponse and Starlette's.

Run it as ``benchmarks.app_files:app`` with ``BENCH_FILES_DIR`` naming the directory whose files
it serves (``benchmarks.suite_files`` creates it and sets the variable for the server it starts).
``GET /{side}/{name}`` answers with ``streaming_responses.FileResponse`` (side ``ours``) or
``starlette.responses.FileResponse`` (side ``starlette``) for the file ``name`` of that
directory, built with the same arguments, so the response class is the only difference.
``GET /info`` is the readiness probe and names both classes. ``?chunk_size=N`` on the ``ours``
side sets FileResponse's read size, for tuning experiments; the rows use the default.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse as StarletteFileResponse
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streaming_responses import FileResponse

DIR_ENV = "BENCH_FILES_DIR"

RESPONSE_CLASSES: dict[str, type[Response]] = {
    "ours": FileResponse,
    "starlette": StarletteFileResponse,
}


def _directory() -> Path:
    try:
        return Path(os.environ[DIR_ENV])
    except KeyError:
        raise RuntimeError(f"set {DIR_ENV} to the directory of files to serve") from None


async def info(request: Request) -> Response:
    """Name the classes behind each side and the directory served."""
    classes = {side: f"{cls.__module__}.{cls.__qualname__}" for side, cls in RESPONSE_CLASSES.items()}
    return JSONResponse({"classes": classes, "directory": str(_directory()), "pid": os.getpid()})


async def serve_file(request: Request) -> Response:
    """Serve ``name`` from the benchmark directory with ``side``'s FileResponse."""
    side: str = request.path_params["side"]
    name: str = request.path_params["name"]
    cls = RESPONSE_CLASSES.get(side)
    if cls is None:
        raise HTTPException(404, f"unknown side {side!r}")
    path = _directory() / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise HTTPException(404, f"no file {name!r}")
    if side == "ours" and "chunk_size" in request.query_params:
        # A tuning knob for experiments (the rows use the default).
        return FileResponse(
            path, media_type="application/octet-stream", chunk_size=int(request.query_params["chunk_size"])
        )
    return cls(path, media_type="application/octet-stream")


app = Starlette(
    routes=[
        Route("/info", info),
        Route("/{side}/{name}", serve_file),
    ]
)
