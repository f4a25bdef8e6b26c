"""Property tests (hypothesis) for ``grammar="m3"``: the five invariants on M3 text.

(a) arbitrary text built from M3 markup pieces, arbitrary chunking: never raises,
    split-invariant, ``parse()`` agrees, nothing invented, the marker and the
    special tokens never reach any output;
(b) generated transcripts (every thinking mode and its habits, several blocks,
    parallel calls, text around them) with random nested argument values rendered
    the way the M3 template renders them (strings raw, booleans true/false,
    numbers as JSON, nulls dropped, objects as elements, arrays as ``<item>``s)
    parse back to the same reasoning, content and arguments;
(c) under random chunking the ToolArgs of every call join to ``arguments_json``
    and ``json.dumps(arguments, ensure_ascii=False)``;
(d) long outputs fed one character at a time complete with a bounded hold-back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import parser
from parser import ContentText, ThinkText, ToolArgs
from tests.parser.corpus_m3 import NS, B, E, el, inv
from tests.parser.helpers import (
    HEAVY,
    SPECIAL_TOKENS,
    assert_calls_equal,
    check_agrees_with_parse,
    check_call_invariants,
    feed_all,
    is_subsequence,
    joined_text,
    normalize,
    split_at,
    summarize_events,
)
from tests.parser.test_properties import TEXT_ALPHABET, cuts_for

M3 = {"grammar": "m3"}

# --------------------------------------------------------------------------- (a)

TAG_PIECES = [
    "<mm:think>",
    "</mm:think>",
    NS,
    NS + "<tool_call>",
    NS + "<tool_call>\n",
    NS + "</tool_call>",
    NS + '<invoke name="f">',
    NS + "<invoke name='f'>",
    NS + "<invoke name=f>",
    NS + '<invoke name="">',
    NS + "<invoke>",
    NS + "</invoke>",
    NS + "<a>",
    NS + "</a>",
    NS + "<n>",
    NS + "</n>",
    NS + "<o>",
    NS + "</o>",
    NS + "<l>",
    NS + "</l>",
    NS + "<item>",
    NS + "</item>",
    NS + "<x y>",
    NS + "<",
    NS + "</",
    "]<]",
    "]<]minimax",
    "[>[",
    "]~!b[",
    "]~b]",
    "[e~[",
    "<",
    ">",
    "</",
    '"',
    "'",
    "\n",
    " ",
    "5",
    "null",
    "true",
    '{"k": 1}',
    "[1, 2]",
]
ARBITRARY_TOOLS = [
    {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "string"},
                "n": {"type": ["integer", "null"]},
                "o": {"type": "object", "properties": {"a": {"type": "string"}}},
                "l": {"type": "array", "items": {"type": "integer"}},
            },
        },
    }
]

arbitrary_text = st.lists(
    st.one_of(st.sampled_from(TAG_PIECES), st.text(alphabet=TEXT_ALPHABET, max_size=8)),
    max_size=40,
).map("".join)


@HEAVY
@given(text=arbitrary_text, data=st.data(), starts_in_think=st.booleans())
def test_arbitrary_text_never_raises_and_is_split_invariant(
    text: str, data: st.DataObject, starts_in_think: bool
) -> None:
    kw = {"tools": ARBITRARY_TOOLS, "starts_in_think": starts_in_think, **M3}
    chunks = split_at(text, data.draw(cuts_for(text), label="cuts"))
    events = feed_all(chunks, **kw)
    assert normalize(events) == normalize(feed_all([text], **kw))
    check_call_invariants(events)
    check_agrees_with_parse(events, text, **kw)
    assert is_subsequence(joined_text(events), text)
    # The marker and the special tokens never reach any output: removal happens
    # before parsing, so only one formed by removing another could.
    result = parser.parse(text, **kw)
    stripped = text
    for tok in (*SPECIAL_TOKENS, NS):
        stripped = stripped.replace(tok, "")
    if not any(tok in stripped for tok in (*SPECIAL_TOKENS, NS)):
        outputs = [result.reasoning or "", result.content or ""]
        outputs += [c.arguments_json for c in result.tool_calls]
        for out in outputs:
            for tok in (*SPECIAL_TOKENS, NS):
                assert tok not in out


@HEAVY
@given(
    text=st.text(alphabet=st.characters(blacklist_characters="<[]", blacklist_categories=("Cs",))),
    data=st.data(),
    starts_in_think=st.booleans(),
)
def test_text_without_markup_characters_comes_back_exactly(
    text: str, data: st.DataObject, starts_in_think: bool
) -> None:
    chunks = split_at(text, data.draw(cuts_for(text), label="cuts"))
    events = feed_all(chunks, starts_in_think=starts_in_think, **M3)
    assert joined_text(events) == text
    kind = ThinkText if starts_in_think else ContentText
    assert all(type(ev) is kind for ev in events), events


# --------------------------------------------------------------------------- values

# No "~" (special tokens) and never the whole marker; "]<]" and "<", "&", quotes do occur.
STR_ALPHABET = "abcXYZ019 .,;:-_()=+*/\\\"'\n\t<>&!?é中😀[]{}"
KEY = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
strings = (
    st.lists(
        st.one_of(
            st.text(alphabet=STR_ALPHABET, max_size=8),
            st.sampled_from(["]<]", "]<]minimax[>", "</a>", "<item>", "null", "42", "  ", "\n"]),
        ),
        max_size=5,
    )
    .map("".join)
    .filter(lambda s: NS not in s)
)  # the marker is markup wherever it stands


@dataclass(frozen=True)
class Typed:
    """A schema, a value of it, and the value the parser must give back."""

    schema: dict[str, Any] | None  # None: the parameter has no schema
    value: Any
    expect: Any


def _scalars() -> st.SearchStrategy[Typed]:
    return st.one_of(
        strings.map(lambda v: Typed({"type": "string"}, v, v)),
        st.integers(-(10**12), 10**12).map(lambda v: Typed({"type": "integer"}, v, v)),
        st.floats(allow_nan=False, allow_infinity=False).map(
            lambda v: Typed({"type": "number"}, v, v)
        ),
        st.booleans().map(lambda v: Typed({"type": "boolean"}, v, v)),
        st.sampled_from(["red", "blue"]).map(lambda v: Typed({"enum": ["red", "blue"]}, v, v)),
        strings.filter(lambda s: s.strip() != "").map(lambda v: Typed(None, v, v)),
    )


def _object(members: list[tuple[str, Typed]], silent: bool) -> Typed:
    props = {k: t.schema for k, t in members if t.schema is not None}
    schema = None if silent else {"type": "object", "properties": props}
    value = {k: t.value for k, t in members}
    expect = {k: t.expect for k, t in members if t.value is not None}
    return Typed(schema, value, expect)


def _array(elements: list[Typed], item_schema: dict[str, Any] | None, silent: bool) -> Typed:
    schema = None if silent else {"type": "array", "items": item_schema or {}}
    return Typed(schema, [t.value for t in elements], [t.expect for t in elements])


@st.composite
def _containers(draw: st.DrawFn, children: st.SearchStrategy[Typed]) -> Typed:
    silent = draw(st.booleans())
    if draw(st.booleans()):
        members = draw(st.lists(st.tuples(KEY, children), max_size=4, unique_by=lambda m: m[0]))
        if silent:  # with no schema only non-empty text or children say what a value is
            members = [(k, t) for k, t in members if t.schema is None and k != "item"]
            if not members:
                return Typed(None, "x", "x")
        else:
            nullable = draw(st.lists(KEY.map(lambda k: "null_" + k), max_size=1))
            members += [(k, Typed({"type": ["integer", "null"]}, None, None)) for k in nullable]
        return _object(members, silent)
    element = draw(children)
    if silent:
        if element.schema is not None:
            return Typed(None, "x", "x")
        return _array([element, *draw(st.lists(st.just(element), max_size=2))], None, True)
    elements = draw(st.lists(st.just(element), max_size=3))
    return _array(elements, element.schema, False)


def _extend(children: st.SearchStrategy[Typed]) -> st.SearchStrategy[Typed]:
    return _containers(children)


values = st.recursive(_scalars(), _extend, max_leaves=12)


def render(value: Any) -> str:
    """The template's rendering: strings raw, objects as elements, arrays as <item>s."""
    if isinstance(value, dict):
        return "".join(el(k, render(v)) for k, v in value.items() if v is not None)
    if isinstance(value, list):
        return "".join(el("item", render(v)) for v in value if v is not None)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


