"""One backend response turned into parser events, whichever way the backend sent it.

A raw backend (TabbyAPI without ``tool_format``, vLLM or SGLang without
parsers, llama.cpp) puts MiniMax-M2's text in ``delta.content``; that text
goes through :class:`parser.StreamParser`. Pre-parsed ``tool_calls`` (a
backend's own tool parser) become the same events directly.

A backend's reasoning parser (vLLM ``--reasoning-parser``, SGLang, TabbyAPI
``reasoning: true``) sends the text before ``</think>`` in
``reasoning_content``/``reasoning`` and the rest, raw tool-call XML included,
in ``content``. Both go through the one parser as the model wrote them: the
reasoning in think state, then the ``</think>`` (M3: ``</mm:think>``) the backend took out, then the
content. So each character is scanned once, a tool call the model began
before ``</think>`` (which a reasoning parser leaves in the reasoning) is
still a tool call, and the result is the same as from a raw backend.
"""

from __future__ import annotations

from typing import Any

import msgspec

import parser
from parser import Event, ThinkText, ToolArgs, ToolCallEnd, ToolCallStart

from .grammar import M2, Grammar
from .trace import Trace
from .upstream import UpChunk, UpToolCall, UpUsage

__all__ = ["Turn"]

_decode_args = msgspec.json.decode


