"""The incremental parser for MiniMax-M3: raw text deltas in, events out.

The states and transitions are in ``_m3_state``; building and streaming a
call's arguments is ``_m3_args``. Scanner contract (as for M2): ``feed()``
joins the held-back text with the new delta into ``buf`` and calls the scanner
of the current state with a cursor ``i``; a scanner consumes text from ``i``,
emits what it can and returns the new cursor. What may still become a tag is
held back, never more than the longest tag, so each character is looked at a
bounded number of times.

Degrade policy: model output never raises. Markup that breaks the grammar is
given back as the text it interrupted (reasoning, content or a value), stray
text between tags becomes content, and the marker ``NS`` never reaches any
output.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from ._errors import ParserUsageError
from ._events import ContentText, Event, ThinkText, ToolArgs, ToolCallEnd, ToolCallStart
from ._m3_args import CallArgs, escape
from ._m3_state import NS, TEXT_TAGS, TRANSITIONS, State, Tag
from ._names import MAX_NAME, MAX_NAME_AREA, complete_name
from ._schema import SILENT, Shape, shape_of, tool_schemas
from ._stream import StreamParser

__all__ = ["M3Parser"]

_WS = re.compile(r"[ \t\r\n]*")
_WS_CHARS = " \t\r\n"
_INVOKE = "<invoke name="
_MAX_TAG = len(_INVOKE) + MAX_NAME_AREA + 1  # the longest <…> read after NS
_TAG_BREAK = re.compile(r"[<\[\]\n]")  # never inside a tag after its "<"
_TAG_START = re.compile(r"[<\]]")  # where a tag or the marker may start
_KEY = re.compile(rf"[^\s<>/\[\]\"'=]{{1,{MAX_NAME}}}")
_NS_LEN = len(NS)
_LONGEST_TEXT_TAG = len(Tag.BLOCK_OPEN.value)

_THINK, _CONTENT, _QUOTED, _VALUE = State.THINK, State.CONTENT, State.QUOTED_THINK, State.VALUE
_TEXT_EVENT: dict[State, type[ThinkText] | type[ContentText]] = {
    State.THINK_START: ThinkText,
    State.THINK: ThinkText,
}


class M3Parser(StreamParser, grammar="m3"):
    """Turns MiniMax-M3 raw output, fed as deltas of any size, into events.

    Built by ``StreamParser(tools, starts_in_think, grammar="m3")``; see
    :class:`parser.StreamParser` for the arguments. ``starts_in_think`` is
    thinking mode ``enabled`` (the prompt ends with ``<mm:think>``); False is
    ``disabled`` or ``adaptive``.
    """

    def __init__(
        self,
        tools: Iterable[Any] | None = None,
        starts_in_think: bool = True,
        grammar: str = "m3",
    ) -> None:
        self._init_common()
        self._schemas = dict(tool_schemas(tools))
        self._shapes: dict[str, Shape] = {}
        self._state = State.THINK_START if starts_in_think else State.CONTENT_START
        # Tentative block markup: where to return, and what was consumed.
        self._fallback = _THINK if starts_in_think else _CONTENT
        self._raw: list[str] = []
        self._back = self._state  # the state a tag read after NS interrupted
        self._tag = ""  # the tag being read after NS
        self._ws: list[str] = []  # whitespace between tags, held
        self._call: CallArgs | None = None
        self._call_name = ""

    # -- public API ---------------------------------------------------------

    def feed(self, delta: str) -> list[Event]:
        state = self._state
        if state is State.CLOSED:
            raise ParserUsageError("feed() after close()")
        marker = "]" in delta  # the marker NS starts with "]"
        if marker or self._tokens.held or "[" in delta:
            delta = self._tokens.feed(delta)
            marker = "]" in delta
        if not delta:
            return []
        # Fast path: plain text with no tag in sight, the bulk of any output.
        if not self._hold and not marker:
            if "<" not in delta:
                if state is _THINK:
                    return [ThinkText(delta)]
                if state is _CONTENT or state is _QUOTED:
                    return [ContentText(delta)]
            if state is _VALUE:
                sink = self._call.sink  # type: ignore[union-attr]  # VALUE: a call is open
                if sink is not None:  # a string value: "<" is text there
                    sink.append(delta)
                    return [ToolArgs(self._index, escape(delta))]
        return self._run(delta)

    def close(self) -> list[Event]:
        out, held = self._closing(State.CLOSED)
        state: State = self._state
        if state is State.TAG:
            state = self._back
            held = ""  # a tag cut short is markup, not text
        if state is State.THINK_START or state is State.CONTENT_START:
            self._raw.append(held)
            self._give_back()
        elif state is _THINK or state is _CONTENT or state is _QUOTED:
            self._text(held.replace(NS, ""))
        elif state is _VALUE or state is State.PENDING or state is State.ELEMS:
            if held and state is _VALUE:
                assert self._call is not None
                self._call.text(held)
            self._end_call(eof=True)
        # BLOCK_OPEN, BLOCK: a call whose name never completed yields nothing,
        # and its partial markup is not content.
        self._state = State.CLOSED
        self._flush()
        return out

    # -- driver -------------------------------------------------------------

    def _go(self, tag: Tag) -> None:
        self._state = TRANSITIONS[(self._state, tag)]

    def _text(self, text: str) -> None:
        if text:
            self._put(_TEXT_EVENT.get(self._state, ContentText), text)

    def _args(self, fragment: str) -> None:
        self._put(ToolArgs, fragment)

    def _give_back(self) -> None:
        """The tentative markup was not markup: it is text of the state it interrupted."""
        text = "".join(self._raw).replace(NS, "")
        self._raw = []
        if self._state is not State.THINK_START and self._state is not State.CONTENT_START:
            self.fallbacks += 1
        self._state = self._fallback
        self._text(text)

    # -- scanners: text -----------------------------------------------------

    def _scan_leading(self, buf: str, i: int) -> int:
        """Leading whitespace, closers (not in reasoning) and a redundant opener."""
        j = _WS.match(buf, i).end()  # type: ignore[union-attr]
        if j > i:
            self._raw.append(buf[i:j])
        if j == len(buf):
            return j
        for tag in TEXT_TAGS[self._state]:
            if buf.startswith(tag, j):
                self._raw = []
                self._go(_TAGS[tag])
                return j + len(tag)
        rest = buf[j:]
        if len(rest) < _LONGEST_TEXT_TAG and any(
            t.startswith(rest) for t in TEXT_TAGS[self._state]
        ):
            self._hold = rest
            return len(buf)
        self._fallback = _THINK if self._state is State.THINK_START else _CONTENT
        self._give_back()
        return j

    def _scan_text(self, buf: str, i: int) -> int:
        state = self._state
        m = _FIND_TAG[state].search(buf, i)
        n = len(buf)
        if m is not None:
            j, tag = m.start(), m.group()
            if tag == NS and Tag.BLOCK_OPEN.value.startswith(buf[j:]):
                self._text(buf[i:j])
                self._hold = buf[j:]  # NS<tool_c… still arriving
                return n
            self._text(buf[i:j])
            self._on_text_tag(_TAGS[tag])
            return j + len(tag)
        end = self._tail(buf, i, TEXT_TAGS[state])
        if end > i:
            self._text(buf[i:end] if i or end < n else buf)
        return n

    def _tail(self, buf: str, i: int, tags: tuple[str, ...]) -> int:
        """Where the undecided tail of ``buf`` starts (held back), or ``len(buf)``."""
        n = len(buf)
        for m in _TAG_START.finditer(buf, max(i, n - _LONGEST_TEXT_TAG + 1)):
            rest = buf[m.start() :]
            if any(t.startswith(rest) for t in tags):
                self._hold = rest
                return m.start()
        return n

    def _on_text_tag(self, tag: Tag) -> None:
        state = self._state
        if tag is Tag.BLOCK_OPEN:
            self._fallback = state
            self._raw = [tag.value]
        elif (state is _CONTENT and tag is Tag.THINK_OPEN) or (
            state is _QUOTED and tag is Tag.THINK_CLOSE
        ):
            self._put(ContentText, tag.value)  # a literal pair in content is content
        self._go(tag)

    def _scan_value(self, buf: str, i: int) -> int:
        call = self._call
        assert call is not None
        j = buf.find(NS, i)
        if j >= 0:
            if j > i:
                call.text(buf[i:j])
            self._start_tag()
            return j + _NS_LEN
        end = self._tail(buf, i, (NS,))
        if end > i:
            call.text(buf[i:end] if i or end < len(buf) else buf)
        return len(buf)

    # -- scanners: markup ---------------------------------------------------

    def _scan_markup(self, buf: str, i: int) -> int:
        """Between tags: whitespace, then NS and a tag."""
        state = self._state
        j = _WS.match(buf, i).end()  # type: ignore[union-attr]
        if j > i:
            self._hold_ws(buf[i:j])
        n = len(buf)
        if j == n:
            return j
        if buf.startswith(NS, j):
            self._start_tag()
            return j + _NS_LEN
        if NS.startswith(buf[j:]):
            self._hold = buf[j:]
            return n
        if state is State.BLOCK_OPEN:
            self._give_back()
            return j
        if state is State.PENDING:
            self._go(Tag.TEXT)
            return j
        return self._stray(buf, j)

    def _scan_pending(self, buf: str, i: int) -> int:
        call = self._call
        assert call is not None
        if not call.pending:  # the schema says string: it streams from the first character
            self._go(Tag.TEXT)
            return i
        return self._scan_markup(buf, i)

    def _hold_ws(self, ws: str) -> None:
        state = self._state
        if state is State.BLOCK_OPEN:
            self._raw.append(ws)
        elif state is State.PENDING:
            assert self._call is not None
            self._call.top_text.append(ws)  # markup if a child follows, else the value's
        else:
            self._ws.append(ws)

    def _stray(self, buf: str, j: int) -> int:
        """Text between the tags of a block is content; the block goes on."""
        self.fallbacks += 1
        ws = "".join(self._ws)
        self._ws = []
        k = buf.find("]", j + 1)
        stray = buf[j:] if k < 0 else buf[j:k]
        text = stray.rstrip(_WS_CHARS)
        if len(text) < len(stray):
            self._ws.append(stray[len(text) :])
        self._put(ContentText, ws + text)
        return len(buf) if k < 0 else k

    def _start_tag(self) -> None:
        if self._state is State.BLOCK_OPEN:
            self._raw.append(NS)
        self._back = self._state
        self._tag = ""
        self._state = State.TAG

    def _scan_tag(self, buf: str, i: int) -> int:
        """Read ``<…>`` after NS, up to ``>``; a character no tag holds makes it malformed."""
        area = self._tag
        n = len(buf)
        limit = min(n, i + _MAX_TAG - len(area))
        k = buf.find(">", i, limit)
        end = limit if k < 0 else k
        if not area and i < n and buf[i] != "<":
            return self._bad_tag("", i)
        m = _TAG_BREAK.search(buf, i + (0 if area else 1), end)
        if m is not None:
            return self._bad_tag(area + buf[i : m.start()], m.start())
        area += buf[i:end]
        if k < 0:
            if len(area) >= _MAX_TAG:
                return self._bad_tag(area, end)
            self._tag = area
            return n
        self._tag = ""
        self._on_tag(area + ">")
        return k + 1

    # -- tags inside a block ------------------------------------------------

    def _classify(self, tag: str) -> tuple[Tag, str]:
        """The kind of a complete tag read after NS, and its name or key."""
        if tag.startswith(_INVOKE):
            name = complete_name(tag[len(_INVOKE) : -1])
            return (Tag.INVOKE_OPEN, name) if name is not None else (Tag.BAD, "")
        closing = tag.startswith("</")
        key = tag[2:-1] if closing else tag[1:-1]
        if not _KEY.fullmatch(key):
            return Tag.BAD, ""
        call = self._call
        if closing:
            if call is not None and call.is_open(key):
                return Tag.ELEM_CLOSE, key
            if key == "invoke":
                return Tag.INVOKE_CLOSE, key
            return (Tag.BLOCK_CLOSE, key) if key == "tool_call" else (Tag.BAD, "")
        if key == "tool_call":
            return Tag.BLOCK_OPEN, key
        return Tag.ELEM_OPEN, key

    def _on_tag(self, text: str) -> None:
        tag, name = self._classify(text)
        back = self._back
        nxt = TRANSITIONS.get((back, tag))
        if nxt is None or (tag is Tag.ELEM_OPEN and not self._open_elem(name)):
            self._bad_tag(text, -1)
            return
        self._state = nxt
        self._ws = []
        if tag is Tag.INVOKE_OPEN:
            if back is not State.BLOCK_OPEN and back is not State.BLOCK:
                self._end_call(eof=False)  # lenient: a new call closes the open one
            self._raw = []
            self._start_call(name)
        elif tag is Tag.ELEM_CLOSE:
            assert self._call is not None
            self._call.close(name)
        elif tag is Tag.INVOKE_CLOSE or tag is Tag.BLOCK_CLOSE:
            if self._call is not None:
                self._end_call(eof=False)
            self._raw = []  # a block with no call: markup, never shown to a client

    def _open_elem(self, key: str) -> bool:
        assert self._call is not None
        return self._call.open(key)

    def _bad_tag(self, text: str, resume: int) -> int:
        """Not a tag after all: NS and ``text`` are given back to the interrupted state."""
        self._state = back = self._back
        self._tag = ""
        if back is State.BLOCK_OPEN:
            self._raw.append(text)
            self._give_back()
        elif back is State.PENDING or back is _VALUE:
            self.fallbacks += 1
            if text:  # a pending element stays pending when only the marker was dropped
                self._state = _VALUE
                assert self._call is not None
                self._call.text(text)
        else:
            self.fallbacks += 1
            self._put(ContentText, "".join(self._ws) + text)
            self._ws = []
        return resume

    # -- calls --------------------------------------------------------------

    def _start_call(self, name: str) -> None:
        shape = self._shapes.get(name)
        if shape is None:
            schema = self._schemas.get(name)
            shape = SILENT if schema is None else shape_of(schema)
            self._shapes[name] = shape
        self._call_name = name
        self._emit(ToolCallStart(self._index, name))
        self._call = CallArgs(shape, self._args)

    def _end_call(self, eof: bool) -> None:
        call = self._call
        assert call is not None
        call.end(eof)
        self._emit(ToolCallEnd(self._index, self._call_name, call.arguments))
        self._index += 1
        self._call = None


_TAGS = {t.value: t for t in Tag}
_FIND_TAG = {
    state: re.compile("|".join(re.escape(t) for t in tags)) for state, tags in TEXT_TAGS.items()
}

_Scanner = Callable[[M3Parser, str, int], int]
_SCANNERS: dict[State, _Scanner] = {
    State.THINK_START: M3Parser._scan_leading,
    State.CONTENT_START: M3Parser._scan_leading,
    State.THINK: M3Parser._scan_text,
    State.CONTENT: M3Parser._scan_text,
    State.QUOTED_THINK: M3Parser._scan_text,
    State.VALUE: M3Parser._scan_value,
    State.BLOCK_OPEN: M3Parser._scan_markup,
    State.BLOCK: M3Parser._scan_markup,
    State.ELEMS: M3Parser._scan_markup,
    State.PENDING: M3Parser._scan_pending,
    State.TAG: M3Parser._scan_tag,
}
M3Parser._scanners = _SCANNERS