# --------------------------------------------------------------------------- (b), (c)

SAFE_TEXT = st.text(alphabet="abc xyz.,!?\n\t-_:;()0123456789中文😀'\"", max_size=30)
TOOL_NAME = st.from_regex(r"[a-z][a-z0-9_.\-]{0,12}", fullmatch=True)


@dataclass
class Scenario:
    text: str
    tools: list[dict[str, Any]]
    starts_in_think: bool
    reasoning: str | None
    content: str | None
    calls: list[tuple[str, dict[str, Any]]]


Call = tuple[str, str, dict[str, Any], dict[str, Any] | None]  # name, markup, expected, tool


@st.composite
def _call(draw: st.DrawFn) -> Call:
    name = draw(TOOL_NAME)
    args = draw(st.lists(st.tuples(KEY, values), max_size=4, unique_by=lambda m: m[0]))
    obj = _object(args, silent=False)
    assert obj.schema is not None
    if draw(st.booleans()):
        tool = {"type": "function", "function": {"name": name, "parameters": obj.schema}}
        return name, inv(name, render(obj.value)), obj.expect, tool
    # An unknown tool: only values with no schema come back as written.
    obj = _object([(k, t) for k, t in args if t.schema is None], silent=False)
    return name, inv(name, render(obj.value)), obj.expect, None


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    calls = draw(st.lists(_call(), min_size=1, max_size=3, unique_by=lambda c: c[0]))
    tools = [c[3] for c in calls if c[3] is not None]
    split = draw(st.integers(0, len(calls) - 1))
    between = draw(st.sampled_from(["", "\n", " and "])) if split else ""
    after = draw(st.sampled_from(["", "\nDone."]))
    first = B + "".join(c[1] for c in calls[:split]) + E if split else ""
    blocks = first + between + B + "".join(c[1] for c in calls[split:]) + E + after
    reasoning, content = draw(SAFE_TEXT), draw(SAFE_TEXT)
    mode = draw(
        st.sampled_from(["enabled", "enabled_opener", "enabled_into_call", "disabled", "adaptive"])
    )
    lead = draw(
        st.sampled_from(["</mm:think>", "</mm:think></mm:think>", "</mm:think>\n</mm:think>"])
    )
    think, starts = reasoning, True
    if mode == "enabled":
        text = reasoning + "</mm:think>" + content + blocks
    elif mode == "enabled_opener":
        text = "<mm:think>" + reasoning + "</mm:think>" + content + blocks
    elif mode == "enabled_into_call":
        text, content = reasoning + blocks, ""
    elif mode == "disabled":
        text, think, starts = lead + content + blocks, "", False
    else:
        text, starts = "<mm:think>" + reasoning + "</mm:think>" + content + blocks, False
    return Scenario(
        text=text,
        tools=tools,
        starts_in_think=starts,
        reasoning=think or None,
        content=(content + between + after) or None,
        calls=[(c[0], c[2]) for c in calls],
    )