class Turn:
    """Feeds backend chunks, yields parser events; remembers finish reason and usage.

    Args:
        tools: the tool definitions the parser types arguments with.
        starts_in_think: the backend's prompt pre-opens ``<think>``.
        parse: False passes ``content`` through untouched (tool translation off).
        grammar: the protocol the backend model writes (:mod:`proxy.grammar`).
    """

    __slots__ = (
        "_calls",
        "_in_backend_think",
        "_parse",
        "_parser",
        "_seen_content",
        "_starts_in_think",
        "_tools",
        "cut",
        "deltas",
        "finish_reason",
        "grammar",
        "logprobs",
        "reasoning_deltas",
        "stop_reason",
        "trace",
        "usage",
    )

    def __init__(
        self,
        tools: list[Any] | None,
        starts_in_think: bool,
        parse: bool = True,
        grammar: Grammar = M2,
    ) -> None:
        self._tools = tools
        self.grammar = grammar
        self._starts_in_think = starts_in_think
        self._parse = parse
        self._parser: parser.StreamParser | None = None
        self._in_backend_think = False  # reasoning came in its own field; no content yet
        self._seen_content = False
        # Pre-parsed calls: backend index -> [our index, name, argument pieces].
        self._calls: dict[int, list[Any]] = {}
        self.finish_reason: str | None = None
        self.cut = False  # the output ended inside a call the model never finished
        self.stop_reason: str | int | None = None
        self.deltas = 0  # backend chunks with text: the token count when usage is missing
        self.reasoning_deltas = 0  # of which reasoning: the reasoning-token estimate
        self.trace: Trace | None = None
        self.usage: UpUsage | None = None
        self.logprobs: list[msgspec.Raw] = []  # of the chunks fed since take_logprobs()

    def feed(self, chunks: list[UpChunk]) -> list[Event]:
        out: list[Event] = []
        for chunk in chunks:
            if chunk.usage is not None:
                self.usage = chunk.usage
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if len(choice.logprobs) > 4:  # not absent, not null: the client asked for them
                self.logprobs.append(choice.logprobs)
            delta = choice.delta
            if delta is not None:
                reasoning = delta.reasoning_content or delta.reasoning
                if reasoning or delta.content:
                    self.deltas += 1
                if reasoning:
                    self.reasoning_deltas += 1
                    out += self._reasoning(reasoning)
                if delta.content:
                    events = self._content(delta.content)
                    if events and type(events[-1]) is ThinkText:
                        self.reasoning_deltas += 1
                    out += events
                if delta.tool_calls:
                    self._tool_calls(delta.tool_calls, out)
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
                self.stop_reason = choice.stop_reason
        return out

    def take_logprobs(self) -> list[msgspec.Raw]:
        taken, self.logprobs = self.logprobs, []
        return taken

    @property
    def prompt_tokens(self) -> int:
        return self.usage.prompt_tokens if self.usage is not None else 0

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens the backend took from its prefix cache (0 when it does not say)."""
        details = self.usage.prompt_tokens_details if self.usage is not None else None
        return (details.cached_tokens or 0) if details is not None else 0

    @property
    def completion_tokens(self) -> int:
        """From the backend's usage; without one, its chunks with text (about a token each)."""
        return self.usage.completion_tokens if self.usage is not None else self.deltas

    @property
    def fallbacks(self) -> int:
        """Malformed tool-call markup the parser gave back as text."""
        return self._parser.fallbacks if self._parser is not None else 0

    def close(self) -> list[Event]:
        """End of output. A call still open here was never finished by the model (cut by
        max_tokens, a stop sequence or end of sequence): it gets no ToolCallEnd, and the
        answer is reported as truncated, so no client runs it as a complete call."""
        out = self._parser.close() if self._parser is not None else []
        if self.trace is not None:
            self.trace.record("", out)
            self.trace.finish_reason = self.finish_reason
        for event in out:
            if type(event) is ToolCallEnd:
                # The parser closes what is open; only </invoke> (seen in feed) ends a call.
                out = [e for e in out if type(e) not in (ToolArgs, ToolCallEnd)]
                self.cut = True
                break
        last = len(self._calls) - 1
        for n, (index, name, pieces) in enumerate(self._calls.values()):
            if n == last and self.finish_reason == "length":
                self.cut = True  # the backend's parser streamed it; the limit cut it
                break
            out += _pre_parsed_end(index, name, pieces)
        self._calls.clear()
        if self.cut:
            self.finish_reason = "length"  # however the backend ended it: truncated
        return out

    def _reasoning(self, text: str) -> list[Event]:
        """Reasoning a backend split out: the parser's input in think state."""
        if not self._parse or self._seen_content:
            # Translation off, or reasoning after the answer began: kept as it came.
            return [ThinkText(text)]
        if self._parser is None:
            self._start(starts_in_think=True)
        self._in_backend_think = True
        return self._feed(text)

    def _content(self, text: str) -> list[Event]:
        if not self._parse:
            return [parser.ContentText(text)]
        self._seen_content = True
        if self._in_backend_think:
            # The backend's reasoning parser ended the reasoning at a </think> it took out.
            self._in_backend_think = False
            text = self.grammar.closer + text
        elif self._parser is None:
            # Content after pre-parsed calls is an answer; otherwise the template's rule.
            self._start(starts_in_think=self._starts_in_think and not self._calls)
        return self._feed(text)

    def _start(self, starts_in_think: bool) -> None:
        self._parser = parser.StreamParser(
            self._tools, starts_in_think=starts_in_think, grammar=self.grammar.name
        )
        if self.trace is not None:
            self.trace.starts_in_think = starts_in_think

    def _feed(self, text: str) -> list[Event]:
        assert self._parser is not None
        events = self._parser.feed(text)
        if self.trace is not None:
            self.trace.record(text, events)
        return events

    def _tool_calls(self, calls: list[UpToolCall], out: list[Event]) -> None:
        for call in calls:
            fn = call.function
            entry = self._calls.get(call.index)
            if entry is None:
                if fn is None or not fn.name:
                    continue  # a call cannot start without its name
                entry = self._calls[call.index] = [len(self._calls), fn.name, []]
                out.append(ToolCallStart(entry[0], fn.name))
            if fn is not None and fn.arguments:
                entry[2].append(fn.arguments)
                out.append(ToolArgs(entry[0], fn.arguments))


def _pre_parsed_end(index: int, name: str, pieces: list[str]) -> list[Event]:
    """The end of a call a backend's own tool parser sent, its arguments decoded."""
    text = "".join(pieces)
    try:
        arguments = _decode_args(text) if text.strip() else {}
    except msgspec.DecodeError:
        arguments = {}
    out: list[Event] = [ToolArgs(index, "{}")] if not text.strip() else []
    out.append(ToolCallEnd(index, name, arguments if isinstance(arguments, dict) else {}))
    return out
