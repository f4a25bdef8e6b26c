"""Property tests (hypothesis) for the parser.

(a) arbitrary text, arbitrary chunking: never raises, split-invariant, nothing
    lost (output text is a subsequence of the input; without ``<``, ``[`` or ``]``
    the text comes back exactly);
(b) generated tool calls rendered exactly like the MiniMax-M2 chat template parse
    back to the same arguments;
(c) under random chunking the ToolArgs fragments of every call join to
    ``arguments_json`` and ``json.dumps(arguments, ensure_ascii=False)``;
(d) long outputs fed one character at a time complete and the hold-back stays
    bounded (no timing assertions).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import parser
from parser import ContentText, ThinkText, ToolArgs
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
    render_block,
    render_call,
    render_value,
    split_at,
    summarize_events,
)

# --------------------------------------------------------------------------- (a)

TAG_PIECES = [
    "<think>",
    "</think>",
    "<minimax:tool_call>",
    "</minimax:tool_call>",
    "<minimax:tool_call>\n",
    '<invoke name="f">',
    "<invoke name='f'>",
    "<invoke name=f>",
    '<invoke name="">',
    "<invoke>",
    "<invoke name=",
    '<invoke name="',
    "</invoke>",
    '<parameter name="a">',
    '<parameter name="n">',
    "<parameter name=n>",
    "<parameter name=",
    "</parameter>",
    "]~!b[",
    "]~b]",
    "[e~[",
    "<",
    "</",
    ">",
    '"',
    "'",
    "=",
    "\n",
    " ",
    "\t",
    "<think",
    "</thi",
    "<minimax:",
    "</minimax:tool_call",
    "]~",
    "[e",
    "]~!",
    "name",
    "invoke",
    "parameter",
    "5",
    "null",
    "true",
    '{"k": 1}',
    "[1, 2]",
    '<parameter name="k">',
    '<parameter name="l">',
    "1e999",
]
TEXT_ALPHABET = "<>/[]~!be \n\tabcxyz\"'=:5中😀"
ARBITRARY_TOOLS = [
    {
        "name": "f",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "string"},
                "n": {"type": ["integer", "null"]},
                "k": {"type": "object"},
                "l": {"type": "array"},
            },
        },
    }
]

arbitrary_text = st.lists(
    st.one_of(st.sampled_from(TAG_PIECES), st.text(alphabet=TEXT_ALPHABET, max_size=8)),
    max_size=40,
).map("".join)


def cuts_for(text: str) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(text)), max_size=30)


@HEAVY
@given(text=arbitrary_text, data=st.data(), starts_in_think=st.booleans())
def test_arbitrary_text_never_raises_and_is_split_invariant(
    text: str, data: st.DataObject, starts_in_think: bool
) -> None:
    kw = {"tools": ARBITRARY_TOOLS, "starts_in_think": starts_in_think}
    chunks = split_at(text, data.draw(cuts_for(text), label="cuts"))
    events = feed_all(chunks, **kw)
    whole = feed_all([text], **kw)
    assert normalize(events) == normalize(whole)
    check_call_invariants(events)
    check_agrees_with_parse(events, text, **kw)
    # Nothing is invented: reasoning and content text, in order, come from the input.
    assert is_subsequence(joined_text(events), text)


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
    events = feed_all(chunks, starts_in_think=starts_in_think)
    assert joined_text(events) == text
    kind = ThinkText if starts_in_think else ContentText
    assert all(type(ev) is kind for ev in events), events
    result = parser.parse(text, starts_in_think=starts_in_think)
    expected = text or None
    if starts_in_think:
        assert (result.reasoning, result.content) == (expected, None)
    else:
        assert (result.reasoning, result.content) == (None, expected)
    assert result.tool_calls == []


@HEAVY
@given(text=arbitrary_text, starts_in_think=st.booleans())
def test_special_tokens_never_reach_the_output(text: str, starts_in_think: bool) -> None:
    # Removal happens before parsing, so no token survives in text or in arguments.
    result = parser.parse(text, tools=ARBITRARY_TOOLS, starts_in_think=starts_in_think)
    stripped = text
    for tok in SPECIAL_TOKENS:
        stripped = stripped.replace(tok, "")
    assume(not any(tok in stripped for tok in SPECIAL_TOKENS))  # removal can form new ones
    outputs = [result.reasoning or "", result.content or ""]
    outputs += [c.arguments_json for c in result.tool_calls]
    for out in outputs:
        for tok in SPECIAL_TOKENS:
            assert tok not in out


# --------------------------------------------------------------------------- (b), (c)

# String values may contain markup-like text. The one rendering that is
# inherently ambiguous is a value holding "</parameter>" followed (after optional
# whitespace) by "<parameter name=" or "</invoke>": the parser must take that as
# the end of the value (DESIGN.md section 4), so such values are not generated.
# Values that would contain a backend special token are not generated either
# (those are removed by design).
AMBIGUOUS = re.compile(r"</parameter>\s*(?:<parameter name=|</invoke>)")

MARKUP_PIECES = [
    "<",
    "</",
    "<b>",
    "</b>",
    "&lt;",
    "&amp;",
    "</parameter>",
    "</parameter> x",
    "</parameter>\n",
    "<parameter>",
    "<div>",
    "\n",
    "  ",
    "\t",
    "<parameter",
    "</invoke",
    "<invoke",
    "'",
    '"',
    "\\",
    "{",
    "}",
    "[",
    "]",
    "null",
    "42",
    "true",
    "<think>",
    "</think>",
    "<minimax:tool_call>",
    "</minimax:tool_call>",
    '<invoke name="x">',
    "]~",
    "\r\n",
    "é",
    "中文",
    "😀",
    "\x1b",
    "\u2028",
]
STR_ALPHABET = "abcXYZ019 .,;:-_()=+*/\\\"'\n\t<>&!?é中😀"

markup_string = st.lists(
    st.one_of(st.sampled_from(MARKUP_PIECES), st.text(alphabet=STR_ALPHABET, max_size=6)),
    max_size=8,
).map("".join)
# A string that no non-string candidate accepts (it starts with "x" after
# optional whitespace), for unions that include string.
union_string = st.tuples(st.sampled_from(["", " ", "\n  "]), markup_string).map(
    lambda t: t[0] + "x" + t[1]
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=STR_ALPHABET, max_size=10),
    st.sampled_from(["</parameter>", "<b>x</b>", "a</parameter> b", "&amp;"]),
)
json_value = st.recursive(
    json_leaf,
    lambda c: (
        st.lists(c, max_size=4) | st.dictionaries(st.text(STR_ALPHABET, max_size=6), c, max_size=4)
    ),
    max_leaves=10,
)
ints = st.integers(-(2**63), 2**63)
floats = st.floats(allow_nan=False, allow_infinity=False)


def as_float(v: Any) -> Any:
    """A number-only schema may give back 5 or 5.0 for "5": compare as a float."""
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


@dataclass(frozen=True)
class Kind:
    name: str
    schema: dict[str, Any] | None  # None: parameter absent from the schema
    values: st.SearchStrategy[Any]
    expect: Any = None  # value -> expected parsed value (default: identity)


KINDS = [
    Kind("string", {"type": "string"}, markup_string),
    Kind("integer", {"type": "integer"}, ints),
    Kind("number", {"type": "number"}, floats | st.integers(-(10**6), 10**6), as_float),
    Kind("boolean", {"type": "boolean"}, st.booleans()),
    Kind("null", {"type": "null"}, st.none()),
    Kind(
        "object",
        {"type": "object"},
        st.dictionaries(st.text(STR_ALPHABET, max_size=6), json_value, max_size=4),
    ),
    Kind("array", {"type": "array", "items": {}}, st.lists(json_value, max_size=4)),
    Kind("int_or_null", {"type": ["integer", "null"]}, st.none() | ints),
    Kind("string_or_int", {"type": ["string", "integer"]}, ints | union_string),
    Kind("int_or_number", {"type": ["integer", "number"]}, ints | floats, lambda v: v),
    Kind(
        "bool_or_object",
        {"type": ["boolean", "object"]},
        st.booleans() | st.dictionaries(st.text(STR_ALPHABET, max_size=4), json_value, max_size=3),
    ),
    Kind("enum_str", {"enum": ["red", "green", "blue"]}, st.sampled_from(["red", "green", "blue"])),
    Kind("enum_int", {"type": "integer", "enum": [1, 2, 3]}, st.sampled_from([1, 2, 3])),
    Kind("enum_mixed", {"enum": [1, "gold", None, True]}, st.sampled_from([1, "gold", None, True])),
    Kind(
        "anyof_num_str",
        {"anyOf": [{"type": "number"}, {"type": "string"}]},
        floats | union_string,
        as_float,
    ),
    Kind(
        "oneof_arr_null",
        {"oneOf": [{"type": "array"}, {"type": "null"}]},
        st.none() | st.lists(json_value, max_size=3),
    ),
    Kind("allof_bool", {"allOf": [{"type": "boolean"}]}, st.booleans()),
    Kind("const_int", {"const": 3}, st.just(3)),
    Kind("untyped", {"description": "no type"}, markup_string),
    Kind("ref", {"$ref": "#/$defs/X"}, markup_string),
    Kind("no_schema", None, markup_string),
]

TOOL_NAME = st.from_regex(r"[a-z][a-z0-9_.\-]{0,20}", fullmatch=True)
PARAM_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
SAFE_TEXT = st.text(alphabet="abc xyz.,!?\n\t-_:;()0123456789中文😀'\"", max_size=40)


def tool_definition(name: str, properties: dict[str, Any], form: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties}
    if form == "openai":
        return {"type": "function", "function": {"name": name, "parameters": schema}}
    if form == "name_parameters":
        return {"name": name, "parameters": schema}
    return {"name": name, "input_schema": schema}


@dataclass
class Scenario:
    text: str
    tools: list[dict[str, Any]]
    starts_in_think: bool
    reasoning: str | None
    content: str | None
    calls: list[tuple[str, dict[str, Any]]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    form = draw(st.sampled_from(["openai", "name_parameters", "name_input_schema"]))
    tool_names = draw(st.lists(TOOL_NAME, min_size=1, max_size=3, unique=True))
    schemas: dict[str, dict[str, Kind]] = {}
    for tn in tool_names:
        pnames = draw(st.lists(PARAM_NAME, max_size=5, unique=True))
        schemas[tn] = {p: draw(st.sampled_from(KINDS)) for p in pnames}
    tools = [
        tool_definition(tn, {p: k.schema for p, k in ps.items() if k.schema is not None}, form)
        for tn, ps in schemas.items()
    ]

    calls: list[tuple[str, list[tuple[str, Any]], dict[str, Any]]] = []
    for _ in range(draw(st.integers(1, 4))):
        tn = draw(st.sampled_from([*tool_names, "unknown_tool"]))
        params = schemas.get(tn, {})
        chosen = draw(st.permutations(list(params)))
        chosen = chosen[: draw(st.integers(0, len(chosen)))]
        rendered: list[tuple[str, Any]] = []
        expected: dict[str, Any] = {}
        for p in chosen:
            kind = params[p]
            v = draw(kind.values, label=f"{tn}.{p}:{kind.name}")
            rendered.append((p, v))
            expected[p] = kind.expect(v) if kind.expect else v
        extras = draw(st.lists(PARAM_NAME.map(lambda s: "extra_" + s), max_size=2, unique=True))
        for p in [e for e in extras if e not in params]:
            v = draw(markup_string, label=f"{tn}.{p}:no_schema")
            rendered.append((p, v))
            expected[p] = v
        for _, v in rendered:
            assume(not AMBIGUOUS.search(render_value(v)))
        calls.append((tn, rendered, expected))

    starts_in_think = draw(st.booleans())
    reasoning = draw(SAFE_TEXT)
    content = draw(SAFE_TEXT)
    layout = draw(st.sampled_from(["after_think", "before_think"]))
    split = draw(st.integers(0, len(calls) - 1))  # calls[split:] go into a second block
    first = render_block([(n, r) for n, r, _ in calls[:split]]) if split else ""
    second = render_block([(n, r) for n, r, _ in calls[split:]])
    between = "\n" if split else ""
    blocks = first + between + second

    if not starts_in_think:
        text = content + blocks
        exp_reasoning, exp_content = None, content + between
    elif layout == "after_think":
        text = reasoning + "</think>\n\n" + content + blocks
        exp_reasoning, exp_content = reasoning, "\n\n" + content + between
    else:  # a tool call that starts before </think>
        text = reasoning + blocks
        exp_reasoning, exp_content = reasoning, between
    assume(not any(tok in text for tok in SPECIAL_TOKENS))
    return Scenario(
        text=text,
        tools=tools,
        starts_in_think=starts_in_think,
        reasoning=exp_reasoning or None,
        content=exp_content or None,
        calls=[(n, e) for n, _, e in calls],
    )


@HEAVY
@given(sc=scenarios())
def test_rendered_tool_calls_parse_back_to_the_same_arguments(sc: Scenario) -> None:
    result = parser.parse(sc.text, tools=sc.tools, starts_in_think=sc.starts_in_think)
    assert result.reasoning == sc.reasoning
    assert result.content == sc.content
    assert_calls_equal(sc.calls, [(c.name, c.arguments) for c in result.tool_calls])
    for i, call in enumerate(result.tool_calls):
        assert call.index == i
        assert call.arguments_json == json.dumps(call.arguments, ensure_ascii=False)


@HEAVY
@given(sc=scenarios(), data=st.data())
def test_tool_args_fragments_join_to_arguments_json_under_any_chunking(
    sc: Scenario, data: st.DataObject
) -> None:
    kw = {"tools": sc.tools, "starts_in_think": sc.starts_in_think}
    chunks = split_at(sc.text, data.draw(cuts_for(sc.text), label="cuts"))
    events = feed_all(chunks, **kw)
    check_call_invariants(events)  # joined ToolArgs == json.dumps(arguments, ensure_ascii=False)
    reasoning, content, calls = summarize_events(events)
    assert (reasoning, content) == (sc.reasoning, sc.content)
    assert_calls_equal(sc.calls, [(name, args) for _, name, args, _ in calls])
    result = parser.parse(sc.text, **kw)
    assert [c.arguments_json for c in result.tool_calls] == [j for _, _, _, j in calls]
    assert normalize(events) == normalize(feed_all([sc.text], **kw))


# --------------------------------------------------------------------------- (d)

HOLD_BACK_BOUND = 64  # a few tags' length; DESIGN.md invariant 4


def test_long_output_one_char_at_a_time_completes_with_bounded_hold_back() -> None:
    reasoning = "step by step, " * 7000  # 98k chars, no markup characters
    content = "plain words " * 4000  # 48k
    value = "line of code; " * 4000  # 56k, a string value
    head = reasoning + "</think>"
    text = head + content + render_call("write_file", {"path": "big.txt", "content": value})
    tools = [
        {
            "name": "write_file",
            "parameters": {"type": "object", "properties": {"content": {"type": "string"}}},
        }
    ]
    value_start = text.index(value)
    p = parser.StreamParser(tools=tools)
    events: list[Any] = []
    think = content_len = args_len = 0
    for pos, ch in enumerate(text, 1):
        new = p.feed(ch)
        events.extend(new)
        for ev in new:
            if isinstance(ev, ThinkText):
                think += len(ev.text)
            elif isinstance(ev, ContentText):
                content_len += len(ev.text)
            elif isinstance(ev, ToolArgs):
                args_len += len(ev.fragment)
        # Bounded hold-back: what was fed is out, except a tag's length or so.
        if pos <= len(reasoning):
            assert think >= pos - HOLD_BACK_BOUND, pos
        elif len(head) < pos <= len(head) + len(content):
            assert content_len >= pos - len(head) - HOLD_BACK_BOUND, pos
        elif value_start < pos <= value_start + len(value):
            # Plain ASCII is its own JSON escape: the value streams as it arrives.
            assert args_len >= pos - value_start - HOLD_BACK_BOUND, pos
    events.extend(p.close())
    reasoning_out, content_out, calls = summarize_events(events)
    assert reasoning_out == reasoning
    assert content_out == content
    assert [(name, args) for _, name, args, _ in calls] == [
        ("write_file", {"path": "big.txt", "content": value})
    ]
    check_call_invariants(events)


ADVERSARIAL = [
    pytest.param(
        render_call("f", {"v": "a</parameter>b" * 5000}),
        lambda r: r.tool_calls[0].arguments == {"v": "a</parameter>b" * 5000},
        id="many_false_close_parameter_in_a_value",
    ),
    pytest.param(
        render_call("f", {"v": "a</parameter>" + " \n" * 5000 + "b"}),
        lambda r: r.tool_calls[0].arguments == {"v": "a</parameter>" + " \n" * 5000 + "b"},
        id="long_whitespace_run_after_close_parameter",
    ),
    pytest.param(
        "r</think>" + "a < b </ c <minimax " * 5000,
        lambda r: r.content == "a < b </ c <minimax " * 5000,
        id="many_lone_less_than_in_content",
    ),
    pytest.param(
        "]~ [e ]~!b " * 8000,
        lambda r: r.reasoning == "]~ [e ]~!b " * 8000,
        id="many_partial_special_tokens_in_reasoning",
    ),
    pytest.param(
        "".join(render_call("f", {"i": str(i)}) for i in range(2000)),
        lambda r: [c.arguments["i"] for c in r.tool_calls] == [str(i) for i in range(2000)],
        id="many_small_calls",
    ),
]


@pytest.mark.parametrize(("text", "check"), ADVERSARIAL)
def test_adversarial_long_inputs_complete(text: str, check: Any) -> None:
    # Not timed: these keep every hold-back path busy on ~100k-char inputs fed
    # in small deltas; they must complete and stay split-invariant.
    events = feed_all([text[i : i + 7] for i in range(0, len(text), 7)])
    assert check(parser.parse(text))
    assert normalize(events) == normalize(feed_all([text]))
    check_call_invariants(events)