@HEAVY
@given(sc=scenarios())
def test_rendered_transcripts_parse_back_to_the_same_arguments(sc: Scenario) -> None:
    result = parser.parse(sc.text, sc.tools, sc.starts_in_think, "m3")
    assert (result.reasoning, result.content) == (sc.reasoning, sc.content)
    assert_calls_equal(sc.calls, [(c.name, c.arguments) for c in result.tool_calls])
    for i, call in enumerate(result.tool_calls):
        assert call.index == i
        assert call.arguments_json == json.dumps(call.arguments, ensure_ascii=False)


@HEAVY
@given(sc=scenarios(), data=st.data())
def test_tool_args_fragments_join_to_arguments_json_under_any_chunking(
    sc: Scenario, data: st.DataObject
) -> None:
    kw = {"tools": sc.tools, "starts_in_think": sc.starts_in_think, **M3}
    chunks = split_at(sc.text, data.draw(cuts_for(sc.text), label="cuts"))
    events = feed_all(chunks, **kw)
    check_call_invariants(events)
    reasoning, content, calls = summarize_events(events)
    assert (reasoning, content) == (sc.reasoning, sc.content)
    assert_calls_equal(sc.calls, [(name, args) for _, name, args, _ in calls])
    assert normalize(events) == normalize(feed_all([sc.text], **kw))


