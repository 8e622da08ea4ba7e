"""Streaming responses for Starlette and FastAPI, all driven by one chunk pump.

The public surface is exactly :data:`__all__`; every other module is private. The in-process
streaming test client lives in :mod:`streaming_responses.testing`.

Example::

    from streaming_responses import StreamingResponse

    async def tick():
        for n in range(3):
            yield f"tick {n}\\n"

    async def endpoint(request):
        return StreamingResponse(tick(), media_type="text/plain")
"""

from __future__ import annotations

import importlib as _importlib
import typing as _typing

from ._broker import EventBroker
from ._broker_fanout import Subscription
from ._csv import CSVResponse
from ._events import ServerSentEvent
from ._exceptions import (
    BrokerClosed,
    BrokerError,
    BrokerUnavailable,
    CompressionError,
    ContentLengthError,
    EventsLost,
    FileChangedError,
    FileResponseError,
    ResponseStateError,
    StreamError,
    StreamNotFound,
    StreamShutdown,
    StreamTimeout,
    SubscriberTooSlow,
    UnsupportedEventLoop,
)
from ._files import FileResponse
from ._framing import Framing
from ._jsonlines import JSONLinesResponse
from ._logs import DuplicateStreamErrorFilter
from ._middleware import StreamingHTTPMiddleware
from ._outcome import Outcome, StreamOutcome
from ._resumable import AttachedStream, JobOutcome, ResumableStreams
from ._resumable_rules import JobEnding
from ._shutdown import ShutdownPolicy, end_all_streams
from ._sse import EventSourceResponse, last_event_id
from ._streaming import StreamingResponse

if _typing.TYPE_CHECKING:
    from ._templates import StreamingTemplateResponse, StreamingTemplates  # pragma: no cover

__all__ = (
    "AttachedStream",
    "BrokerClosed",
    "BrokerError",
    "BrokerUnavailable",
    "CSVResponse",
    "CompressionError",
    "ContentLengthError",
    "DuplicateStreamErrorFilter",
    "EventBroker",
    "EventSourceResponse",
    "EventsLost",
    "FileChangedError",
    "FileResponse",
    "FileResponseError",
    "Framing",
    "JSONLinesResponse",
    "JobEnding",
    "JobOutcome",
    "Outcome",
    "ResponseStateError",
    "ResumableStreams",
    "ServerSentEvent",
    "ShutdownPolicy",
    "StreamError",
    "StreamNotFound",
    "StreamOutcome",
    "StreamShutdown",
    "StreamTimeout",
    "StreamingHTTPMiddleware",
    "StreamingResponse",
    "StreamingTemplateResponse",
    "StreamingTemplates",
    "SubscriberTooSlow",
    "Subscription",
    "UnsupportedEventLoop",
    "end_all_streams",
    "last_event_id",
)

__version__ = "0.1.0"

#: Public names whose module needs an optional dependency, imported on first use (PEP 562), so
#: that ``import streaming_responses`` works without it.
_LAZY = {
    "StreamingTemplateResponse": "._templates",
    "StreamingTemplates": "._templates",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
