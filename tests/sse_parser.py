"""A spec-faithful parser of ``text/event-stream`` bodies, for tests and benchmarks.

It follows WHATWG HTML, "Server-sent events", sections 9.2.5 "Parsing an event stream" and
9.2.6 "Interpreting an event stream", step by step, so that a test can check what a browser's
``EventSource`` would make of the bytes we send. It is deliberately written from the spec and
shares no code with the encoder under test.

Example::

    parser = EventStreamParser()
    events = parser.feed(b"event: greet\\ndata: hi\\nid: 1\\n\\n")
    assert events == [ParsedEvent(type="greet", data="hi", last_event_id="1")]
    assert parser.last_event_id == "1"
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

__all__ = ("EventStreamParser", "ParsedEvent", "parse_stream")

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class ParsedEvent:
    """One dispatched ``MessageEvent``: its type, its data and the source's last event ID."""

    type: str
    data: str
    last_event_id: str


@dataclass
class EventStreamParser:
    """Incremental parser: ``feed()`` chunks as they arrive (bytes or str), get the dispatched events.

    Chunks may split a line, a CRLF pair or a UTF-8 sequence anywhere. ``comments`` collects the
    text of every comment line (after the colon, with one leading space removed), ``retry`` the
    reconnection time last set, ``last_event_id`` the source's last event ID string (which
    persists across events, spec step "dispatch the event", 1).
    """

    events: list[ParsedEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    last_event_id: str = ""
    _data: str = ""
    _event_type: str = ""
    _id_buffer: str = ""
    _buffer: str = ""
    _pending_cr: bool = False
    _started: bool = False
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    def feed(self, chunk: bytes | str) -> list[ParsedEvent]:
        """Parse one chunk; return the events it completed (also appended to ``events``)."""
        # "The stream must then be parsed by reading everything line by line": UTF-8 decode
        # with replacement characters for invalid sequences.
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes) else chunk
        if not self._started and text:
            self._started = True
            # "One leading U+FEFF BYTE ORDER MARK character must be ignored if any are present."
            if text.startswith("\ufeff"):
                text = text[1:]
        if self._pending_cr and text:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]  # the LF of a CRLF pair split across chunks: its CR ended the line
        if not text:
            return []
        self._pending_cr = text.endswith("\r")
        # "Lines must be separated by either a U+000D CARRIAGE RETURN U+000A LINE FEED (CRLF)
        # character pair, a single U+000A LINE FEED (LF) character, or a single U+000D CARRIAGE
        # RETURN (CR) character." The last piece is the start of a line not yet ended.
        *lines, self._buffer = _LINE_END.split(self._buffer + text)
        dispatched: list[ParsedEvent] = []
        for line in lines:
            self._process_line(line, dispatched)
        self.events.extend(dispatched)
        return dispatched

    def close(self) -> None:
        """End of stream: an incomplete event is discarded (spec: "not dispatched")."""
        self._decoder.decode(b"", final=True)
        self._buffer = ""
        self._data = ""
        self._event_type = ""

    # -- "Parsing an event stream" --------------------------------------------------------------

    def _process_line(self, line: str, dispatched: list[ParsedEvent]) -> None:
        if line == "":
            self._dispatch(dispatched)
        elif line.startswith(":"):
            comment = line[1:]
            self.comments.append(comment[1:] if comment.startswith(" ") else comment)
        elif ":" in line:
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            self._process_field(name, value)
        else:
            self._process_field(line, "")

    # -- "Interpreting an event stream" ---------------------------------------------------------

    def _process_field(self, name: str, value: str) -> None:
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data += value + "\n"
        elif name == "id":
            if "\0" not in value:
                self._id_buffer = value
        elif name == "retry" and value and all("0" <= char <= "9" for char in value):
            self.retry = int(value)  # a value that is not all ASCII digits is ignored
        # Any other field name is ignored.

    def _dispatch(self, dispatched: list[ParsedEvent]) -> None:
        self.last_event_id = self._id_buffer
        if self._data == "":
            self._event_type = ""
            return
        data = self._data[:-1] if self._data.endswith("\n") else self._data
        event = ParsedEvent(type=self._event_type or "message", data=data, last_event_id=self.last_event_id)
        self._data = ""
        self._event_type = ""
        dispatched.append(event)


def parse_stream(body: bytes | str) -> list[ParsedEvent]:
    """Parse a whole body at once and return every event it dispatches.

    Example::

        assert parse_stream(b"data: a\\n\\ndata: b\\n\\n")[1].data == "b"
    """
    parser = EventStreamParser()
    parser.feed(body)
    parser.close()
    return parser.events
