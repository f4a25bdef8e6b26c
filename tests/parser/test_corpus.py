"""The fixture corpus: exact expected results and the split-invariance harness.

For every fixture (pytest id = fixture name):
* parse() returns exactly the expected reasoning, content and calls;
* feeding the whole text, one character at a time, at every two-way split point
  and at hypothesis-generated split points gives the same normalised events, and
  parse() agrees with them (DESIGN.md invariant 1);
* every call's ToolArgs fragments join to arguments_json ==
  json.dumps(arguments, ensure_ascii=False); ToolCallStart < ToolArgs < ToolCallEnd;
  indexes count 0, 1, 2, ... (invariant 2).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import parser
from tests.parser.corpus import FIXTURES, RULES, Fixture
from tests.parser.corpus_m3 import M3_FIXTURES, M3_RULES
from tests.parser.helpers import (
    LIGHT,
    assert_calls_equal,
    check_agrees_with_parse,
    check_call_invariants,
    feed_all,
    normalize,
    simple_sequence,
    split_at,
    strict_json_loads,
    summarize_events,
)

MAX_EXHAUSTIVE = 2000  # texts up to this length get every two-way split

ALL_FIXTURES = FIXTURES + M3_FIXTURES
by_name = pytest.mark.parametrize("fx", ALL_FIXTURES, ids=[f.name for f in ALL_FIXTURES])


def kw(fx: Fixture) -> dict:
    return {"tools": fx.tools, "starts_in_think": fx.starts_in_think, "grammar": fx.grammar}


def test_corpus_is_large_and_names_are_unique() -> None:
    names = [f.name for f in ALL_FIXTURES]
    assert len([f for f in FIXTURES if f.grammar == "m2"]) >= 65
    assert len([f for f in M3_FIXTURES if f.grammar == "m3"]) >= 60
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(("fixtures", "rules"), [(FIXTURES, RULES), (M3_FIXTURES, M3_RULES)])
def test_every_rule_names_existing_fixtures(fixtures: list[Fixture], rules: dict) -> None:
    names = {f.name for f in fixtures}
    for rule, named in rules.items():
        assert named, rule
        missing = [n for n in named if n not in names]
        assert not missing, (rule, missing)


def _check_expected(fx: Fixture, reasoning, content, calls) -> None:
    assert reasoning == fx.reasoning
    if fx.strip_content:
        assert content is not None
        assert content.strip() == fx.content
    else:
        assert content == fx.content
    assert_calls_equal(fx.calls, calls)


@by_name
def test_parse_gives_expected_result(fx: Fixture) -> None:
    result = parser.parse(fx.text, **kw(fx))
    _check_expected(
        fx, result.reasoning, result.content, [(c.name, c.arguments) for c in result.tool_calls]
    )
    for i, call in enumerate(result.tool_calls):
        assert call.index == i
        assert call.arguments_json == json.dumps(call.arguments, ensure_ascii=False)
        assert strict_json_loads(call.arguments_json) == call.arguments


@by_name
def test_stream_gives_expected_result(fx: Fixture) -> None:
    events = feed_all([fx.text], **kw(fx))
    reasoning, content, calls = summarize_events(events)
    _check_expected(fx, reasoning, content, [(name, args) for _, name, args, _ in calls])
    check_call_invariants(events)
    if fx.sequence is not None:
        got = simple_sequence(events)
        assert [s[0] for s in got] == [s[0] for s in fx.sequence]
        for exp, act in zip(fx.sequence, got, strict=True):
            if exp[0] == "call":
                assert_calls_equal([exp[1:]], [act[1:]])
            else:
                assert act == exp


@by_name
def test_split_invariance_exhaustive(fx: Fixture) -> None:
    whole = normalize(feed_all([fx.text], **kw(fx)))
    check_agrees_with_parse(whole, fx.text, **kw(fx))

    per_char = feed_all(list(fx.text), **kw(fx))
    assert normalize(per_char) == whole, "one character at a time"
    check_call_invariants(per_char)

    if len(fx.text) <= MAX_EXHAUSTIVE:
        for cut in range(1, len(fx.text)):
            events = feed_all([fx.text[:cut], fx.text[cut:]], **kw(fx))
            assert normalize(events) == whole, f"split at {cut}: {fx.text[:cut][-20:]!r}|"


@by_name
@LIGHT
@given(data=st.data())
def test_split_invariance_random(fx: Fixture, data: st.DataObject) -> None:
    n = len(fx.text)
    points = data.draw(st.lists(st.integers(0, n), max_size=min(40, n + 1)), label="cuts")
    chunks = split_at(fx.text, points)
    events = feed_all(chunks, **kw(fx))
    check_call_invariants(events)
    assert normalize(events) == normalize(feed_all([fx.text], **kw(fx)))
    check_agrees_with_parse(events, fx.text, **kw(fx))


@by_name
def test_split_invariance_with_empty_deltas(fx: Fixture) -> None:
    # Empty deltas between every character must change nothing.
    chunks = [piece for ch in fx.text for piece in ("", ch)] + [""]
    assert normalize(feed_all(chunks, **kw(fx))) == normalize(feed_all([fx.text], **kw(fx)))
