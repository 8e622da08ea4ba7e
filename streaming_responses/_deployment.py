"""Deployment hazards a response can see from the inside, each reported once per process.

This module owns two checks of where a response is served, each with a pure test and one
warning on the ``streaming_responses`` logger:

* the response is wrapped by Starlette's ``BaseHTTPMiddleware`` (FastAPI's
  ``@app.middleware("http")``), which ends the body cleanly when the response fails after its
  start, so that a failed stream looks complete (:func:`wrapped_by_base_http_middleware`);
* a stream without a known length is served to an HTTP/1.0 peer (nginx speaks HTTP/1.0 to its
  upstreams unless ``proxy_http_version 1.1`` is set), where most servers delimit the body by
  closing the connection, so that an abort looks like a normal end (:func:`unsized_to_http10`).

The rule that keeps it simple: the checks read only what the response is handed (the scope,
the ``send`` callable and what wraps it) and never change it; the one piece of process-wide
state is the set of warnings already given, so a busy server logs each hazard once.
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ._framing import Framing

logger = logging.getLogger("streaming_responses")

#: How many wrappers deep the ``send`` chain is searched for ``BaseHTTPMiddleware``.
MAX_DEPTH = 8

BASE_HTTP_MIDDLEWARE_WARNING = (
    "this response is wrapped by Starlette's BaseHTTPMiddleware (FastAPI's @app.middleware('http')), "
    "which ends the body cleanly when a stream fails after its start: clients will take failed streams "
    "for complete ones. Use streaming_responses.StreamingHTTPMiddleware (same dispatch(request, "
    "call_next)) or a pure ASGI middleware instead"
)
HTTP10_WARNING = (
    "a stream without a known length is served to an HTTP/1.0 peer: its body ends when the connection "
    "closes, so an aborted stream looks complete to the client. Behind nginx, set "
    "'proxy_http_version 1.1;' (and 'proxy_buffering off;' for prompt streams)"
)

#: How servers name HTTP/1.0 in the scope (granian 2.8 says "1").
_HTTP10 = frozenset({"1.0", "1"})
#: The hazards already reported in this process.
_GIVEN: set[str] = set()


def warn_once(key: str, message: str) -> bool:
    """Log ``message`` as a warning the first time ``key`` is seen; return whether it was logged."""
    if key in _GIVEN:
        return False
    _GIVEN.add(key)
    logger.warning(message)
    return True


def _wrapped_callables(value: object) -> list[object]:
    """The callables a ``send`` wrapper passes messages on to, as far as they can be seen."""
    found: list[object] = []
    if isinstance(value, functools.partial):
        found.append(value.func)
        found.extend(value.args)
        found.extend(value.keywords.values())
        return found
    owner = getattr(value, "__self__", None)
    if owner is not None:  # a bound method: the object keeps the next send as an attribute
        # Its attributes, read without vars(owner): that would give the object (a server's,
        # for every request) a dictionary of its own, where Python keeps them inline.
        for item in gc.get_referents(owner):
            if isinstance(item, dict):
                found.extend(item.values())
            elif item is not type(owner):
                found.append(item)
    for cell in getattr(value, "__closure__", None) or ():
        try:
            found.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return [item for item in found if callable(item)]


def wrapped_by_base_http_middleware(send: Callable[..., Any]) -> bool:
    """Whether ``send``, or a send it wraps, is the one of Starlette's ``BaseHTTPMiddleware``.

    Middleware between the response and ``BaseHTTPMiddleware`` (GZip, CORS, exception
    handlers) wrap ``send`` in a closure, a bound method or a ``functools.partial``; those are
    followed up to :data:`MAX_DEPTH` levels.

    >>> class BaseHTTPMiddleware:
    ...     def call_next(self):
    ...         async def send_no_error(message): ...
    ...         return send_no_error
    >>> inner = BaseHTTPMiddleware().call_next()
    >>> async def gzip_send(message): await inner(message)
    >>> wrapped_by_base_http_middleware(gzip_send), wrapped_by_base_http_middleware(print)
    (True, False)
    """
    level: list[object] = [send]
    seen: set[int] = set()
    for _ in range(MAX_DEPTH):
        following: list[object] = []
        for item in level:
            if id(item) in seen:
                continue
            seen.add(id(item))
            if "BaseHTTPMiddleware." in getattr(item, "__qualname__", ""):
                return True
            following.extend(_wrapped_callables(item))
        if not following:
            return False
        level = following
    return False


def unsized_to_http10(scope: Mapping[str, Any], framing: Framing) -> bool:
    """Whether a body of ``framing`` sent in ``scope`` can end only by closing the connection.

    >>> unsized_to_http10({"http_version": "1.0"}, Framing.CHUNKED)
    True
    >>> unsized_to_http10({"http_version": "1.0"}, Framing.CONTENT_LENGTH)
    False
    >>> unsized_to_http10({"http_version": "1.1"}, Framing.CHUNKED)
    False
    >>> unsized_to_http10({"http_version": "1"}, Framing.CHUNKED)  # granian 2.8's "1.0"
    True
    """
    return framing is Framing.CHUNKED and scope.get("http_version") in _HTTP10


def check_wrapping(send: Callable[..., Any]) -> None:
    """Warn once if ``send`` is wrapped by ``BaseHTTPMiddleware`` (see the module docstring)."""
    if "base-http-middleware" not in _GIVEN and wrapped_by_base_http_middleware(send):
        warn_once("base-http-middleware", BASE_HTTP_MIDDLEWARE_WARNING)


def check_framing(scope: Mapping[str, Any], framing: Framing) -> None:
    """Warn once if a body of ``framing`` reaches an HTTP/1.0 peer without a length."""
    if unsized_to_http10(scope, framing):
        warn_once("http10-unsized", HTTP10_WARNING)
