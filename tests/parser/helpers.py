"""Shared helpers for the parser tests.

* ``feed_all`` drives a :class:`parser.StreamParser` over a list of deltas.
* ``normalize`` makes event lists from different chunkings comparable: fragment
  boundaries of text and of ``ToolArgs`` are not part of the contract.
* ``render_*`` render tool calls exactly like the MiniMax-M2 chat template
  (strings verbatim, everything else via ``tojson``).
* ``check_*`` assert the per-call invariants of DESIGN.md section 3.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from hypothesis import HealthCheck, settings

import parser
from parser import ContentText, ThinkText, ToolArgs, ToolCallEnd, ToolCallStart

# Hypothesis budgets. The heavy property tests use HEAVY; per-fixture split
# checks use LIGHT (they run once per corpus fixture).
HEAVY = settings(
    max_examples=250,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
LIGHT = settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

SPECIAL_TOKENS = ("]~!b[", "]~b]", "[e~[")


# --------------------------------------------------------------------------- driving


def feed_all(chunks: Iterable[str], **kw: Any) -> list[Any]:
    """Feed every chunk to a fresh parser, then close it; return all events."""
    p = parser.StreamParser(**kw)
    events: list[Any] = []
    for chunk in chunks:
        events.extend(p.feed(chunk))
    events.extend(p.close())
    return events


def split_at(text: str, points: Iterable[int]) -> list[str]:
    """Cut ``text`` at the given offsets (any order, duplicates allowed)."""
    cuts = sorted({min(max(p, 0), len(text)) for p in points})
    chunks: list[str] = []
    prev = 0
    for cut in cuts:
        chunks.append(text[prev:cut])
        prev = cut
    chunks.append(text[prev:])
    return chunks


# --------------------------------------------------------------------------- normalising


def normalize(events: Iterable[Any]) -> list[Any]:
    """Drop empty text/fragments and merge adjacent text of the same kind and
    adjacent ``ToolArgs`` of the same call."""
    out: list[Any] = []
    for ev in events:
        if isinstance(ev, (ThinkText, ContentText)):
            if not ev.text:
                continue
            if out and type(out[-1]) is type(ev):
                out[-1] = type(ev)(out[-1].text + ev.text)
                continue
        elif isinstance(ev, ToolArgs):
            if not ev.fragment:
                continue
            if out and isinstance(out[-1], ToolArgs) and out[-1].index == ev.index:
                out[-1] = ToolArgs(ev.index, out[-1].fragment + ev.fragment)
                continue
        out.append(ev)
    return out


def summarize_events(events: Iterable[Any]) -> tuple[str | None, str | None, list[tuple]]:
    """(reasoning, content, [(index, name, arguments, arguments_json)]) from events,
    the way parse() is specified to build its result."""
    think: list[str] = []
    content: list[str] = []
    frags: dict[int, list[str]] = {}
    calls: list[tuple] = []
    for ev in events:
        if isinstance(ev, ThinkText):
            think.append(ev.text)
        elif isinstance(ev, ContentText):
            content.append(ev.text)
        elif isinstance(ev, ToolArgs):
            frags.setdefault(ev.index, []).append(ev.fragment)
        elif isinstance(ev, ToolCallEnd):
            calls.append((ev.index, ev.name, ev.arguments, "".join(frags.get(ev.index, []))))
    return ("".join(think) or None, "".join(content) or None, calls)


def summarize_result(result: Any) -> tuple[str | None, str | None, list[tuple]]:
    """The same shape as ``summarize_events`` from a parse() result."""
    return (
        result.reasoning,
        result.content,
        [(c.index, c.name, c.arguments, c.arguments_json) for c in result.tool_calls],
    )


def simple_sequence(events: Iterable[Any]) -> list[tuple]:
    """Normalised events as ("think", s) / ("content", s) / ("call", name, args)."""
    seq: list[tuple] = []
    for ev in normalize(events):
        if isinstance(ev, ThinkText):
            seq.append(("think", ev.text))
        elif isinstance(ev, ContentText):
            seq.append(("content", ev.text))
        elif isinstance(ev, ToolCallEnd):
            seq.append(("call", ev.name, ev.arguments))
    return seq


def joined_text(events: Iterable[Any]) -> str:
    """All reasoning and content text, in event order."""
    return "".join(ev.text for ev in events if isinstance(ev, (ThinkText, ContentText)))


def is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(ch in it for ch in small)


# --------------------------------------------------------------------------- comparing


def same_json(expected: Any, actual: Any) -> bool:
    """Strict JSON-value equality: bools are not numbers, an expected int must be
    an int, an expected float may come back as an equal int (e.g. "30" for a
    number schema), dict key sets and list lengths must match."""
    if expected is None:
        return actual is None
    if isinstance(expected, bool):
        return isinstance(actual, bool) and actual is expected
    if isinstance(expected, int):
        return type(actual) is int and actual == expected
    if isinstance(expected, float):
        return (
            isinstance(actual, (int, float))
            and not isinstance(actual, bool)
            and (actual == expected)
        )
    if isinstance(expected, str):
        return isinstance(actual, str) and actual == expected
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same_json(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(actual) == set(expected)
            and all(same_json(expected[k], actual[k]) for k in expected)
        )
    raise TypeError(f"not a JSON value: {expected!r}")


def assert_calls_equal(
    expected: Sequence[tuple[str, dict]], actual: Sequence[tuple[str, dict]]
) -> None:
    assert [n for n, _ in actual] == [n for n, _ in expected]
    for (name, exp_args), (_, act_args) in zip(expected, actual, strict=True):
        assert same_json(exp_args, act_args), (name, exp_args, act_args)


# --------------------------------------------------------------------------- invariants


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def strict_json_loads(text: str) -> Any:
    """json.loads that, like every non-Python JSON parser, rejects NaN/Infinity."""
    return json.loads(text, parse_constant=_reject_constant)


def check_call_invariants(events: Sequence[Any]) -> None:
    """DESIGN.md invariant 2 plus ordering: for every call, ToolCallStart comes
    first, then its ToolArgs, then ToolCallEnd; calls do not interleave; indexes
    count 0, 1, 2, ...; the joined fragments are json.dumps(arguments,
    ensure_ascii=False)."""
    open_index: int | None = None
    open_name: str | None = None
    next_index = 0
    frags: list[str] = []
    for ev in events:
        if isinstance(ev, ToolCallStart):
            assert open_index is None, f"call {ev.index} starts while {open_index} is open"
            assert ev.index == next_index, (ev.index, next_index)
            assert isinstance(ev.name, str) and ev.name
            open_index, open_name, frags = ev.index, ev.name, []
        elif isinstance(ev, ToolArgs):
            assert open_index is not None and ev.index == open_index, ev
            frags.append(ev.fragment)
        elif isinstance(ev, ToolCallEnd):
            assert open_index is not None and ev.index == open_index, ev
            assert ev.name == open_name
            assert isinstance(ev.arguments, dict)
            joined = "".join(frags)
            assert joined == json.dumps(ev.arguments, ensure_ascii=False), (joined, ev.arguments)
            assert strict_json_loads(joined) == ev.arguments
            open_index, open_name = None, None
            next_index += 1
    assert open_index is None, f"call {open_index} never ended"


def check_agrees_with_parse(events: Sequence[Any], text: str, **kw: Any) -> None:
    """parse() gives the same reasoning, content and calls as the events."""
    result = parser.parse(text, **kw)
    ev_summary = summarize_events(events)
    res_summary = summarize_result(result)
    assert res_summary[:2] == ev_summary[:2]
    assert len(res_summary[2]) == len(ev_summary[2])
    for (i1, n1, a1, j1), (i2, n2, a2, j2) in zip(res_summary[2], ev_summary[2], strict=True):
        assert (i1, n1, j1) == (i2, n2, j2)
        assert json.dumps(a1, ensure_ascii=False) == json.dumps(a2, ensure_ascii=False)
        assert j1 == json.dumps(a1, ensure_ascii=False)
        strict_json_loads(j1)
    for i, call in enumerate(result.tool_calls):
        assert call.index == i


# --------------------------------------------------------------------------- rendering


def render_value(value: Any) -> str:
    """``v | tojson if v is not string else v`` (HF's tojson keeps non-ASCII)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render_invoke(name: str, args: dict[str, Any] | Sequence[tuple[str, Any]]) -> str:
    items = args.items() if isinstance(args, dict) else args
    out = [f'<invoke name="{name}">\n']
    for key, value in items:
        out.append(f'<parameter name="{key}">{render_value(value)}</parameter>\n')
    out.append("</invoke>\n")
    return "".join(out)


def render_block(calls: Sequence[tuple[str, Any]]) -> str:
    """One ``<minimax:tool_call>`` wrapper around all calls of a message."""
    return (
        "<minimax:tool_call>\n"
        + "".join(render_invoke(n, a) for n, a in calls)
        + ("</minimax:tool_call>")
    )


def render_call(name: str, args: dict[str, Any] | Sequence[tuple[str, Any]]) -> str:
    """A block holding one call, as the chat template renders it."""
    return render_block([(name, args)])