@HEAVY
@given(sc=scenarios(), cut=st.floats(0, 1))
def test_truncated_transcripts_close_what_is_open(sc: Scenario, cut: float) -> None:
    # End of output anywhere: calls still come out whole (valid JSON equal to the
    # arguments) and every character fed one at a time gives the same events.
    text = sc.text[: int(len(sc.text) * cut)]
    kw = {"tools": sc.tools, "starts_in_think": sc.starts_in_think, **M3}
    events = feed_all(list(text), **kw)
    check_call_invariants(events)
    assert normalize(events) == normalize(feed_all([text], **kw))
    check_agrees_with_parse(events, text, **kw)


# --------------------------------------------------------------------------- (d)

HOLD_BACK_BOUND = 320  # the longest tag read after the marker: <invoke name="…"> of a long name


def test_long_output_one_char_at_a_time_completes_with_bounded_hold_back() -> None:
    reasoning = "step by step, " * 5000
    content = "plain words " * 3000
    value = "line of code; x[i] < y " * 2000
    head = reasoning + "</mm:think>"
    call = inv("write_files", el("files", el("item", el("path", "a") + el("content", value))))
    text = head + content + B + call + E
    tools = [
        {
            "name": "write_files",
            "parameters": {
                "type": "object",
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "object", "properties": {"content": {"type": "string"}}},
                    }
                },
            },
        }
    ]
    value_start = text.index(value)
    p = parser.StreamParser(tools, grammar="m3")
    events: list[Any] = []
    seen = {"think": 0, "content": 0, "args": 0}
    for pos, ch in enumerate(text, 1):
        for ev in p.feed(ch):
            events.append(ev)
            if isinstance(ev, ThinkText):
                seen["think"] += len(ev.text)
            elif isinstance(ev, ContentText):
                seen["content"] += len(ev.text)
            elif isinstance(ev, ToolArgs):
                seen["args"] += len(ev.fragment)
        if pos <= len(reasoning):
            assert seen["think"] >= pos - HOLD_BACK_BOUND, pos
        elif len(head) < pos <= len(head) + len(content):
            assert seen["content"] >= pos - len(head) - HOLD_BACK_BOUND, pos
        elif value_start < pos <= value_start + len(value):
            assert seen["args"] >= pos - value_start - HOLD_BACK_BOUND, pos
    events.extend(p.close())
    reasoning_out, content_out, calls = summarize_events(events)
    assert (reasoning_out, content_out) == (reasoning, content)
    assert [args for _, _, args, _ in calls] == [{"files": [{"path": "a", "content": value}]}]
    check_call_invariants(events)


ADVERSARIAL = [
    pytest.param(
        B + inv("f", el("v", ("a" + NS + "b") * 3000)) + E,
        lambda r: r.tool_calls[0].arguments == {"v": "ab" * 3000},
        id="many_markers_with_garbage_in_a_value",
    ),
    pytest.param(
        B + inv("f", el("v", (NS + "<x y z>") * 3000)) + E,
        lambda r: r.tool_calls[0].arguments == {"v": "<x y z>" * 3000},
        id="many_malformed_tags_in_a_value",
    ),
    pytest.param(
        "r</mm:think>" + "a ]<]mini b <mm:th c " * 5000,
        lambda r: r.content == "a ]<]mini b <mm:th c " * 5000,
        id="many_partial_tags_in_content",
    ),
    pytest.param(
        B + inv("f", el("o", el("a", "1") * 3000)) + E,
        lambda r: r.tool_calls[0].arguments == {"o": {"a": "1"}},
        id="many_repeated_names_in_an_object",
    ),
    pytest.param(
        B + "".join(inv("f", el("i", str(i))) for i in range(2000)) + E,
        lambda r: [c.arguments["i"] for c in r.tool_calls] == [str(i) for i in range(2000)],
        id="many_small_calls",
    ),
    pytest.param(
        B + inv("f", el("v", "[" + "x" * 400)) + E,
        lambda r: r.tool_calls[0].arguments == {"v": "[" + "x" * 400},
        id="long_text_after_a_bracket",
    ),
]


@pytest.mark.parametrize(("text", "check"), ADVERSARIAL)
def test_adversarial_long_inputs_complete(text: str, check: Any) -> None:
    events = feed_all([text[i : i + 7] for i in range(0, len(text), 7)], **M3)
    assert check(parser.parse(text, grammar="m3"))
    assert normalize(events) == normalize(feed_all([text], **M3))
    check_call_invariants(events)
