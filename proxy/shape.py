"""From parser events to what a client is shown, the same for both APIs.

The parser keeps every character; a client wants tidy fields. This step
trims the whitespace around reasoning and text (the ``\\n\\n`` after
``</think>``, the newline after a tool-call block) without holding back
anything else, renders reasoning as ``<think>…</think>`` inside the text when
thinking passes through, gives tool calls their ids, and drops calls beyond
``parallel_tool_calls: false``. Trimming holds back only trailing whitespace,
so the result is the same for every way the backend split its output.
"""

from __future__ import annotations

import os
from typing import Any

from parser import ContentText, Event, ThinkText, ToolArgs, ToolCallEnd, ToolCallStart

__all__ = [
    "CALL_ARGS",
    "CALL_END",
    "CALL_START",
    "LOGPROBS",
    "REASONING",
    "TEXT",
    "Op",
    "Shaper",
    "new_id",
]

REASONING, TEXT, CALL_START, CALL_ARGS, CALL_END, LOGPROBS = range(6)
# (REASONING, text) (TEXT, text) (CALL_START, index, id, name) (CALL_ARGS, index, fragment)
# (CALL_END, index, id, name, arguments) (LOGPROBS, [raw JSON of each backend chunk's logprobs])
# LOGPROBS ops come from the backend's chunks, not from the parser (see service.pump).
Op = tuple[Any, ...]

THINK_OPEN = "<think>\n"
THINK_CLOSE = "\n</think>\n\n"


def new_id(prefix: str) -> str:
    # 96 random bits, as uuid4's first 24 hex digits were, for a tenth of the cost: an
    # agent's request late in a session gets hundreds of item ids.
    return prefix + os.urandom(12).hex()


class _Trim:
    """Strips leading whitespace and holds trailing whitespace until more text follows."""

    __slots__ = ("held", "started")

    def __init__(self) -> None:
        self.started = False
        self.held = ""

    def take(self, text: str) -> str:
        if not self.started:
            text = text.lstrip()
            if not text:
                return ""
            self.started = True
        body = text.rstrip()
        if not body:
            self.held += text
            return ""
        out = self.held + body if self.held else body
        self.held = text[len(body) :]
        return out

    def reset(self) -> None:
        self.started = False
        self.held = ""


class Shaper:
    """Turns parser events into ops for a writer.

    Args:
        think_as_text: reasoning goes into the text as ``<think>\\n…\\n</think>\\n\\n``.
        keep_thinking: False drops reasoning altogether.
        max_calls: keep at most this many tool calls (None: all).
        id_prefix: ``call_`` (OpenAI) or ``toolu_`` (Anthropic).
        segmented: each run of text is its own block (Anthropic), trimmed on its own.
        shown: the tags around reasoning rendered into the text (M3: ``<mm:think>``).
    """

    def __init__(
        self,
        *,
        think_as_text: bool = False,
        keep_thinking: bool = True,
        max_calls: int | None = None,
        id_prefix: str = "call_",
        segmented: bool = False,
        shown: tuple[str, str] = (THINK_OPEN, THINK_CLOSE),
    ) -> None:
        self._open, self._close = shown
        self._think_as_text = think_as_text
        self._keep_thinking = keep_thinking
        self._max_calls = max_calls
        self._id_prefix = id_prefix
        self._segmented = segmented
        self._reasoning = _Trim()
        self._text = _Trim()
        self._thinking_open = False  # <think> rendered into the text, not yet closed
        self._ids: dict[int, str] = {}
        self.calls = 0

    def feed(self, events: list[Event]) -> list[Op]:
        out: list[Op] = []
        for event in events:
            if type(event) is ThinkText:
                if self._keep_thinking:
                    self._think(event.text, out)
                continue
            if self._thinking_open:
                self._end_thinking(out)
            elif self._segmented:
                self._reasoning.reset()
            if type(event) is ContentText:
                text = self._text.take(event.text)
                if text:
                    out.append((TEXT, text))
                continue
            if self._segmented:
                self._text.reset()
            if type(event) is ToolArgs:
                if event.index in self._ids:
                    out.append((CALL_ARGS, event.index, event.fragment))
            elif type(event) is ToolCallStart:
                if self._max_calls is None or event.index < self._max_calls:
                    call_id = self._ids[event.index] = new_id(self._id_prefix)
                    out.append((CALL_START, event.index, call_id, event.name))
            elif type(event) is ToolCallEnd and event.index in self._ids:
                self.calls += 1
                call_id = self._ids[event.index]
                out.append((CALL_END, event.index, call_id, event.name, event.arguments))
        return out

    def close(self) -> list[Op]:
        out: list[Op] = []
        if self._thinking_open:
            self._end_thinking(out)
        return out

    def _think(self, text: str, out: list[Op]) -> None:
        text = self._reasoning.take(text)
        if not text:
            return
        if not self._think_as_text:
            out.append((REASONING, text))
        elif self._thinking_open:
            out.append((TEXT, text))
        else:
            self._thinking_open = True
            out.append((TEXT, self._open + text))

    def _end_thinking(self, out: list[Op]) -> None:
        self._thinking_open = False
        self._reasoning.reset()
        out.append((TEXT, self._close))
