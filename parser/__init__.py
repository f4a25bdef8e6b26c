"""Incremental parser for MiniMax-M2 and MiniMax-M3 raw output.

Sans-IO and standard-library only: feed it text deltas, get events.

    p = StreamParser(tools=request_tools)            # grammar="m3" for MiniMax-M3
    for delta in deltas:
        for event in p.feed(delta):
            ...
    events = p.close()
"""

from __future__ import annotations

from . import _m3_machine, _machine  # noqa: F401  (importing them registers "m3" and "m2")
from ._errors import ParserError, ParserUsageError
from ._events import ContentText, Event, ThinkText, ToolArgs, ToolCallEnd, ToolCallStart
from ._result import ParseResult, ToolCall, parse
from ._stream import StreamParser

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
