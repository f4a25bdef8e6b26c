"""The parser's states and every transition between them.

Theory of operation
-------------------
MiniMax-M2 writes reasoning, then visible text, with tool calls as XML blocks::

    reasoning…</think>\n\ntext<minimax:tool_call>
    <invoke name="f">
    <parameter name="k">value</parameter>
    </invoke>
    </minimax:tool_call>

The parser is in exactly one :class:`State`. In the text states (THINK,
CONTENT, QUOTED_THINK, VALUE) it passes text through and looks only for the
tags that state listens for; in the markup states it expects whitespace and
tags. A recognised tag is a :class:`Tag`, and ``TRANSITIONS[(state, tag)]``
is the next state. Nothing outside this table decides where a tag leads;
a tag a state does not listen for is ordinary text there.

Two inputs are not literal tags: ``Tag.NAME`` (the name of an ``<invoke>``
or ``<parameter>`` is complete) and ``Tag.BAD`` (markup that breaks the
grammar). ``BAD`` returns to the state the tentative markup interrupted,
which is data (``StreamParser._fallback``), so it has no row here: the
interrupted text is given back as the kind of text it was.
"""

from __future__ import annotations

import enum

__all__ = ["LISTENS", "MAX_TAG", "TRANSITIONS", "State", "Tag"]


class State(enum.Enum):
    THINK_START = enum.auto()  #: leading whitespace, a redundant <think> may follow
    CONTENT_START = enum.auto()  #: leading whitespace, a <think> would open reasoning
    THINK = enum.auto()  #: reasoning text
    CONTENT = enum.auto()  #: visible text
    QUOTED_THINK = enum.auto()  #: visible text inside a literal <think>…</think> pair
    BLOCK_OPEN = enum.auto()  #: after <minimax:tool_call>, no call named yet (tentative)
    BLOCK = enum.auto()  #: between calls of a block that holds at least one call
    INVOKE_NAME = enum.auto()  #: reading the name of <invoke name=…>
    INVOKE = enum.auto()  #: between the parameters of an open call
    PARAM_NAME = enum.auto()  #: reading the name of <parameter name=…>
    VALUE = enum.auto()  #: a parameter's value
    VALUE_CLOSE = enum.auto()  #: after </parameter>, not yet confirmed as the close
    CLOSED = enum.auto()  #: close() was called


class Tag(enum.Enum):
    THINK_OPEN = "<think>"
    THINK_CLOSE = "</think>"
    BLOCK_OPEN = "<minimax:tool_call>"
    BLOCK_CLOSE = "</minimax:tool_call>"
    INVOKE_OPEN = "<invoke name="
    INVOKE_CLOSE = "</invoke>"
    PARAM_OPEN = "<parameter name="
    PARAM_CLOSE = "</parameter>"
    NAME = "name complete"  # not text: the name of an invoke or parameter is complete
    BAD = "malformed"  # not text: markup broke the grammar


S, T = State, Tag

TRANSITIONS: dict[tuple[State, Tag], State] = {
    (S.THINK_START, T.THINK_OPEN): S.THINK,  # redundant opener, dropped
    (S.CONTENT_START, T.THINK_OPEN): S.THINK,
    (S.THINK, T.THINK_CLOSE): S.CONTENT,
    (S.THINK, T.BLOCK_OPEN): S.BLOCK_OPEN,  # a tool call ends reasoning
    (S.CONTENT, T.BLOCK_OPEN): S.BLOCK_OPEN,
    (S.CONTENT, T.THINK_OPEN): S.QUOTED_THINK,  # literal pair in content stays content
    (S.CONTENT, T.THINK_CLOSE): S.CONTENT,  # stray closer, dropped
    (S.QUOTED_THINK, T.THINK_CLOSE): S.CONTENT,
    (S.QUOTED_THINK, T.BLOCK_OPEN): S.BLOCK_OPEN,
    (S.BLOCK_OPEN, T.INVOKE_OPEN): S.INVOKE_NAME,
    (S.BLOCK_OPEN, T.BLOCK_CLOSE): S.CONTENT,  # an empty block: markup only, dropped
    (S.BLOCK, T.INVOKE_OPEN): S.INVOKE_NAME,
    (S.BLOCK, T.BLOCK_CLOSE): S.CONTENT,
    (S.INVOKE_NAME, T.NAME): S.INVOKE,
    (S.INVOKE, T.PARAM_OPEN): S.PARAM_NAME,
    (S.INVOKE, T.INVOKE_CLOSE): S.BLOCK,
    (S.INVOKE, T.INVOKE_OPEN): S.INVOKE_NAME,  # lenient: missing </invoke>
    (S.INVOKE, T.BLOCK_CLOSE): S.CONTENT,  # lenient: missing </invoke>
    (S.PARAM_NAME, T.NAME): S.VALUE,
    (S.VALUE, T.PARAM_CLOSE): S.VALUE_CLOSE,
    (S.VALUE_CLOSE, T.PARAM_OPEN): S.PARAM_NAME,
    (S.VALUE_CLOSE, T.INVOKE_CLOSE): S.BLOCK,
}

# The literal tags each state listens for, longest first so that no tag
# shadows a longer one that starts the same way.
LISTENS: dict[State, tuple[str, ...]] = {
    state: tuple(
        sorted(
            (t.value for (s, t) in TRANSITIONS if s is state and t not in (T.NAME, T.BAD)),
            key=len,
            reverse=True,
        )
    )
    for state in State
}

MAX_TAG = max(len(t.value) for t in Tag if t not in (T.NAME, T.BAD))
