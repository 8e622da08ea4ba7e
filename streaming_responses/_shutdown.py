"""Server shutdown: which open streams end, and how the core hears about it.

This module owns the streams that asked to be ended on shutdown (``ShutdownPolicy.END`` or
``ABORT``), grouped by the event loop they run in (an asyncio loop or a trio run, told apart by
the loop seam's :class:`~._loops.LoopToken`), and the signal handlers that learn of a
shutdown without any wiring by the user. The rules that keep it contained:

* an entry exists for a loop only while at least one such stream is open in it (or, after a
  shutdown signal, until that loop is closed), so nothing outlives an app or leaks between
  tests, which each run their own loop;
* SIGTERM and SIGINT handlers are installed when the first such stream opens and put back when
  the last one ends; they *chain* to whatever handler the server installed (uvicorn's
  ``signal.signal`` handlers, hypercorn's and granian's ``loop.add_signal_handler``, whose
  wake-up file descriptor is untouched), so the server still shuts down as it always does. No
  server is patched and nothing happens at import time.
* where the process would die of the signal (a hypercorn worker process leaves SIGTERM at its
  default: a signal to the whole process group, as Ctrl-C or systemd's default stop sends, used
  to kill it mid-stream), the streams end first and the process then dies of the same signal,
  at the latest :data:`DEFAULT_ACTION_DELAY` seconds later (the same signal meanwhile, which
  hypercorn's master sends every worker once one of them exited, waits for them too);
* a hypercorn worker process learns of a shutdown from its master through a multiprocessing
  event, not a signal: while such streams are open there, a watcher thread polls that event
  (found as the ``shutdown_event`` argument hypercorn starts the worker with) and ends them.

Why the core needs this: uvicorn, hypercorn and granian all wait for in-flight responses when
they shut down, and none of them tells the application (no ``http.disconnect``, no
cancellation before the graceful timeout), so an endless event stream keeps them from exiting.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from ._loops import LoopToken, current_loop

logger = logging.getLogger("streaming_responses")

#: Signals that mean "the server is shutting down".
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: Seconds a process that dies of a signal by default waits for its streams to end first.
DEFAULT_ACTION_DELAY = 2.0
#: How often the watcher of a hypercorn worker looks at its master's shutdown event.
WATCH_INTERVAL = 0.1


def master_shutdown_event() -> Any | None:
    """The multiprocessing event by which a hypercorn master tells this worker to shut down.

    Hypercorn starts each worker process with ``shutdown_event=`` among the keyword arguments of
    its target; ``multiprocessing`` keeps them on the worker's own process object. ``None`` in
    any other process.
    """
    if multiprocessing.parent_process() is None:
        return None
    arguments = getattr(multiprocessing.current_process(), "_kwargs", None)
    event = arguments.get("shutdown_event") if isinstance(arguments, dict) else None
    return event if callable(getattr(event, "is_set", None)) else None


class MasterWatch:
    """A daemon thread that ends the streams once a hypercorn master asks its worker to stop."""

    def __init__(self, event: Any, on_shutdown: Callable[[], None]) -> None:
        self._event = event
        self._on_shutdown = on_shutdown
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="streaming_responses-shutdown", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        # Poll with is_set(), as hypercorn's own workers do, and never sleep in the event's
        # wait(): a multiprocessing Condition's notify waits for every sleeper it woke to say
        # so, and a worker that dies of the signal first (the process-group case) would leave
        # the master blocked in set() forever.
        while not self._stopped.wait(WATCH_INTERVAL):
            if self._event.is_set():
                if not self._stopped.is_set():
                    self._on_shutdown()
                return

    def stop(self) -> None:
        self._stopped.set()


Stopper = Callable[[], None]
_Handler = Callable[[int, FrameType | None], Any] | int | None


class ShutdownPolicy(enum.Enum):
    """What a streaming response does when the server shuts down.

    ``WAIT`` leaves it to the server (which usually waits for the response to finish);
    ``END`` sends an optional last chunk and ends the body normally (server-sent events: the
    client reconnects elsewhere); ``ABORT`` cuts the response so it cannot look complete.
    """

    WAIT = "wait"
    END = "end"
    ABORT = "abort"


class LoopStreams:
    """The streams of one event loop that end on shutdown, and the signal handlers for them."""

    def __init__(self, loop: LoopToken) -> None:
        self.loop = loop
        self.stoppers: set[Stopper] = set()
        #: Set once a shutdown signal arrived: streams that open afterwards end at once.
        self.draining = False
        self._previous: dict[int, _Handler] = {}
        self._dying: int | None = None
        self._watch: MasterWatch | None = None

    def add(self, stopper: Stopper) -> None:
        self.stoppers.add(stopper)
        if self.draining:
            self.loop.call_soon_threadsafe(stopper)
        elif len(self.stoppers) == 1:
            self._install_handlers()

    def discard(self, stopper: Stopper) -> None:
        self.stoppers.discard(stopper)
        if not self.stoppers:
            self._restore_handlers()
            if self._dying is not None:
                # The last stream has ended: now die of the signal, as the process would have.
                self.loop.call_soon_threadsafe(self._die)

    def end_all(self) -> int:
        stoppers = list(self.stoppers)
        for stopper in stoppers:
            stopper()
        return len(stoppers)

    def _drain(self, why: str) -> None:
        if not self.draining:
            self.draining = True
            logger.info("%s: ending %d open stream(s)", why, len(self.stoppers))
            self.loop.call_soon_threadsafe(self.end_all)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes, possibly inside the loop itself:
        # only hand the work to the loop, which is safe from a signal handler.
        if self._dying is not None:
            # The process dies once its streams ended. A signal meanwhile (hypercorn's master
            # terminates every worker as soon as one exited, which a worker without streams
            # does at once) must not cut them off, unless the delay is over.
            if self._delay_over:
                signal.signal(self._dying, signal.SIG_DFL)
                os.kill(os.getpid(), self._dying)
            return
        self._drain(f"signal {signum}")
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            # The process was to die of this signal: it still will, once its streams ended,
            # or DEFAULT_ACTION_DELAY seconds from now.
            self._dying = signum
            timer = threading.Timer(DEFAULT_ACTION_DELAY, self._end_delay)
            timer.daemon = True
            timer.start()

    #: Whether DEFAULT_ACTION_DELAY passed since the signal a process dies of arrived.
    _delay_over = False

    def _end_delay(self) -> None:
        # In the timer's thread, which cannot set a signal's handler: the signal makes the
        # main thread run _on_signal, which can.
        self._delay_over = True
        self._die()

    def _die(self) -> None:
        signum = self._dying
        if signum is not None:
            os.kill(os.getpid(), signum)

    def _install_handlers(self) -> None:
        # signal.signal() only works in the main thread; elsewhere (a TestClient's portal
        # thread) the streams can still be ended with end_all_streams().
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SHUTDOWN_SIGNALS:
            previous = signal.getsignal(signum)
            # An ignored signal stays ignored (a hypercorn worker ignores SIGINT: its master
            # decides); a default one still kills the process, after the streams ended.
            if previous == signal.SIG_IGN or previous is None:
                continue
            try:
                signal.signal(signum, self._on_signal)
            except ValueError:  # pragma: no cover - not the main interpreter
                return
            self._previous[signum] = previous
        event = master_shutdown_event()
        if event is not None:
            self._watch = MasterWatch(event, lambda: self._drain("the server's master asked to stop"))

    def _restore_handlers(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        for signum, previous in self._previous.items():
            # Put the server's handler back only if ours is still the one installed.
            if signal.getsignal(signum) == self._on_signal:
                signal.signal(signum, previous)
        self._previous.clear()


class Registry:
    """Per-loop :class:`LoopStreams`, created on first use and dropped when empty."""

    def __init__(self) -> None:
        self._by_loop: dict[Any, LoopStreams] = {}

    def _entry(self, loop: LoopToken, create: bool) -> LoopStreams | None:
        entry = self._by_loop.get(loop.key)
        if entry is not None and entry.loop.closed():
            del self._by_loop[loop.key]  # a loop that was closed after a shutdown signal
            entry = None
        if entry is None and create:
            entry = self._by_loop[loop.key] = LoopStreams(loop)
        return entry

    def register(self, stopper: Stopper) -> None:
        entry = self._entry(current_loop().token(), create=True)
        assert entry is not None
        entry.add(stopper)

    def unregister(self, stopper: Stopper) -> None:
        loop = current_loop().token()
        entry = self._entry(loop, create=False)
        if entry is None:
            return
        entry.discard(stopper)
        if not entry.stoppers and not entry.draining:
            del self._by_loop[loop.key]

    def end_all(self) -> int:
        entry = self._entry(current_loop().token(), create=False)
        return 0 if entry is None else entry.end_all()


#: The one registry. Its entries live only while streams are open (see the module docstring).
REGISTRY = Registry()


def end_all_streams() -> int:
    """End every open stream of the running event loop that ends on shutdown.

    Server-sent event streams (and any response created with ``on_shutdown="end"`` or
    ``"abort"``) end as they would on SIGTERM: an ``END`` stream sends its last chunk (for
    :class:`~streaming_responses.EventSourceResponse`, the ``shutdown_event``) and finishes
    its body; an ``ABORT`` stream is cut. Returns how many streams were asked to end. Call it
    from the event loop that serves the app: in a lifespan shutdown handler, a custom signal
    handler, or a test.

    Example::

        @pytest.mark.anyio
        async def test_endless_feed_ends_on_shutdown():
            async with StreamingTestClient(app) as client:
                async with client.stream("GET", "/feed") as response:
                    ...
                    end_all_streams()
    """
    return REGISTRY.end_all()
