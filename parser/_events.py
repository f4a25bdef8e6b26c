"""Events produced by :class:`parser.StreamParser`.

Small immutable value classes. Don't subclass these: callers dispatch on
``type(event)`` and tests compare events with ``==``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, final

__all__ = ["ContentText", "Event", "ThinkText", "ToolArgs", "ToolCallEnd", "ToolCallStart"]


@final
@dataclass(frozen=True, slots=True)
class ThinkText:
    """A piece of reasoning text."""

    text: str


@final
@dataclass(frozen=True, slots=True)
class ContentText:
    """A piece of visible text (tool-call markup removed)."""

    text: str


@final
@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """An ``<invoke name=…>`` tag is complete. ``index`` counts calls from 0 per output."""

    index: int
    name: str


@final
@dataclass(frozen=True, slots=True)
class ToolArgs:
    """The next piece of call ``index``'s arguments, as JSON text.

    Joined in order, the fragments of one call form one JSON object equal to
    ``json.dumps(arguments, ensure_ascii=False)`` of its :class:`ToolCallEnd`.
    """

    index: int
    fragment: str


@final
@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    """Call ``index`` is complete; ``arguments`` holds its typed values."""

    index: int
    name: str
    arguments: dict[str, Any] = field(hash=False)


Event = ThinkText | ContentText | ToolCallStart | ToolArgs | ToolCallEnd
