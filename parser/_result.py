"""One-shot parsing of a complete output."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, final

from ._events import ContentText, ThinkText, ToolArgs, ToolCallEnd
from ._stream import StreamParser

__all__ = ["ParseResult", "ToolCall", "parse"]


@final
@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call: ``arguments`` typed by the schema, ``arguments_json`` as streamed."""

    index: int
    name: str
    arguments: dict[str, Any] = field(hash=False)
    arguments_json: str


@final
@dataclass(frozen=True, slots=True)
class ParseResult:
    """Reasoning, visible content (None when empty) and tool calls of one output."""

    reasoning: str | None
    content: str | None
    tool_calls: list[ToolCall] = field(hash=False)


def parse(
    text: str,
    tools: Iterable[Any] | None = None,
    starts_in_think: bool = True,
    grammar: str = "m2",
) -> ParseResult:
    """Parse a whole output with the same rules as :class:`StreamParser`."""
    p = StreamParser(tools, starts_in_think, grammar)
    reasoning: list[str] = []
    content: list[str] = []
    args: dict[int, list[str]] = {}
    calls: list[ToolCall] = []
    for event in p.feed(text) + p.close():
        match event:
            case ThinkText(text=t):
                reasoning.append(t)
            case ContentText(text=t):
                content.append(t)
            case ToolArgs(index=i, fragment=f):
                args.setdefault(i, []).append(f)
            case ToolCallEnd(index=i, name=name, arguments=arguments):
                calls.append(ToolCall(i, name, arguments, "".join(args.pop(i, []))))
    return ParseResult("".join(reasoning) or None, "".join(content) or None, calls)
