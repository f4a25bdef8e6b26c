"""MiniMax-M3: the parser's states and every transition between them.

Theory of operation
-------------------
MiniMax-M3 writes reasoning in ``<mm:think>…</mm:think>``, then visible text,
with tool calls as blocks whose every tag is prefixed by the marker
``NS = "]<]minimax[>["``; arguments are elements named after the argument,
nested for objects, ``<item>`` children for arrays::

    reasoning…</mm:think>text NS<tool_call>
    NS<invoke name="f">NS<city>Paris NS</city>NS<tags>NS<item>a NS</item>NS</tags>NS</invoke>
    NS</tool_call>

The parser is in exactly one :class:`State`. In the text states (THINK,
CONTENT, QUOTED_THINK, VALUE) it passes text through and looks only for the
tags that state listens for; in the markup states (BLOCK_OPEN, BLOCK, ELEMS,
PENDING) it expects whitespace and tags. Inside a block every tag starts with
NS: the parser reads ``<…>`` after it in the state TAG and then applies the
tag to the state TAG interrupted (``M3Parser._back``), so the rows below are
keyed by that state. ``TRANSITIONS[(state, tag)]`` is the next state; a tag a
state has no row for is malformed there (``Tag.BAD``): given back as the text
it interrupted, or as content between tags.

ELEMS is "between the children of an open container": the call's arguments
object (depth 0) or a nested object or array. PENDING is "an element has
opened and only whitespace followed": its first child makes it a container,
its first other character makes it a scalar (``Tag.TEXT``).
"""

from __future__ import annotations

import enum

__all__ = ["NS", "TEXT_TAGS", "TRANSITIONS", "State", "Tag"]

NS = "]<]minimax[>["


class State(enum.Enum):
    THINK_START = enum.auto()  #: leading whitespace, a redundant <mm:think> may follow
    CONTENT_START = enum.auto()  #: leading whitespace and </mm:think>s; <mm:think> opens reasoning
    THINK = enum.auto()  #: reasoning text
    CONTENT = enum.auto()  #: visible text
    QUOTED_THINK = enum.auto()  #: visible text inside a literal <mm:think>…</mm:think> pair
    BLOCK_OPEN = enum.auto()  #: after NS<tool_call>, no call named yet (tentative)
    BLOCK = enum.auto()  #: between the calls of a block that holds at least one call
    ELEMS = enum.auto()  #: between the children of an open object or array (or the call's)
    PENDING = enum.auto()  #: an element opened, only whitespace so far
    VALUE = enum.auto()  #: the text of an element (a string or a scalar)
    TAG = enum.auto()  #: reading <…> after NS (tentative)
    CLOSED = enum.auto()  #: close() was called


class Tag(enum.Enum):
    THINK_OPEN = "<mm:think>"
    THINK_CLOSE = "</mm:think>"
    BLOCK_OPEN = NS + "<tool_call>"
    MARKER = NS  # the marker alone, outside a block: a leak, removed
    BLOCK_CLOSE = "</tool_call>"  # these follow NS inside a block
    INVOKE_OPEN = "<invoke name=…>"
    INVOKE_CLOSE = "</invoke>"
    ELEM_OPEN = "<key>"
    ELEM_CLOSE = "</key>"
    TEXT = "value text"  # not a tag: an element's first character that is not markup
    BAD = "malformed"  # not a tag: markup that breaks the grammar


S, T = State, Tag

TRANSITIONS: dict[tuple[State, Tag], State] = {
    (S.THINK_START, T.THINK_OPEN): S.THINK,  # redundant opener, dropped
    (S.CONTENT_START, T.THINK_OPEN): S.THINK,
    (S.CONTENT_START, T.THINK_CLOSE): S.CONTENT_START,  # leading closer, dropped
    (S.THINK, T.THINK_CLOSE): S.CONTENT,
    (S.THINK, T.BLOCK_OPEN): S.BLOCK_OPEN,  # a tool call ends reasoning
    (S.THINK, T.MARKER): S.THINK,
    (S.CONTENT, T.BLOCK_OPEN): S.BLOCK_OPEN,
    (S.CONTENT, T.MARKER): S.CONTENT,
    (S.CONTENT, T.THINK_OPEN): S.QUOTED_THINK,  # literal pair in content stays content
    (S.CONTENT, T.THINK_CLOSE): S.CONTENT,  # stray closer, dropped
    (S.QUOTED_THINK, T.THINK_CLOSE): S.CONTENT,
    (S.QUOTED_THINK, T.BLOCK_OPEN): S.BLOCK_OPEN,
    (S.QUOTED_THINK, T.MARKER): S.QUOTED_THINK,
    (S.BLOCK_OPEN, T.INVOKE_OPEN): S.ELEMS,
    (S.BLOCK_OPEN, T.BLOCK_CLOSE): S.CONTENT,  # an empty block: markup only, dropped
    (S.BLOCK_OPEN, T.BLOCK_OPEN): S.BLOCK_OPEN,  # lenient: a repeated opener is markup
    (S.BLOCK, T.INVOKE_OPEN): S.ELEMS,
    (S.BLOCK, T.BLOCK_CLOSE): S.CONTENT,
    (S.BLOCK, T.BLOCK_OPEN): S.BLOCK,  # lenient: a new block with the last one still open
    (S.ELEMS, T.ELEM_OPEN): S.PENDING,
    (S.ELEMS, T.ELEM_CLOSE): S.ELEMS,  # closes the container; its parent is a container
    (S.ELEMS, T.INVOKE_CLOSE): S.BLOCK,
    (S.ELEMS, T.INVOKE_OPEN): S.ELEMS,  # lenient: missing </invoke>
    (S.ELEMS, T.BLOCK_CLOSE): S.CONTENT,  # lenient: missing </invoke>
    (S.PENDING, T.ELEM_OPEN): S.PENDING,  # a first child: the element is a container
    (S.PENDING, T.ELEM_CLOSE): S.ELEMS,  # an empty element
    (S.PENDING, T.TEXT): S.VALUE,
    (S.PENDING, T.INVOKE_CLOSE): S.BLOCK,  # lenient: open elements closed with the call
    (S.PENDING, T.BLOCK_CLOSE): S.CONTENT,
    (S.VALUE, T.ELEM_CLOSE): S.ELEMS,
    (S.VALUE, T.INVOKE_CLOSE): S.BLOCK,
    (S.VALUE, T.BLOCK_CLOSE): S.CONTENT,
}

_LITERAL = (T.THINK_OPEN, T.THINK_CLOSE, T.BLOCK_OPEN, T.MARKER)

# The literal tags each text state listens for, longest first (NS<tool_call>
# before NS alone).
TEXT_TAGS: dict[State, tuple[str, ...]] = {
    state: tuple(
        sorted(
            (t.value for (s, t) in TRANSITIONS if s is state and t in _LITERAL),
            key=len,
            reverse=True,
        )
    )
    for state in (S.THINK_START, S.CONTENT_START, S.THINK, S.CONTENT, S.QUOTED_THINK)
}
