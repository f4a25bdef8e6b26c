"""Mixed streams: a backend's reasoning parser splits the reasoning out, the rest stays raw.

vLLM ``--reasoning-parser minimax_m2`` (or SGLang's, or TabbyAPI ``reasoning: true``)
with no tool parser running sends the text before ``</think>`` in ``reasoning``
(``reasoning_content`` on older servers) and the rest, raw tool-call XML included,
in ``content``; ``minimax_m2_append_think`` puts ``<think>`` back in front of
everything in ``content``. However the backend splits it, :class:`proxy.turn.Turn`
must give the events the parser gives for the raw text.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parser
from proxy.trace import Trace, event_json
from proxy.turn import Turn
from proxy.upstream import UpChoice, UpChunk, UpDelta
from tests.parser.helpers import normalize
from tests.test_chunking import RAW, TOOLS

THINK, _, REST = RAW.partition("</think>")


def chunk(**delta: Any) -> UpChunk:
    return UpChunk(choices=[UpChoice(delta=UpDelta(**delta))])


def run(chunks: list[UpChunk], trace: Trace | None = None) -> list[Any]:
    turn = Turn(TOOLS, starts_in_think=True)
    turn.trace = trace
    return normalize(turn.feed(chunks) + turn.close())


def pieces(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points) if b > a]


def raw_events(text: str) -> list[Any]:
    p = parser.StreamParser(TOOLS, starts_in_think=True)
    return normalize(p.feed(text) + p.close())


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(think_cuts=st.lists(st.integers(0, 500), max_size=6), cuts=st.lists(st.integers(0, 900)))
def test_reasoning_field_then_raw_content(
    field: str, think_cuts: list[int], cuts: list[int]
) -> None:
    chunks = [chunk(**{field: p}) for p in pieces(THINK, think_cuts)]
    chunks += [chunk(content=p) for p in pieces(REST, cuts)]
    assert run(chunks) == raw_events(RAW)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, 1200), max_size=8))
def test_append_think_content(cuts: list[int]) -> None:
    chunks = [chunk(content=p) for p in pieces("<think>" + RAW, cuts)]
    assert run(chunks) == raw_events(RAW)


def test_tool_call_left_in_the_reasoning_is_a_call() -> None:
    # The model began its call before </think>: a reasoning parser keeps all of it as reasoning.
    call = REST[REST.index("<minimax:tool_call>") :]
    events = run([chunk(reasoning=THINK), chunk(reasoning=call)])
    assert events == raw_events(THINK + call)
    assert [e.name for e in events if isinstance(e, parser.ToolCallEnd)] == ["edit", "edit"]
    assert not any("invoke" in e.text for e in events if isinstance(e, parser.ThinkText))


def test_reasoning_once_and_no_markup_in_any_text() -> None:
    events = run([chunk(reasoning=THINK), chunk(content=REST)])
    think = "".join(e.text for e in events if isinstance(e, parser.ThinkText))
    content = "".join(e.text for e in events if isinstance(e, parser.ContentText))
    assert think == THINK  # once, whole
    assert "minimax" not in content and "think>" not in content


def test_trace_of_a_mixed_stream_replays() -> None:
    trace = Trace("req_x", "chat", TOOLS, True)
    events = run(
        [chunk(reasoning=THINK[:30]), chunk(reasoning=THINK[30:]), chunk(content=REST)], trace
    )
    p = parser.StreamParser(TOOLS, starts_in_think=trace.starts_in_think)
    replayed = [e for d in trace.deltas for e in p.feed(d)] + p.close()
    assert normalize(replayed) == events
    assert [event_json(e) for e in replayed] == trace.events
    assert "".join(trace.deltas) == THINK + "</think>" + REST


def test_translation_off_keeps_fields_as_they_came() -> None:
    turn = Turn(TOOLS, starts_in_think=True, parse=False)
    events = turn.feed([chunk(reasoning="why"), chunk(content=REST)]) + turn.close()
    assert events == [parser.ThinkText("why"), parser.ContentText(REST)]
