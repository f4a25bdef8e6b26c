"""The incremental parser: raw MiniMax-M2 text deltas in, events out.

Scanner contract: ``feed()`` joins the held-back text with the new delta into
``buf`` and calls the scanner of the current state with a cursor ``i``. A
scanner consumes text from ``i``, emits what it can, and returns the new
cursor. When the rest of ``buf`` could be the start of a tag it stores that
rest in ``_hold`` and returns ``len(buf)``; the hold is never longer than the
longest tag, so each character is looked at a bounded number of times and a
delta costs time in proportion to its length, never to what came before.

Degrade policy: model output never raises. Markup that breaks the grammar is
given back as the text it interrupted (reasoning or content), and inside a
tool-call block stray text becomes content.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring
from typing import Any

from ._errors import ParserUsageError
from ._events import ContentText, Event, ThinkText, ToolArgs, ToolCallEnd, ToolCallStart
from ._names import MAX_NAME_AREA, complete_name, name_accepts
from ._schema import STRING_ONLY, Types, convert, tool_param_types
from ._state import LISTENS, MAX_TAG, TRANSITIONS, State, Tag
from ._stream import StreamParser

__all__ = ["M2Parser"]

_WS = re.compile(r"[ \t\r\n]*")
_WS_CHARS = " \t\r\n"
_NO_TYPES: dict[str, Types] = {}

_THINK, _CONTENT, _QUOTED, _VALUE = State.THINK, State.CONTENT, State.QUOTED_THINK, State.VALUE
_TEXT_EVENT: dict[State, type[ThinkText] | type[ContentText]] = {
    State.THINK_START: ThinkText,
    State.THINK: ThinkText,
}


def _escape(text: str) -> str:
    """``text`` as the inside of a JSON string (ensure_ascii=False escaping)."""
    escaped: str = encode_basestring(text)
    return escaped[1:-1]


class M2Parser(StreamParser, grammar="m2"):
    """Turns MiniMax-M2 raw output, fed as deltas of any size, into events.

    Built by ``StreamParser(tools, starts_in_think, grammar="m2")``; see
    :class:`parser.StreamParser` for the arguments. ``starts_in_think``: the
    prompt ended with ``<think>`` (the MiniMax-M2 template does).
    """

    def __init__(
        self,
        tools: Iterable[Any] | None = None,
        starts_in_think: bool = True,
        grammar: str = "m2",
    ) -> None:
        self._init_common()
        self._types = tool_param_types(tools)
        self._state = State.THINK_START if starts_in_think else State.CONTENT_START
        # Tentative markup: where to return and what was consumed, given back
        # as text if the markup turns out to be malformed.
        self._fallback = _THINK if starts_in_think else _CONTENT
        self._raw: list[str] = []
        self._name = ""  # the name area of <invoke name=…> or <parameter name=…>
        # The open call.
        self._call_name = ""
        self._call_types = _NO_TYPES
        self._args: dict[str, Any] = {}
        self._keys = 0
        # The open parameter.
        self._param = ""
        self._param_types = STRING_ONLY
        self._streaming = True  # value streams as a JSON string
        self._skip = False  # duplicate parameter: its value is dropped
        self._value: list[str] = []
        self._ws: list[str] = []  # whitespace after a tag in a block, held

    # -- public API ---------------------------------------------------------

    def feed(self, delta: str) -> list[Event]:
        state = self._state
        if state is State.CLOSED:
            raise ParserUsageError("feed() after close()")
        if self._tokens.held or "]" in delta or "[" in delta:
            delta = self._tokens.feed(delta)
        if not delta:
            return []
        # Fast path: plain text with no tag in sight, the bulk of any output.
        if not self._hold and "<" not in delta:
            if state is _THINK:
                return [ThinkText(delta)]
            if state is _CONTENT or state is _QUOTED:
                return [ContentText(delta)]
            if state is _VALUE and self._streaming:
                if self._skip:
                    return []
                self._value.append(delta)
                return [ToolArgs(self._index, _escape(delta))]
        return self._run(delta)

    def close(self) -> list[Event]:
        out, held = self._closing(State.CLOSED)
        state = self._state
        if state is State.THINK_START or state is State.CONTENT_START:
            self._raw.append(held)
            self._give_back()
        elif state is _THINK or state is _CONTENT or state is _QUOTED:
            if held:
                self._text(held)
        elif state is _VALUE:
            if held:
                self._value_text(held)
            if self._streaming:
                self._finish_value()
            self._end_call()
        elif state is State.VALUE_CLOSE:
            self._finish_value()
            self._end_call()
        elif state is State.INVOKE or state is State.PARAM_NAME:
            self._end_call()
        # BLOCK_OPEN, BLOCK, INVOKE_NAME: a call whose name never completed
        # yields nothing, and its partial markup is not content.
        self._state = State.CLOSED
        self._flush()
        return out

    # -- driver -------------------------------------------------------------

    def _go(self, tag: Tag) -> None:
        self._state = TRANSITIONS[(self._state, tag)]

    def _maybe_hold(self, buf: str, i: int) -> bool:
        """Hold ``buf[i:]`` if it may still become a tag the state listens for."""
        if len(buf) - i >= MAX_TAG:
            return False
        rest = buf[i:]
        if any(tag.startswith(rest) for tag in LISTENS[self._state]):
            self._hold = rest
            return True
        return False

    # -- output -------------------------------------------------------------

    def _text(self, text: str) -> None:
        """Text in a text state: reasoning, content or a parameter value."""
        if self._state is _VALUE:
            self._value_text(text)
        else:
            self._put(_TEXT_EVENT.get(self._state, ContentText), text)

    def _give_back(self) -> None:
        """The tentative markup was not markup: it is text of the state it interrupted."""
        text = "".join(self._raw)
        self._raw = []
        self._name = ""
        if self._state is not State.THINK_START and self._state is not State.CONTENT_START:
            self.fallbacks += 1
        self._state = self._fallback
        if text:
            self._put(_TEXT_EVENT.get(self._fallback, ContentText), text)

    # -- scanners -----------------------------------------------------------

    def _scan_text(self, buf: str, i: int) -> int:
        m = _FIND_TAG[self._state].search(buf, i)
        if m is not None:
            j = m.start()
            if j > i:
                self._text(buf[i:j])
            tag = m.group()
            self._on_tag(_TAGS[tag])
            return j + len(tag)
        n = len(buf)
        # Only the tail can hold the start of a tag that is still arriving.
        j = buf.find("<", max(i, n - MAX_TAG + 1))
        while j >= 0 and not self._maybe_hold(buf, j):
            j = buf.find("<", j + 1)
        end = n if j < 0 else j
        if end > i:
            self._text(buf[i:end] if i or end < n else buf)
        return n

    def _scan_leading(self, buf: str, i: int) -> int:
        j = _WS.match(buf, i).end()  # type: ignore[union-attr]
        if j > i:
            self._raw.append(buf[i:j])
        if j == len(buf):
            return j
        if buf.startswith(Tag.THINK_OPEN.value, j):
            self._raw = []
            self._go(Tag.THINK_OPEN)
            return j + len(Tag.THINK_OPEN.value)
        if self._maybe_hold(buf, j):
            return len(buf)
        self._give_back()
        return j

    def _scan_markup(self, buf: str, i: int) -> int:
        state = self._state
        j = _WS.match(buf, i).end()  # type: ignore[union-attr]
        if j > i:
            # Whitespace is markup only if a tag follows; hold it until we know.
            (self._raw if state is State.BLOCK_OPEN else self._ws).append(buf[i:j])
        if j == len(buf):
            return j
        if buf[j] == "<":
            for tag in LISTENS[state]:
                if buf.startswith(tag, j):
                    if state is State.BLOCK_OPEN:
                        self._raw.append(tag)
                    self._ws = []
                    self._on_tag(_TAGS[tag])
                    return j + len(tag)
            if self._maybe_hold(buf, j):
                return len(buf)
        if state is State.BLOCK_OPEN:
            self._give_back()
            return j
        ws = "".join(self._ws)
        self._ws = []
        if state is State.VALUE_CLOSE:
            # Not a close after all: the tag and whitespace belong to the value.
            self._state = _VALUE
            self._value_text(Tag.PARAM_CLOSE.value + ws)
            return j
        # Stray text inside a block is content; the block goes on.
        self.fallbacks += 1
        k = buf.find("<", j + 1)
        stray = buf[j:] if k < 0 else buf[j:k]
        text = stray.rstrip(_WS_CHARS)
        if len(text) < len(stray):
            self._ws.append(stray[len(text) :])
        self._put(ContentText, ws + text)
        return len(buf) if k < 0 else k

    def _scan_name(self, buf: str, i: int) -> int:
        """Read ``"name">`` after ``<invoke name=`` or ``<parameter name=``."""
        start, n, area = i, len(buf), self._name
        while i < n:
            c = buf[i]
            if c == ">":
                name = complete_name(area)
                if name is None:
                    break
                self._name = ""
                self._on_name(name)
                return i + 1
            if len(area) >= MAX_NAME_AREA or not name_accepts(area, c):
                break
            area += c
            i += 1
        else:
            self._raw.append(buf[start:])
            self._name = area
            return n
        self._raw.append(buf[start:i])
        self._give_back()
        return i

    # -- transitions with effects -------------------------------------------

    def _on_tag(self, tag: Tag) -> None:
        state = self._state
        if tag is Tag.BLOCK_OPEN:
            self._fallback = state
            self._raw = [tag.value]
        elif tag is Tag.INVOKE_OPEN:
            if state is State.INVOKE:
                self._end_call()
            if state is not State.BLOCK_OPEN:
                self._fallback = State.BLOCK
                self._raw = [tag.value]
        elif tag is Tag.PARAM_OPEN:
            if state is State.VALUE_CLOSE:
                self._finish_value()
            self._fallback = State.INVOKE
            self._raw = [tag.value]
        elif tag is Tag.INVOKE_CLOSE:
            if state is State.VALUE_CLOSE:
                self._finish_value()
            self._end_call()
        elif tag is Tag.BLOCK_CLOSE:
            if state is State.INVOKE:
                self._end_call()
            elif state is State.BLOCK_OPEN:
                self._raw = []  # a block with no call: markup, never shown to a client
        elif (state is _CONTENT and tag is Tag.THINK_OPEN) or state is _QUOTED:
            self._put(ContentText, tag.value)  # a literal pair in content is content
        self._go(tag)

    def _on_name(self, name: str) -> None:
        self._raw = []
        if self._state is State.INVOKE_NAME:
            self._call_name = name
            self._call_types = self._types.get(name, _NO_TYPES)
            self._args = {}
            self._keys = 0
            self._emit(ToolCallStart(self._index, name))
        else:
            self._param = name
            self._param_types = self._call_types.get(name, STRING_ONLY)
            self._streaming = self._param_types == STRING_ONLY
            self._skip = name in self._args
            self._value = []
            if self._streaming and not self._skip:
                self._args[name] = ""  # reserve the key's place and mark it taken
                self._put(ToolArgs, self._key_prefix(name) + '"')
        self._go(Tag.NAME)

    def _key_prefix(self, name: str) -> str:
        sep = ", " if self._keys else "{"
        self._keys += 1
        return sep + encode_basestring(name) + ": "

    def _value_text(self, text: str) -> None:
        if self._skip:
            return
        self._value.append(text)
        if self._streaming:
            self._put(ToolArgs, _escape(text))

    def _finish_value(self) -> None:
        if self._skip:
            return
        raw = "".join(self._value)
        self._value = []
        if self._streaming:
            self._args[self._param] = raw
            self._put(ToolArgs, '"')
            return
        value = convert(raw, self._param_types)
        self._args[self._param] = value
        self._put(ToolArgs, self._key_prefix(self._param) + json.dumps(value, ensure_ascii=False))

    def _end_call(self) -> None:
        self._put(ToolArgs, "}" if self._keys else "{}")
        self._emit(ToolCallEnd(self._index, self._call_name, self._args))
        self._index += 1
        self._args = {}
        self._skip = False


_TAGS = {t.value: t for t in Tag}
_FIND_TAG = {
    state: re.compile("|".join(re.escape(t) for t in tags))
    for state, tags in LISTENS.items()
    if tags
}

_Scanner = Callable[[M2Parser, str, int], int]
_SCANNERS: dict[State, _Scanner] = {
    State.THINK_START: M2Parser._scan_leading,
    State.CONTENT_START: M2Parser._scan_leading,
    State.THINK: M2Parser._scan_text,
    State.CONTENT: M2Parser._scan_text,
    State.QUOTED_THINK: M2Parser._scan_text,
    State.VALUE: M2Parser._scan_text,
    State.BLOCK_OPEN: M2Parser._scan_markup,
    State.BLOCK: M2Parser._scan_markup,
    State.INVOKE: M2Parser._scan_markup,
    State.VALUE_CLOSE: M2Parser._scan_markup,
    State.INVOKE_NAME: M2Parser._scan_name,
    State.PARAM_NAME: M2Parser._scan_name,
}
M2Parser._scanners = _SCANNERS
