"""A sans-IO, incremental Server-Sent Events decoder for the backend side of the proxy.

Bytes go in exactly as the socket delivered them (any split, including inside a UTF-8 sequence or
a ``\\r\\n`` pair); complete events come out. The rules are those of the WHATWG event-stream
interpretation, https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation,
in the shape of florimondmanca/httpx-sse (a line splitter plus a field interpreter), fused into
one class because the proxy only ever needs both.

Cost: each decoded character is looked at a bounded number of times. A partial line is kept as a
list of pieces and joined once, when its line end arrives; line ends are searched for only in
the new text, never in what is already buffered.

Deliberate departures from the letter of the spec, each in the proxy's favour:
- A ``\\r`` at the end of a read ends its line at once; a ``\\n`` at the start of the next read
  is then skipped. httpx-sse holds the ``\\r`` back instead, which delays the last event of a
  read until the next read on ``\\r``-only streams. The events are the same for every split.
- ``close()`` dispatches an event whose lines all ended but whose blank line never came (a
  backend that closes right after its last ``data:`` line loses nothing). A line cut off
  without its line end is dropped, as the spec says: it is probably truncated JSON.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import final

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "SSEDecoder", "SSEError", "SSEEvent"]

DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024


class SSEError(Exception):
    """The stream broke a hard limit, or the decoder was used after ``close()``."""


@final
@dataclass(slots=True)
class SSEEvent:
    """One dispatched event. Don't subclass: callers compare events with ``==``.

    Not frozen: one is made per backend chunk, and a frozen dataclass's ``__init__`` costs
    twice as much (``object.__setattr__`` per field). Nothing changes an event once made.
    """

    data: str
    event: str = "message"


@final
class SSEDecoder:
    """Turn event-stream bytes into :class:`SSEEvent` objects, incrementally.

    Args:
        max_event_size: the largest line, and the largest ``data`` of one event, in characters.
            Exceeding it raises :class:`SSEError`, so a backend that never sends a line end
            cannot make the proxy buffer without bound.
    """

    __slots__ = (
        "_closed",
        "_data",
        "_data_size",
        "_decoder",
        "_event",
        "_max",
        "_parts",
        "_parts_size",
        "_skip_lf",
        "_started",
    )

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size < 1:
            raise ValueError("max_event_size must be positive")
        self._max = max_event_size
        # errors="replace": one bad byte from the backend becomes U+FFFD in one delta instead of
        # killing a stream the client may have waited minutes for.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []  # the current, unterminated line
        self._parts_size = 0
        self._skip_lf = False  # the last read ended in "\r": a leading "\n" belongs to it
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._started = False
        self._closed = False

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Decode the next bytes of the stream.

        Returns:
            the events completed by these bytes, in order (often none, often several).

        Raises:
            SSEError: a line or an event's data exceeded ``max_event_size``, or the decoder
                was closed.
        """
        if self._closed:
            raise SSEError("feed() after close()")
        text = self._decoder.decode(data)
        return self._feed_text(text) if text else []

    def close(self) -> list[SSEEvent]:
        """End of stream: flush the UTF-8 decoder and dispatch a pending complete event.

        Returns:
            the last event, if its lines all ended but its blank line never came.
        """
        if self._closed:
            raise SSEError("close() called twice")
        text = self._decoder.decode(b"", final=True)
        events = self._feed_text(text) if text else []
        self._closed = True
        self._parts.clear()
        if self._data:
            events.append(SSEEvent("\n".join(self._data), self._event or "message"))
            self._data = []
            self._data_size = 0
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not self._started:
            self._started = True
            if text[0] == "\ufeff":  # the spec strips one leading byte order mark
                text = text[1:]
                if not text:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\r" in text:
            self._skip_lf = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        elif not self._parts and not self._data and not self._event and text.endswith("\n\n"):
            return self._fast_events(text)
        return self._lines(text.split("\n"))

    def _fast_events(self, text: str) -> list[SSEEvent]:
        # The usual read: whole "data: {...}\n\n" events and nothing pending. Blocks end at
        # blank lines, so the decoder state is empty at the start of each; only blocks other
        # than one "data: " line take the general path.
        events: list[SSEEvent] = []
        for block in text[:-2].split("\n\n"):
            if len(block) > self._max:
                raise SSEError(f"SSE event larger than {self._max} characters")
            if block.startswith("data: ") and "\n" not in block:
                events.append(SSEEvent(block[6:]))
            else:
                for line in block.split("\n"):
                    self._line(line, events)
                self._line("", events)
        return events

    def _lines(self, lines: list[str]) -> list[SSEEvent]:
        """Interpret split lines; the last item is the unterminated rest of the text."""
        out: list[SSEEvent] = []
        tail = lines.pop()
        if lines and self._parts:
            self._parts.append(lines[0])
            lines[0] = "".join(self._parts)
            self._parts.clear()
            self._parts_size = 0
        for line in lines:
            self._line(line, out)
        if tail:
            self._parts_size += len(tail)
            if self._parts_size > self._max:
                raise SSEError(f"SSE line longer than {self._max} characters")
            self._parts.append(tail)
        return out

    def _line(self, line: str, out: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                out.append(SSEEvent("\n".join(self._data), self._event or "message"))
                self._data = []
                self._data_size = 0
            self._event = ""
            return
        if len(line) > self._max:
            raise SSEError(f"SSE line longer than {self._max} characters")
        if line[0] == ":":  # a comment: keep-alive pings
            return
        name, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max:
                raise SSEError(f"SSE event larger than {self._max} characters")
            self._data.append(value)
        elif name == "event":
            self._event = value
        # "id" and "retry" only matter to a reconnecting browser; other names are ignored, as
        # the spec says, which also covers malformed lines such as "data {oops".
