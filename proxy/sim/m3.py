"""The simulated MiniMax-M3: its raw text, its thinking modes, and its template's view of history.

For a MiniMax-M3 model name the simulated backend writes what M3 writes
(``../shared/reference/minimax-m3.md``): reasoning in ``<mm:think>…</mm:think>``,
tool calls as ``]<]minimax[>[<tool_call>`` blocks whose parameters are elements
named after the argument (nested objects, ``<item>`` arrays, strings raw, nulls
dropped), several ``<invoke>``s in one block for parallel calls.

``chat_template_kwargs.thinking_mode`` decides how the output starts:

- ``enabled``: inside reasoning (the prompt ends with ``<mm:think>``);
- ``disabled``: in content (the prompt ends with ``</mm:think>``);
- ``adaptive`` (the default): the model decides: it thinks (``<mm:think>`` first),
  unless the user's message has the word "quick", when it answers at once after a
  bare ``</mm:think>``.

The habits the peers' parsers handle (``habits``: ``auto`` picks them per reply
from a hash of its text, ``all`` always, ``none`` never): a redundant ``<mm:think>``
after an enabled prefill, a redundant ``</mm:think>`` after a disabled one, the bare
closer of adaptive written twice, and reasoning that runs straight into a tool call
with no closer (enabled, with calls: then there is no text before the block).

The history check reads each assistant turn as the M3 template does
(``reasoning_content``, else the content split at ``</mm:think>``) and compares it
with the turn this server generated (recognised by its text and calls): a turn
generated with thinking must come back with that thinking, one generated without
must come back without. :class:`History` remembers the generated turns.

M3 is written raw, as vLLM, SGLang and llama.cpp return it without parsers (modes
``tabby``, ``vllm``, ``sglang``); the parsing modes simulate M2's parsers only.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import OrderedDict
from typing import Any

from .replies import Turn, message_text

__all__ = ["HABITS", "NS", "History", "render", "render_calls", "thinking_mode", "wants_thought"]

NS = "]<]minimax[>["
OPEN, CLOSE = "<mm:think>", "</mm:think>"
HABITS = ("auto", "all", "none")
_MODES = ("enabled", "disabled", "adaptive")


def thinking_mode(body: dict[str, Any]) -> str:
    """The request's ``thinking_mode`` as the template reads it (unset: adaptive)."""
    kwargs = body.get("chat_template_kwargs")
    mode = kwargs.get("thinking_mode") if isinstance(kwargs, dict) else None
    return mode if mode in _MODES else "adaptive"


def wants_thought(mode: str, turn: Turn) -> bool:
    """Whether this reply has reasoning (adaptive: unless the user said "quick")."""
    if mode == "adaptive":
        return "quick" not in turn.said.lower().split()
    return mode == "enabled"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "".join(_element(k, v) for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return "".join(_element("item", v) for v in value if v is not None)
    if isinstance(value, str):
        return value  # raw: quotes, <, & and newlines as they are
    return json.dumps(value)


def _element(key: str, value: Any) -> str:
    return f"{NS}<{key}>{_value(value)}{NS}</{key}>"


def render_calls(calls: list[dict[str, Any]]) -> str:
    """One tool block with an ``<invoke>`` per call, as the M3 template renders them."""
    out = [f"{NS}<tool_call>\n"]
    for call in calls:
        args = "".join(_element(k, v) for k, v in call["arguments"].items() if v is not None)
        out.append(f'{NS}<invoke name="{call["name"]}">{args}{NS}</invoke>\n')
    out.append(f"{NS}</tool_call>")
    return "".join(out)


def _habit(habits: str, turn: Turn, bit: int) -> bool:
    if habits != "auto":
        return habits == "all"
    return bool(zlib.crc32((turn.text + turn.reasoning).encode()) >> bit & 1)


def render(turn: Turn, mode: str, habits: str = "auto") -> tuple[str, Turn]:
    """The raw M3 output for ``turn`` in thinking ``mode``, and the turn as written (its
    reasoning empty when the model did not think, its text empty when the reasoning ran
    into the tool call)."""
    thought = wants_thought(mode, turn)
    reasoning = turn.reasoning.strip() if thought else ""
    text = turn.text
    block = render_calls(turn.calls) if turn.calls else ""
    if mode == "enabled":
        lead = OPEN if _habit(habits, turn, 0) else ""
        if turn.calls and _habit(habits, turn, 1):
            return lead + reasoning + block, Turn(reasoning, "", turn.calls, turn.said)
        raw = lead + reasoning + CLOSE + text + block
    elif mode == "disabled":
        raw = (CLOSE if _habit(habits, turn, 0) else "") + text + block
    elif thought:
        raw = OPEN + reasoning + CLOSE + text + block
    else:
        raw = (CLOSE + "\n" + CLOSE if _habit(habits, turn, 0) else CLOSE) + text + block
    return raw, Turn(reasoning, text, turn.calls, turn.said)


def _key(text: str, calls: list[tuple[str, Any]]) -> str:
    """A turn's identity: its visible text without whitespace (clients and the proxy trim
    it), and its calls' names and arguments in canonical JSON."""
    canon = [[name, json.dumps(args, sort_keys=True, ensure_ascii=False)] for name, args in calls]
    ident = json.dumps(["".join(text.split()), canon], ensure_ascii=False)
    return hashlib.blake2b(ident.encode(), digest_size=16).hexdigest()


def _same(a: str, b: str) -> bool:
    return a.split() == b.split()


def template_view(msg: dict[str, Any]) -> tuple[str, str]:
    """(reasoning, content) of a history assistant message, as the M3 template reads it."""
    content = message_text(msg.get("content"))
    reasoning = msg.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        return reasoning, content
    if CLOSE in content:
        head, _, rest = content.partition(CLOSE)
        return head.split(OPEN, 1)[-1], rest
    return "", content


def _call_args(call: Any) -> tuple[str, Any] | None:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict):
        return None
    args = fn.get("arguments")
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    return str(fn.get("name")), args


class History:
    """The turns this server generated (bounded), and the check of a history against them."""

    def __init__(self, limit: int = 10_000) -> None:
        self._turns: OrderedDict[str, str] = OrderedDict()  # key -> the reasoning written
        self._limit = limit

    def remember(self, turn: Turn, extra_text: str = "") -> None:
        calls = [(c["name"], c["arguments"]) for c in turn.calls]
        self._turns[_key(turn.text + extra_text, calls)] = turn.reasoning
        while len(self._turns) > self._limit:
            self._turns.popitem(last=False)

    def check(self, messages: list[Any]) -> tuple[int, list[int]]:
        """(assistant turns recognised, indexes of those whose thinking did not come back
        as generated)."""
        checked, lost = 0, []
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or msg.get("role") != "assistant":
                continue
            reasoning, content = template_view(msg)
            calls = [c for c in map(_call_args, msg.get("tool_calls") or ()) if c is not None]
            written = self._turns.get(_key(content, calls))
            if written is None:
                continue  # not a turn of ours (a client's own, or cut short)
            checked += 1
            if not _same(reasoning, written):
                lost.append(i)
        return checked, lost
