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

from ._exceptions import ContentLengthError, ResponseStateError, StreamError, StreamShutdown, StreamTimeout
from ._framing import Framing
from ._outcome import Outcome, StreamOutcome
from ._shutdown import ShutdownPolicy, end_all_streams
from ._streaming import StreamingResponse

__all__ = (
    "ContentLengthError",
    "Framing",
    "Outcome",
    "ResponseStateError",
    "ShutdownPolicy",
    "StreamError",
    "StreamOutcome",
    "StreamShutdown",
    "StreamTimeout",
    "StreamingResponse",
    "end_all_streams",
)

__version__ = "0.1.0"
