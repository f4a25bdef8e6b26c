"""Incremental parser for MiniMax-M2 raw output.

Sans-IO and standard-library only: feed it text deltas, get events.

    p = StreamParser(tools=request_tools)
    for delta in deltas:
        for event in p.feed(delta):
            ...
    events = p.close()
"""

from __future__ import annotations

from ._errors import ParserError, ParserUsageError
from ._events import ContentText, Event, ThinkText, ToolArgs, ToolCallEnd, ToolCallStart
from ._machine import StreamParser
from ._result import ParseResult, ToolCall, parse

__all__ = [
    "ContentText",
    "Event",
    "ParseResult",
    "ParserError",
    "ParserUsageError",
    "StreamParser",
    "ThinkText",
    "ToolArgs",
    "ToolCall",
    "ToolCallEnd",
    "ToolCallStart",
    "parse",
]
