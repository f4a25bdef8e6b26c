# ruff: noqa: E501  (fixture texts are kept on one line where that reads better)
"""A corpus of realistic raw MiniMax-M2 outputs with their exact expected results.

Each fixture gives the raw text the backend streams, the tools of the request,
``starts_in_think``, and what ``parse()`` must return: reasoning, content (``None``
when empty; text is verbatim, never stripped) and the calls as ``(name,
arguments)``. ``sequence`` (optional) pins the order of text and calls.
``strip_content`` marks fixtures where stray text inside a tool-call block becomes
content and only its stripped value is specified.

Tool-call markup is written the way the chat template renders it (see
/work/shared/reference/chat-template.md): ``<minimax:tool_call>\\n``, then per call
``<invoke name="f">\\n``, per parameter ``<parameter name="k">VALUE</parameter>\\n``,
``</invoke>\\n``, and finally ``</minimax:tool_call>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Fixture:
    name: str
    text: str
    reasoning: str | None
    content: str | None
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    starts_in_think: bool = True
    strip_content: bool = False
    sequence: list[tuple] | None = None
    grammar: str = "m2"


# --------------------------------------------------------------------------- tools


def fn(name: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"The {name} tool.",
            "parameters": {"type": "object", "properties": properties},
        },
    }


S = {"type": "string"}
WEATHER = fn(
    "get_weather",
    {
        "location": {"type": "string", "description": "City name"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer"},
    },
)
SEARCH = fn(
    "search_issues",
    {
        "query": S,
        "limit": {"type": "integer"},
        "include_closed": {"type": "boolean"},
        "filters": {"type": "object"},
        "labels": {"type": "array", "items": S},
    },
)
WRITE = fn("write_file", {"path": S, "content": S})
EDIT = fn("str_replace", {"path": S, "old_str": S, "new_str": S})
SHELL = fn("run_command", {"command": S, "timeout": {"type": "number"}})
CONFIG = fn(
    "set_config",
    {
        "ratio": {"type": "number"},
        "count": {"type": "integer"},
        "enabled": {"type": "boolean"},
        "maybe": {"type": ["integer", "null"]},
        "label": {"type": ["string", "null"]},
        "mixed": {"type": ["string", "integer"]},
        "level": {"enum": [1, 2, 3]},
        "mode": {"enum": ["fast", "slow"]},
        "tier": {"enum": [1, "gold", None]},
        "choice": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
        "one": {"oneOf": [{"type": "object"}, {"type": "null"}]},
        "both": {"allOf": [{"type": "number"}]},
        "fixed": {"const": 7},
        "ref": {"$ref": "#/$defs/Thing"},
        "untyped": {"description": "anything at all"},
        "items": {"type": "array"},
        "meta": {"type": "object"},
    },
)
TOOLS = [WEATHER, SEARCH, WRITE, EDIT, SHELL, CONFIG]

# --------------------------------------------------------------------------- markup

B = "<minimax:tool_call>\n"
E = "</minimax:tool_call>"


def inv(name: str, *params: tuple[str, str]) -> str:
    """One invoke as the template renders it; values are given as raw text."""
    body = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in params)
    return f'<invoke name="{name}">\n{body}</invoke>\n'


def block(*invokes: str) -> str:
    return B + "".join(invokes) + E


LONG_CODE = (
    "#!/usr/bin/env python3\n"
    '"""Tiny HTML report generator.\n'
    "\n"
    "Writes <table> rows; values are escaped with html.escape (so & becomes &amp;).\n"
    '"""\n'
    "\n"
    "import html\n"
    "import sys\n"
    "\n"
    "\n"
    "ROW = '<tr><td>{name}</td><td>{score}</td></tr>'\n"
    "CLOSE = '</parameter>'  # not a real tag here, just a string\n"
    "\n"
    "\n"
    "def render(rows):\n"
    "\tout = ['<table>']\n"
    "\tfor name, score in rows:\n"
    "\t\tif score < 0 or score > 100:  \n"
    "\t\t\traise ValueError(f'bad score {score!r}')\n"
    "\t\tout.append(ROW.format(name=html.escape(name), score=score))\n"
    "\tout.append('</table>')\n"
    "\treturn '\\n'.join(out)\n"
    "\n"
    "\n"
    "def main(argv):\n"
    "    rows = []\n"
    "    for arg in argv[1:]:\n"
    "        name, _, score = arg.partition('=')\n"
    "        rows.append((name, int(score)))\n"
    "    if rows and all(s >= 50 for _, s in rows) and len(rows) <= 3:\r\n"
    "        print('all passed &&  no more than three')\n"
    "    print(render(rows))\n"
    "    return 0\n"
    "\n"
    "\n"
    "if __name__ == '__main__':\n"
    "    sys.exit(main(sys.argv))   \n"
    "\n"
)

OLD_STR = "\n    def area(self):\n        return self.w * self.h\n"
NEW_STR = (
    "\n    def area(self) -> float:\n"
    '        """Width times height; 0 when either is < 0."""\n'
    "        if self.w < 0 or self.h < 0:\n"
    "            return 0.0\n"
    "        return self.w * self.h\n"
)

FORMAT_CODE = (
    "TEMPLATE = '<parameter name=\"{key}\">{value}</parameter>'\n"
    "\n"
    "\n"
    "def render(key: str, value: str) -> str:\n"
    '    """Render one <parameter> element; the closing </parameter> ends it."""\n'
    "    return TEMPLATE.format(key=key, value=value)\n"
)

LONG_NAME = "f" * 256

# --------------------------------------------------------------------------- fixtures

FIXTURES: list[Fixture] = [
    # ---- reasoning -----------------------------------------------------------------
    Fixture(
        "no_opening_think_reasoning_then_answer",
        "The user asks what 17 * 23 is.\n17 * 23 = 17 * 20 + 17 * 3 = 340 + 51 = 391.\n"
        "</think>\n\n17 × 23 = **391**.",
        "The user asks what 17 * 23 is.\n17 * 23 = 17 * 20 + 17 * 3 = 340 + 51 = 391.\n",
        "\n\n17 × 23 = **391**.",
    ),
    Fixture("text_is_kept_verbatim_no_stripping", "abc</think>\n\nHello", "abc", "\n\nHello"),
    Fixture("redundant_leading_think_dropped", "<think>\nabc</think>x", "\nabc", "x"),
    Fixture(
        "redundant_leading_think_after_whitespace_dropped",
        "\n\n  <think>\nThe user greets me. Reply warmly.\n</think>\n\nHello! How can I help?",
        "\nThe user greets me. Reply warmly.\n",
        "\n\nHello! How can I help?",
    ),
    Fixture(
        "leading_whitespace_without_think_is_reasoning",
        " \n Let me see.</think>OK",
        " \n Let me see.",
        "OK",
    ),
    Fixture(
        "think_lookalike_at_start_is_reasoning_text",
        "<thinking>not a tag</thinking>\nfine</think>done",
        "<thinking>not a tag</thinking>\nfine",
        "done",
    ),
    Fixture(
        "later_think_tag_inside_reasoning_is_text",
        "<think>I might write <think> in a reply.\n</think>Sure.",
        "I might write <think> in a reply.\n",
        "Sure.",
    ),
    Fixture(
        "reasoning_that_never_closes",
        "Okay, the user wants a haiku about autumn.\nFirst line: five syllables.\n"
        'Maybe "crimson leaves drifting" -- no, that is six',
        "Okay, the user wants a haiku about autumn.\nFirst line: five syllables.\n"
        'Maybe "crimson leaves drifting" -- no, that is six',
        None,
    ),
    Fixture(
        "reasoning_then_empty_content", "Nothing more to say.</think>", "Nothing more to say.", None
    ),
    Fixture("empty_output", "", None, None),
    Fixture("only_close_think", "</think>", None, None),
    Fixture("only_redundant_think", "<think>", None, None),
    # ---- starts_in_think=False ------------------------------------------------------
    Fixture(
        "starts_in_think_false_plain_content",
        "Sure — here is a short answer.\nIt has two lines.",
        None,
        "Sure — here is a short answer.\nIt has two lines.",
        starts_in_think=False,
    ),
    Fixture(
        "starts_in_think_false_leading_think_opens_reasoning",
        "<think>\nPlan: answer briefly.\n</think>\n\nParis is the capital of France.",
        "\nPlan: answer briefly.\n",
        "\n\nParis is the capital of France.",
        starts_in_think=False,
    ),
    Fixture(
        "starts_in_think_false_whitespace_before_think_dropped",
        "\n \t<think>r</think>c",
        "r",
        "c",
        starts_in_think=False,
    ),
    Fixture(
        "starts_in_think_false_leading_whitespace_kept_as_content",
        "\n  Hello.",
        None,
        "\n  Hello.",
        starts_in_think=False,
    ),
    Fixture(
        "starts_in_think_false_think_pair_later_is_content",
        "Models like me wrap reasoning in <think>...</think> tags.",
        None,
        "Models like me wrap reasoning in <think>...</think> tags.",
        starts_in_think=False,
    ),
    Fixture(
        "starts_in_think_false_stray_close_think_dropped",
        "Hello</think> world",
        None,
        "Hello world",
        starts_in_think=False,
    ),
    Fixture(
        "starts_in_think_false_tool_call",
        "I'll check.\n" + block(inv("get_weather", ("location", "Madrid"), ("days", "2"))),
        None,
        "I'll check.\n",
        [("get_weather", {"location": "Madrid", "days": 2})],
        tools=TOOLS,
        starts_in_think=False,
    ),
    # ---- </think> and <think> in content -------------------------------------------
    Fixture(
        "stray_close_think_in_content_dropped",
        "Quick check.</think>The answer is 4.</think>\nThat's all.",
        "Quick check.",
        "The answer is 4.\nThat's all.",
    ),
    Fixture(
        "think_pair_in_content_stays_content",
        "Explain tags.</think>Reasoning goes between <think> and </think>, like <think>this</think>.",
        "Explain tags.",
        "Reasoning goes between <think> and </think>, like <think>this</think>.",
    ),
    Fixture(
        "think_pair_then_stray_close_think_in_content",
        "r</think>a <think>b</think> c</think> d",
        "r",
        "a <think>b</think> c d",
    ),
    Fixture(
        "unmatched_open_think_in_content_kept",
        "r</think>I will not close <think> this one.",
        "r",
        "I will not close <think> this one.",
    ),
    # ---- tool calls ---------------------------------------------------------------------
    Fixture(
        "tool_call_after_reasoning",
        "The user wants the current weather in Tokyo. I should call get_weather.\n</think>\n\n"
        + block(inv("get_weather", ("location", "Tokyo"), ("unit", "celsius"))),
        "The user wants the current weather in Tokyo. I should call get_weather.\n",
        "\n\n",
        [("get_weather", {"location": "Tokyo", "unit": "celsius"})],
        tools=TOOLS,
    ),
    Fixture(
        "tool_call_before_close_think",
        "I need the weather in Paris first.\n\n" + block(inv("get_weather", ("location", "Paris"))),
        "I need the weather in Paris first.\n\n",
        None,
        [("get_weather", {"location": "Paris"})],
        tools=TOOLS,
    ),
    Fixture(
        "tool_call_before_close_think_then_stray_close_think",
        "Check Oslo.\n" + block(inv("get_weather", ("location", "Oslo"))) + "\n</think>\n\nDone.",
        "Check Oslo.\n",
        "\n\n\nDone.",
        [("get_weather", {"location": "Oslo"})],
        tools=TOOLS,
        sequence=[
            ("think", "Check Oslo.\n"),
            ("call", "get_weather", {"location": "Oslo"}),
            ("content", "\n\n\nDone."),
        ],
    ),
    Fixture(
        "tool_call_only_output",
        block(inv("get_weather", ("location", "Berlin"), ("days", "3"))),
        None,
        None,
        [("get_weather", {"location": "Berlin", "days": 3})],
        tools=TOOLS,
    ),
    Fixture(
        "tool_call_only_output_starts_in_think_false",
        block(inv("get_weather", ("location", "Berlin"), ("days", "3"))),
        None,
        None,
        [("get_weather", {"location": "Berlin", "days": 3})],
        tools=TOOLS,
        starts_in_think=False,
    ),
    Fixture(
        "parallel_invokes_in_one_block",
        "Two cities, two calls.\n</think>\n\n"
        + block(
            inv("get_weather", ("location", "Tokyo")),
            inv("get_weather", ("location", "Osaka"), ("unit", "fahrenheit")),
        ),
        "Two cities, two calls.\n",
        "\n\n",
        [
            ("get_weather", {"location": "Tokyo"}),
            ("get_weather", {"location": "Osaka", "unit": "fahrenheit"}),
        ],
        tools=TOOLS,
    ),
    Fixture(
        "three_parallel_invokes_different_tools",
        "Search, run the tests and write notes.</think>"
        + block(
            inv("search_issues", ("query", "flaky test"), ("limit", "5")),
            inv("run_command", ("command", "pytest -x -q"), ("timeout", "120")),
            inv("write_file", ("path", "NOTES.md"), ("content", "# Notes\n\n- flaky test\n")),
        ),
        "Search, run the tests and write notes.",
        None,
        [
            ("search_issues", {"query": "flaky test", "limit": 5}),
            ("run_command", {"command": "pytest -x -q", "timeout": 120.0}),
            ("write_file", {"path": "NOTES.md", "content": "# Notes\n\n- flaky test\n"}),
        ],
        tools=TOOLS,
    ),
    Fixture(
        "two_blocks_indexes_keep_counting",
        "r</think>\n\n"
        + block(inv("get_weather", ("location", "Rome")))
        + "\nNow the second lookup.\n"
        + block(inv("get_weather", ("location", "Milan"))),
        "r",
        "\n\n\nNow the second lookup.\n",
        [("get_weather", {"location": "Rome"}), ("get_weather", {"location": "Milan"})],
        tools=TOOLS,
        sequence=[
            ("think", "r"),
            ("content", "\n\n"),
            ("call", "get_weather", {"location": "Rome"}),
            ("content", "\nNow the second lookup.\n"),
            ("call", "get_weather", {"location": "Milan"}),
        ],
    ),
    Fixture(
        "text_before_block_is_content",
        "r</think>Let me look that up.\n" + block(inv("search_issues", ("query", "login"))),
        "r",
        "Let me look that up.\n",
        [("search_issues", {"query": "login"})],
        tools=TOOLS,
    ),
    Fixture(
        "text_after_block_is_content",
        block(inv("search_issues", ("query", "login"))) + "\nI've started the lookup.",
        None,
        "\nI've started the lookup.",
        [("search_issues", {"query": "login"})],
        tools=TOOLS,
    ),
    Fixture(
        "text_before_between_and_after_blocks",
        "plan</think>First: "
        + block(inv("run_command", ("command", "ls")))
        + " then: "
        + block(inv("run_command", ("command", "pwd")))
        + " done.",
        "plan",
        "First:  then:  done.",
        [("run_command", {"command": "ls"}), ("run_command", {"command": "pwd"})],
        tools=TOOLS,
        sequence=[
            ("think", "plan"),
            ("content", "First: "),
            ("call", "run_command", {"command": "ls"}),
            ("content", " then: "),
            ("call", "run_command", {"command": "pwd"}),
            ("content", " done."),
        ],
    ),
    Fixture(
        "invoke_without_parameters",
        "List them.</think>" + block('<invoke name="list_files">\n</invoke>\n'),
        "List them.",
        None,
        [("list_files", {})],
        tools=TOOLS,
    ),
    Fixture(
        "tool_names_with_dots_and_dashes",
        block(
            inv("mcp__github__create-issue", ("title", "Bug")),
            inv("files.read", ("path", "a.txt")),
        ),
        None,
        None,
        [("mcp__github__create-issue", {"title": "Bug"}), ("files.read", {"path": "a.txt"})],
        tools=TOOLS,
    ),
    Fixture(
        "invoke_name_at_256_chars_is_a_call",
        block(inv(LONG_NAME, ("x", "1"))),
        None,
        None,
        [(LONG_NAME, {"x": "1"})],
    ),
    # ---- accepted tag forms ----------------------------------------------------------
    Fixture(
        "single_quoted_unquoted_and_spaced_names",
        B
        + "<invoke name='get_weather'>\n<parameter name=location>Rome</parameter>\n"
        + "<parameter name='unit' >celsius</parameter>\n</invoke>\n"
        + '<invoke name=get_weather >\n<parameter name="days"  >4</parameter>\n</invoke>\n'
        + E,
        None,
        None,
        [("get_weather", {"location": "Rome", "unit": "celsius"}), ("get_weather", {"days": 4})],
        tools=TOOLS,
    ),
    Fixture(
        "compact_block_without_newlines",
        '<minimax:tool_call><invoke name="get_weather"><parameter name="location">Lima'
        '</parameter><parameter name="days">2</parameter></invoke></minimax:tool_call>',
        None,
        None,
        [("get_weather", {"location": "Lima", "days": 2})],
        tools=TOOLS,
    ),
    Fixture(
        "whitespace_between_tags_is_markup",
        "r</think>"
        + '<minimax:tool_call>\n\n  <invoke name="get_weather">\n\t<parameter name="location">'
        + "Quito</parameter>\n    \n  </invoke>\n\n</minimax:tool_call>",
        "r",
        None,
        [("get_weather", {"location": "Quito"})],
        tools=TOOLS,
    ),
    # ---- values: strings --------------------------------------------------------------
    Fixture(
        "value_with_less_than_and_ampersand",
        block(inv("run_command", ("command", "test $n -lt 3 && echo '<3' || printf 'a < b > c'"))),
        None,
        None,
        [("run_command", {"command": "test $n -lt 3 && echo '<3' || printf 'a < b > c'"})],
        tools=TOOLS,
    ),
    Fixture(
        "value_with_closing_tag_prefix",
        block(
            inv(
                "write_file",
                ("path", "t.txt"),
                ("content", "Closing tags start with </ and end with >. e.g. </div>"),
            )
        ),
        None,
        None,
        [
            (
                "write_file",
                {
                    "path": "t.txt",
                    "content": "Closing tags start with </ and end with >. e.g. </div>",
                },
            )
        ],
        tools=TOOLS,
    ),
    Fixture(
        "value_with_html_markup",
        block(
            inv(
                "write_file",
                ("path", "card.html"),
                ("content", '<div class="card">\n  <p>Hello, <b>world</b>!</p>\n  <br/>\n</div>\n'),
            )
        ),
        None,
        None,
        [
            (
                "write_file",
                {
                    "path": "card.html",
                    "content": '<div class="card">\n  <p>Hello, <b>world</b>!</p>\n  <br/>\n</div>\n',
                },
            )
        ],
        tools=TOOLS,
    ),
    Fixture(
        "value_ending_with_less_than",
        block(inv("run_command", ("command", "cat <"))),
        None,
        None,
        [("run_command", {"command": "cat <"})],
        tools=TOOLS,
    ),
    Fixture(
        "literal_close_parameter_not_followed_by_tag_is_value",
        block(
            inv(
                "write_file",
                ("path", "doc.md"),
                ("content", "The closing tag is </parameter> and it ends a value."),
            )
        ),
        None,
        None,
        [
            (
                "write_file",
                {
                    "path": "doc.md",
                    "content": "The closing tag is </parameter> and it ends a value.",
                },
            )
        ],
        tools=TOOLS,
    ),
    Fixture(
        "literal_close_parameter_then_newline_and_text_is_value",
        block(inv("write_file", ("content", "line one</parameter>\nline two"), ("path", "x"))),
        None,
        None,
        [("write_file", {"content": "line one</parameter>\nline two", "path": "x"})],
        tools=TOOLS,
    ),
    Fixture(
        "literal_close_parameter_then_other_tag_is_value",
        block(
            inv(
                "write_file",
                (
                    "content",
                    "a</parameter><b>bold</b>\n</parameter> <parameters>\n</parameter>\n<parameter>y",
                ),
            )
        ),
        None,
        None,
        [
            (
                "write_file",
                {
                    "content": "a</parameter><b>bold</b>\n</parameter> <parameters>\n</parameter>\n<parameter>y"
                },
            )
        ],
        tools=TOOLS,
    ),
    Fixture(
        "code_talking_about_the_format",
        "Write the helper.</think>"
        + block(inv("write_file", ("path", "fmt.py"), ("content", FORMAT_CODE))),
        "Write the helper.",
        None,
        [("write_file", {"path": "fmt.py", "content": FORMAT_CODE})],
        tools=TOOLS,
    ),
    Fixture(
        "value_mentioning_block_and_invoke_open_tags",
        block(
            inv(
                "write_file",
                ("path", "HOWTO.md"),
                (
                    "content",
                    'To call a tool write <minimax:tool_call> and then <invoke name="tool">.',
                ),
            )
        ),
        None,
        None,
        [
            (
                "write_file",
                {
                    "path": "HOWTO.md",
                    "content": 'To call a tool write <minimax:tool_call> and then <invoke name="tool">.',
                },
            )
        ],
        tools=TOOLS,
    ),
    Fixture(
        "value_mentioning_invoke_and_block_close_tags",
        block(
            inv(
                "write_file",
                ("content", "Close with </invoke> and then </minimax:tool_call>, in that order."),
                ("path", "HOWTO.md"),
            )
        ),
        None,
        None,
        [
            (
                "write_file",
                {
                    "content": "Close with </invoke> and then </minimax:tool_call>, in that order.",
                    "path": "HOWTO.md",
                },
            )
        ],
        tools=TOOLS,
    ),
    Fixture(
        "string_values_verbatim_whitespace",
        "Fix area().</think>\n"
        + block(
            inv("str_replace", ("path", "shapes.py"), ("old_str", OLD_STR), ("new_str", NEW_STR))
        ),
        "Fix area().",
        "\n",
        [("str_replace", {"path": "shapes.py", "old_str": OLD_STR, "new_str": NEW_STR})],
        tools=TOOLS,
    ),
    Fixture(
        "string_value_with_surrounding_whitespace_and_newlines",
        block(inv("get_weather", ("location", "\n  New York \n"))),
        None,
        None,
        [("get_weather", {"location": "\n  New York \n"})],
        tools=TOOLS,
    ),
    Fixture(
        "long_code_value_exact_whitespace",
        "I'll write the report script.\n</think>\n\n"
        + block(inv("write_file", ("path", "report.py"), ("content", LONG_CODE))),
        "I'll write the report script.\n",
        "\n\n",
        [("write_file", {"path": "report.py", "content": LONG_CODE})],
        tools=TOOLS,
    ),
    Fixture(
        "html_entities_not_decoded",
        block(inv("write_file", ("content", "Tom &amp; Jerry &lt;3 &#x27;quoted&#x27; &quot;"))),
        None,
        None,
        [("write_file", {"content": "Tom &amp; Jerry &lt;3 &#x27;quoted&#x27; &quot;"})],
        tools=TOOLS,
    ),
    Fixture(
        "json_escaping_of_quotes_backslashes_and_controls",
        block(
            inv(
                "run_command",
                (
                    "command",
                    'printf "a\\tb\\n" > C:\\tmp\\out.txt;\techo \x1b[31mred\x1b[0m\u2028end',
                ),
            )
        ),
        None,
        None,
        [
            (
                "run_command",
                {
                    "command": 'printf "a\\tb\\n" > C:\\tmp\\out.txt;\techo \x1b[31mred\x1b[0m\u2028end'
                },
            )
        ],
        tools=TOOLS,
    ),
    Fixture(
        "cjk_and_emoji",
        "用户想知道东京的天气。我应该调用工具。🌤️\n</think>\n\n好的，我来查一下。🙂\n"
        + block(inv("get_weather", ("location", "東京都 🗼"), ("城市", "東京"))),
        "用户想知道东京的天气。我应该调用工具。🌤️\n",
        "\n\n好的，我来查一下。🙂\n",
        [("get_weather", {"location": "東京都 🗼", "城市": "東京"})],
        tools=TOOLS,
    ),
    Fixture(
        "empty_values",
        block(inv("search_issues", ("query", ""), ("limit", ""), ("include_closed", "  "))),
        None,
        None,
        [("search_issues", {"query": "", "limit": "", "include_closed": "  "})],
        tools=TOOLS,
    ),
    # ---- values: typing ---------------------------------------------------------------
    Fixture(
        "json_object_and_array_values",
        "Filter open bugs.</think>"
        + block(
            inv(
                "search_issues",
                ("query", "crash on start"),
                ("filters", '{"state": "open", "assignee": null, "milestone": {"id": 7}}'),
                ("labels", '["bug", "p1"]'),
            )
        ),
        "Filter open bugs.",
        None,
        [
            (
                "search_issues",
                {
                    "query": "crash on start",
                    "filters": {"state": "open", "assignee": None, "milestone": {"id": 7}},
                    "labels": ["bug", "p1"],
                },
            )
        ],
        tools=TOOLS,
    ),
    Fixture(
        "json_object_value_multiline_with_markup_inside",
        block(
            inv(
                "search_issues",
                ("filters", '{\n  "html": "<b>hi</b>",\n  "note": "</parameter> inside JSON"\n}'),
            )
        ),
        None,
        None,
        [("search_issues", {"filters": {"html": "<b>hi</b>", "note": "</parameter> inside JSON"}})],
        tools=TOOLS,
    ),
    Fixture(
        "json_array_of_objects_multiline",
        block(
            inv(
                "set_config",
                ("items", '[\n  {"id": 1, "tags": ["a"]},\n  {"id": 2, "tags": []}\n]'),
            )
        ),
        None,
        None,
        [("set_config", {"items": [{"id": 1, "tags": ["a"]}, {"id": 2, "tags": []}]})],
        tools=TOOLS,
    ),
    Fixture(
        "python_literal_dict_and_list_accepted",
        block(
            inv(
                "set_config",
                ("meta", "{'retries': 3, 'verbose': True, 'name': None}"),
                ("items", "[1, 'x', True, None]"),
            )
        ),
        None,
        None,
        [
            (
                "set_config",
                {
                    "meta": {"retries": 3, "verbose": True, "name": None},
                    "items": [1, "x", True, None],
                },
            )
        ],
        tools=TOOLS,
    ),
    Fixture(
        "integer_and_number_values",
        block(inv("set_config", ("count", "42"), ("ratio", "0.75"), ("both", "-1.5e-3"))),
        None,
        None,
        [("set_config", {"count": 42, "ratio": 0.75, "both": -0.0015})],
        tools=TOOLS,
    ),
    Fixture(
        "number_schema_accepts_integer_text",
        block(inv("run_command", ("command", "sleep 1"), ("timeout", "30"))),
        None,
        None,
        [("run_command", {"command": "sleep 1", "timeout": 30.0})],
        tools=TOOLS,
    ),
    Fixture(
        "integral_float_for_integer_schema_becomes_int",
        block(inv("set_config", ("count", "5.0"), ("maybe", "1e3"))),
        None,
        None,
        [("set_config", {"count": 5, "maybe": 1000})],
        tools=TOOLS,
    ),
    Fixture(
        "non_integral_float_for_integer_schema_stays_string",
        block(inv("set_config", ("count", "2.5"))),
        None,
        None,
        [("set_config", {"count": "2.5"})],
        tools=TOOLS,
    ),
    Fixture(
        "boolean_values_case_insensitive",
        block(
            inv("search_issues", ("include_closed", "True")),
            inv("set_config", ("enabled", "FALSE")),
            inv("set_config", ("enabled", "true")),
        ),
        None,
        None,
        [
            ("search_issues", {"include_closed": True}),
            ("set_config", {"enabled": False}),
            ("set_config", {"enabled": True}),
        ],
        tools=TOOLS,
    ),
    Fixture(
        "invalid_boolean_text_stays_string",
        block(inv("set_config", ("enabled", "yes"))),
        None,
        None,
        [("set_config", {"enabled": "yes"})],
        tools=TOOLS,
    ),
    Fixture(
        "null_when_schema_allows_null",
        block(inv("set_config", ("maybe", "null"), ("label", "null"))),
        None,
        None,
        [("set_config", {"maybe": None, "label": None})],
        tools=TOOLS,
    ),
    Fixture(
        "null_not_allowed_stays_string",
        block(inv("get_weather", ("location", "null"), ("days", "null"))),
        None,
        None,
        [("get_weather", {"location": "null", "days": "null"})],
        tools=TOOLS,
    ),
    Fixture(
        "null_only_for_the_literal_null",
        block(inv("set_config", ("maybe", "None"), ("label", "NULL"))),
        None,
        None,
        [("set_config", {"maybe": "None", "label": "NULL"})],
        tools=TOOLS,
    ),
    Fixture(
        "union_type_list_integer_before_string",
        block(inv("set_config", ("mixed", "42")), inv("set_config", ("mixed", "forty-two"))),
        None,
        None,
        [("set_config", {"mixed": 42}), ("set_config", {"mixed": "forty-two"})],
        tools=TOOLS,
    ),
    Fixture(
        "enum_values_typed_by_enum_types",
        block(
            inv("set_config", ("level", "2"), ("mode", "fast")),
            inv("get_weather", ("unit", "celsius")),
        ),
        None,
        None,
        [("set_config", {"level": 2, "mode": "fast"}), ("get_weather", {"unit": "celsius"})],
        tools=TOOLS,
    ),
    Fixture(
        "enum_with_mixed_value_types",
        block(
            inv("set_config", ("tier", "gold")),
            inv("set_config", ("tier", "1")),
            inv("set_config", ("tier", "null")),
        ),
        None,
        None,
        [
            ("set_config", {"tier": "gold"}),
            ("set_config", {"tier": 1}),
            ("set_config", {"tier": None}),
        ],
        tools=TOOLS,
    ),
    Fixture(
        "anyof_oneof_allof_unions",
        block(
            inv("set_config", ("choice", "true"), ("one", '{"k": [1, 2]}'), ("both", "2.5")),
            inv("set_config", ("choice", "12"), ("one", "null")),
        ),
        None,
        None,
        [
            ("set_config", {"choice": True, "one": {"k": [1, 2]}, "both": 2.5}),
            ("set_config", {"choice": 12, "one": None}),
        ],
        tools=TOOLS,
    ),
    Fixture(
        "const_schema_typed_by_const_value",
        block(inv("set_config", ("fixed", "7"))),
        None,
        None,
        [("set_config", {"fixed": 7})],
        tools=TOOLS,
    ),
    Fixture(
        "ref_schema_not_followed_is_string",
        block(inv("set_config", ("ref", "5"))),
        None,
        None,
        [("set_config", {"ref": "5"})],
        tools=TOOLS,
    ),
    Fixture(
        "schema_without_type_info_is_string",
        block(inv("set_config", ("untyped", "123"))),
        None,
        None,
        [("set_config", {"untyped": "123"})],
        tools=TOOLS,
    ),
    Fixture(
        "parameter_missing_from_schema_is_string",
        block(inv("get_weather", ("location", "Rome"), ("hours", "12"))),
        None,
        None,
        [("get_weather", {"location": "Rome", "hours": "12"})],
        tools=TOOLS,
    ),
    Fixture(
        "unknown_tool_still_returned_values_are_strings",
        "Use the stock tool.</think>"
        + block(inv("lookup_stock", ("symbol", "AAPL"), ("count", "3"))),
        "Use the stock tool.",
        None,
        [("lookup_stock", {"symbol": "AAPL", "count": "3"})],
        tools=TOOLS,
    ),
    Fixture(
        "no_tools_given_values_are_strings",
        block(inv("get_weather", ("location", "Kyiv"), ("days", "3"))),
        None,
        None,
        [("get_weather", {"location": "Kyiv", "days": "3"})],
        tools=None,
    ),
    Fixture(
        "tool_without_parameters_schema_values_are_strings",
        block(inv("ping", ("n", "1"))),
        None,
        None,
        [("ping", {"n": "1"})],
        tools=[{"type": "function", "function": {"name": "ping"}}],
    ),
    Fixture(
        "non_string_values_trimmed_before_conversion",
        block(
            inv(
                "set_config", ("count", "\n  42\n"), ("enabled", " true "), ("meta", '\n{"a": 1}\n')
            )
        ),
        None,
        None,
        [("set_config", {"count": 42, "enabled": True, "meta": {"a": 1}})],
        tools=TOOLS,
    ),
    Fixture(
        "failed_conversion_keeps_raw_untrimmed_text",
        block(inv("set_config", ("count", " lots "), ("meta", "\n{not json\n"))),
        None,
        None,
        [("set_config", {"count": " lots ", "meta": "\n{not json\n"})],
        tools=TOOLS,
    ),
    Fixture(
        "nan_and_infinity_rejected",
        block(
            inv("set_config", ("ratio", "NaN"), ("both", "Infinity")),
            inv("set_config", ("ratio", "-inf")),
        ),
        None,
        None,
        [("set_config", {"ratio": "NaN", "both": "Infinity"}), ("set_config", {"ratio": "-inf"})],
        tools=TOOLS,
    ),
    Fixture(
        # 1e999 overflows to inf when decoded; JSON has no Infinity, so the
        # conversion fails and the raw text stays a string.
        "infinity_from_overflow_inside_json_rejected",
        block(inv("set_config", ("items", "[1, 1e999]"), ("meta", '{"x": -1E400}'))),
        None,
        None,
        [("set_config", {"items": "[1, 1e999]", "meta": '{"x": -1E400}'})],
        tools=TOOLS,
    ),
    Fixture(
        "duplicate_parameter_first_value_wins",
        block(
            inv(
                "get_weather",
                ("location", "Tokyo"),
                ("days", "1"),
                ("location", "Kyoto"),
                ("days", "2"),
            )
        ),
        None,
        None,
        [("get_weather", {"location": "Tokyo", "days": 1})],
        tools=TOOLS,
    ),
    Fixture(
        "empty_block_is_dropped",
        "r</think>\n\nAnswer." + B + E + "\nAfter.",
        "r",
        "\n\nAnswer.\nAfter.",
        [],
        tools=TOOLS,
    ),
    Fixture(
        "empty_block_ends_reasoning_and_is_dropped",
        "thinking" + B + " \n " + E,
        "thinking",
        None,
        [],
        tools=TOOLS,
    ),
    # ---- malformed markup -----------------------------------------------------------
    Fixture(
        "invoke_without_name_is_content",
        "r</think>" + B + '<invoke>\n<parameter name="location">Tokyo</parameter>\n</invoke>\n' + E,
        "r",
        B + '<invoke>\n<parameter name="location">Tokyo</parameter>\n</invoke>\n' + E,
        tools=TOOLS,
    ),
    Fixture(
        "invoke_with_empty_name_is_content",
        "r</think>"
        + B
        + '<invoke name="">\n<parameter name="location">Tokyo</parameter>\n</invoke>\n'
        + E,
        "r",
        B + '<invoke name="">\n<parameter name="location">Tokyo</parameter>\n</invoke>\n' + E,
        tools=TOOLS,
    ),
    Fixture(
        "invoke_name_over_256_chars_is_content",
        "r</think>" + B + f'<invoke name="{LONG_NAME}f">\n</invoke>\n' + E,
        "r",
        B + f'<invoke name="{LONG_NAME}f">\n</invoke>\n' + E,
    ),
    Fixture(
        "invoke_name_with_bracket_is_content",
        "r</think>" + B + '<invoke name="get[weather]">\n</invoke>\n' + E,
        "r",
        B + '<invoke name="get[weather]">\n</invoke>\n' + E,
    ),
    Fixture(
        "invoke_name_with_unclosed_quote_is_content",
        "r</think>"
        + B
        + '<invoke name="get_weather>\n<parameter name="location">Tokyo</parameter>\n</invoke>\n'
        + E,
        "r",
        B
        + '<invoke name="get_weather>\n<parameter name="location">Tokyo</parameter>\n</invoke>\n'
        + E,
        tools=TOOLS,
    ),
    Fixture(
        "block_tag_in_reasoning_not_followed_by_invoke_is_reasoning",
        "thinking <minimax:tool_call> is the tag</think>ok",
        "thinking <minimax:tool_call> is the tag",
        "ok",
    ),
    Fixture(
        "block_tag_in_content_not_followed_by_invoke_is_content",
        "r</think>Wrap calls in <minimax:tool_call> ... </minimax:tool_call>.",
        "r",
        "Wrap calls in <minimax:tool_call> ... </minimax:tool_call>.",
    ),
    Fixture(
        "invoke_tag_outside_block_is_content",
        'r</think>The tag <invoke name="x"> only works inside a block.',
        "r",
        'The tag <invoke name="x"> only works inside a block.',
    ),
    Fixture(
        "stray_text_inside_block_is_content",
        "r</think>" + B + inv("get_weather", ("location", "Rome")) + "hello\n" + E,
        "r",
        "hello",
        [("get_weather", {"location": "Rome"})],
        tools=TOOLS,
        strip_content=True,
    ),
    Fixture(
        "unknown_tag_inside_block_is_content",
        B
        + inv("get_weather", ("location", "Rome"))
        + "<foo>bar</foo>\n"
        + inv("get_weather", ("location", "Pisa"))
        + E,
        None,
        "<foo>bar</foo>",
        [("get_weather", {"location": "Rome"}), ("get_weather", {"location": "Pisa"})],
        tools=TOOLS,
        strip_content=True,
    ),
    Fixture(
        "parameter_outside_invoke_is_content",
        B + inv("get_weather", ("location", "Rome")) + '<parameter name="days">1</parameter>\n' + E,
        None,
        '<parameter name="days">1</parameter>',
        [("get_weather", {"location": "Rome"})],
        tools=TOOLS,
        strip_content=True,
    ),
    Fixture(
        "invoke_while_call_open_closes_the_open_call",
        B
        + '<invoke name="get_weather">\n<invoke name="run_command">\n<parameter name="command">ls</parameter>\n</invoke>\n'
        + E,
        None,
        None,
        [("get_weather", {}), ("run_command", {"command": "ls"})],
        tools=TOOLS,
    ),
    Fixture(
        "block_close_while_call_open_closes_call_and_block",
        B + '<invoke name="get_weather">\n' + E + "\nDone.",
        None,
        "\nDone.",
        [("get_weather", {})],
        tools=TOOLS,
    ),
    # ---- truncation -------------------------------------------------------------------
    Fixture(
        "truncated_inside_close_think",
        "Let me think about this</thi",
        "Let me think about this</thi",
        None,
    ),
    Fixture("truncated_inside_redundant_think", "  <thi", "  <thi", None),
    Fixture("truncated_after_lone_less_than_in_content", "r</think>a <", "r", "a <"),
    Fixture(
        "truncated_inside_block_open_tag",
        "r</think>Checking the weather.<minimax:tool_c",
        "r",
        "Checking the weather.<minimax:tool_c",
    ),
    Fixture(
        "truncated_after_block_open_tag",
        "r</think>Checking.\n<minimax:tool_call>\n",
        "r",
        "Checking.\n",
    ),
    Fixture(
        "truncated_inside_invoke_open_tag",
        "r</think>Checking.\n<minimax:tool_call>\n<inv",
        "r",
        "Checking.\n",
    ),
    Fixture(
        "truncated_inside_invoke_name",
        'r</think>Checking.\n<minimax:tool_call>\n<invoke name="get_wea',
        "r",
        "Checking.\n",
        tools=TOOLS,
    ),
    Fixture(
        "truncated_after_invoke_name_before_gt",
        'Checking.\n<minimax:tool_call>\n<invoke name="get_weather"',
        "Checking.\n",
        None,
        tools=TOOLS,
    ),
    Fixture(
        "truncated_inside_parameter_name",
        B
        + '<invoke name="get_weather">\n<parameter name="location">Tokyo</parameter>\n<parameter name="un',
        None,
        None,
        [("get_weather", {"location": "Tokyo"})],
        tools=TOOLS,
    ),
    Fixture(
        "truncated_in_string_value",
        B + '<invoke name="write_file">\n<parameter name="path">main.py</parameter>\n'
        '<parameter name="content">def main():\n    print("hel',
        None,
        None,
        [("write_file", {"path": "main.py", "content": 'def main():\n    print("hel'})],
        tools=TOOLS,
    ),
    Fixture(
        "truncated_in_string_value_inside_close_parameter_tag",
        B + '<invoke name="write_file">\n<parameter name="content">print(1)</param',
        None,
        None,
        [("write_file", {"content": "print(1)</param"})],
        tools=TOOLS,
    ),
    Fixture(
        "truncated_in_non_string_value_drops_it",
        B
        + '<invoke name="search_issues">\n<parameter name="query">bug</parameter>\n<parameter name="limit">2',
        None,
        None,
        [("search_issues", {"query": "bug"})],
        tools=TOOLS,
    ),
    Fixture(
        "truncated_in_non_string_value_close_tag_drops_it",
        B
        + '<invoke name="search_issues">\n<parameter name="query">bug</parameter>\n<parameter name="limit">25</para',
        None,
        None,
        [("search_issues", {"query": "bug"})],
        tools=TOOLS,
    ),
    Fixture(
        "truncated_right_after_close_parameter",
        B
        + '<invoke name="search_issues">\n<parameter name="query">bug</parameter>\n<parameter name="limit">25</parameter>',
        None,
        None,
        [("search_issues", {"query": "bug", "limit": 25})],
        tools=TOOLS,
    ),
    Fixture(
        "truncated_in_whitespace_after_close_parameter",
        B + '<invoke name="write_file">\n<parameter name="content">x = 1\n</parameter>\n ',
        None,
        None,
        [("write_file", {"content": "x = 1\n"})],
        tools=TOOLS,
    ),
    Fixture(
        "truncated_inside_close_invoke",
        B + '<invoke name="search_issues">\n<parameter name="limit">7</parameter>\n</inv',
        None,
        None,
        [("search_issues", {"limit": 7})],
        tools=TOOLS,
    ),
    Fixture(
        "truncated_after_close_invoke",
        "Go.</think>" + B + inv("get_weather", ("location", "Lima")),
        "Go.",
        None,
        [("get_weather", {"location": "Lima"})],
        tools=TOOLS,
    ),
    Fixture(
        "truncated_inside_block_close_tag",
        "Go.</think>" + B + inv("get_weather", ("location", "Lima")) + "</minimax:tool",
        "Go.",
        None,
        [("get_weather", {"location": "Lima"})],
        tools=TOOLS,
    ),
    Fixture("truncated_inside_special_token", "Almost done ]~b", "Almost done ]~b", None),
    # ---- special tokens ---------------------------------------------------------------
    Fixture(
        "special_tokens_removed_from_reasoning_and_content",
        "]~!b[Thinking]~b] about it.</think>Answer.[e~[",
        "Thinking about it.",
        "Answer.",
    ),
    Fixture(
        "special_token_removed_inside_value",
        block(inv("get_weather", ("location", "Tok]~b]yo"))),
        None,
        None,
        [("get_weather", {"location": "Tokyo"})],
        tools=TOOLS,
    ),
    Fixture(
        "special_tokens_removed_between_tags_and_after_block",
        B
        + '<invoke name="get_weather">\n[e~[<parameter name="location">Lima</parameter>]~b]\n</invoke>\n'
        + E
        + "[e~[",
        None,
        None,
        [("get_weather", {"location": "Lima"})],
        tools=TOOLS,
    ),
    Fixture(
        "special_token_removed_inside_a_tag",
        "Thinking.</th]~!b[ink>Hi",
        "Thinking.",
        "Hi",
    ),
]


# Every rule of DESIGN.md section 4 (and the decisions that refine it), with the
# fixtures that pin it down. test_corpus.py checks every name exists.
RULES: dict[str, list[str]] = {
    "starts_in_think: output starts as reasoning": [
        "no_opening_think_reasoning_then_answer",
        "text_is_kept_verbatim_no_stripping",
    ],
    "starts_in_think: redundant leading <think> dropped": [
        "redundant_leading_think_dropped",
        "redundant_leading_think_after_whitespace_dropped",
        "leading_whitespace_without_think_is_reasoning",
        "think_lookalike_at_start_is_reasoning_text",
        "later_think_tag_inside_reasoning_is_text",
        "only_redundant_think",
    ],
    "starts_in_think=False: leading <think> opens reasoning": [
        "starts_in_think_false_leading_think_opens_reasoning",
        "starts_in_think_false_whitespace_before_think_dropped",
        "starts_in_think_false_plain_content",
        "starts_in_think_false_leading_whitespace_kept_as_content",
    ],
    "reasoning ends at </think> or <minimax:tool_call>": [
        "tool_call_before_close_think",
        "tool_call_before_close_think_then_stray_close_think",
    ],
    "stray </think> after reasoning dropped; <think>…</think> pair in content kept": [
        "stray_close_think_in_content_dropped",
        "starts_in_think_false_stray_close_think_dropped",
        "think_pair_in_content_stays_content",
        "think_pair_then_stray_close_think_in_content",
        "starts_in_think_false_think_pair_later_is_content",
    ],
    "output ending in reasoning is all reasoning": ["reasoning_that_never_closes"],
    "block with invokes and parameters; whitespace between tags is markup": [
        "tool_call_after_reasoning",
        "whitespace_between_tags_is_markup",
        "compact_block_without_newlines",
        "invoke_without_parameters",
        "single_quoted_unquoted_and_spaced_names",
    ],
    "several invokes and blocks; indexes keep counting": [
        "parallel_invokes_in_one_block",
        "three_parallel_invokes_different_tools",
        "two_blocks_indexes_keep_counting",
    ],
    "text before, between and after blocks is content": [
        "text_before_block_is_content",
        "text_after_block_is_content",
        "text_before_between_and_after_blocks",
    ],
    "tool names not in tools are returned": ["unknown_tool_still_returned_values_are_strings"],
    "invoke without a name / non-grammar markup is content": [
        "invoke_without_name_is_content",
        "invoke_with_empty_name_is_content",
        "invoke_name_over_256_chars_is_content",
        "invoke_name_with_bracket_is_content",
        "invoke_name_with_unclosed_quote_is_content",
        "block_tag_in_reasoning_not_followed_by_invoke_is_reasoning",
        "block_tag_in_content_not_followed_by_invoke_is_content",
        "invoke_tag_outside_block_is_content",
        "stray_text_inside_block_is_content",
        "unknown_tag_inside_block_is_content",
        "parameter_outside_invoke_is_content",
    ],
    "</parameter> closes a value only before <parameter name=, </invoke> or the end": [
        "literal_close_parameter_not_followed_by_tag_is_value",
        "literal_close_parameter_then_newline_and_text_is_value",
        "literal_close_parameter_then_other_tag_is_value",
        "code_talking_about_the_format",
        "truncated_right_after_close_parameter",
    ],
    "values typed by schema: type, type list, enum, anyOf/oneOf/allOf, $ref not followed": [
        "union_type_list_integer_before_string",
        "enum_values_typed_by_enum_types",
        "enum_with_mixed_value_types",
        "anyof_oneof_allof_unions",
        "const_schema_typed_by_const_value",
        "ref_schema_not_followed_is_string",
        "schema_without_type_info_is_string",
    ],
    "candidate order null, integer, number, boolean, object, array, string": [
        "null_when_schema_allows_null",
        "null_not_allowed_stays_string",
        "null_only_for_the_literal_null",
        "integer_and_number_values",
        "number_schema_accepts_integer_text",
        "boolean_values_case_insensitive",
        "json_object_and_array_values",
        "json_array_of_objects_multiline",
    ],
    "integral floats for an integer schema become ints": [
        "integral_float_for_integer_schema_becomes_int",
        "non_integral_float_for_integer_schema_stays_string",
    ],
    "failed conversion keeps the raw text": [
        "failed_conversion_keeps_raw_untrimmed_text",
        "invalid_boolean_text_stays_string",
        "nan_and_infinity_rejected",
        "infinity_from_overflow_inside_json_rejected",
    ],
    "no schema for tool or parameter: string": [
        "no_tools_given_values_are_strings",
        "parameter_missing_from_schema_is_string",
        "tool_without_parameters_schema_values_are_strings",
    ],
    "Python-style list/dict accepted for array/object": ["python_literal_dict_and_list_accepted"],
    "string values verbatim; non-string trimmed; no entity decoding": [
        "string_values_verbatim_whitespace",
        "string_value_with_surrounding_whitespace_and_newlines",
        "long_code_value_exact_whitespace",
        "non_string_values_trimmed_before_conversion",
        "html_entities_not_decoded",
        "value_with_less_than_and_ampersand",
        "value_with_html_markup",
        "empty_values",
    ],
    "end of output inside a call": [
        "truncated_inside_parameter_name",
        "truncated_in_string_value",
        "truncated_in_string_value_inside_close_parameter_tag",
        "truncated_in_non_string_value_drops_it",
        "truncated_in_non_string_value_close_tag_drops_it",
        "truncated_in_whitespace_after_close_parameter",
        "truncated_inside_close_invoke",
        "truncated_inside_invoke_name",
        "truncated_after_invoke_name_before_gt",
        "truncated_after_block_open_tag",
        "truncated_inside_invoke_open_tag",
    ],
    "end of output: partial tag in text is emitted": [
        "truncated_inside_close_think",
        "truncated_inside_redundant_think",
        "truncated_after_lone_less_than_in_content",
        "truncated_inside_block_open_tag",
        "truncated_inside_special_token",
    ],
    "backend special tokens removed": [
        "special_tokens_removed_from_reasoning_and_content",
        "special_token_removed_inside_value",
        "special_tokens_removed_between_tags_and_after_block",
        "special_token_removed_inside_a_tag",
    ],
    "lenient recoveries inside a block": [
        "invoke_while_call_open_closes_the_open_call",
        "block_close_while_call_open_closes_call_and_block",
        "duplicate_parameter_first_value_wins",
        "empty_block_is_dropped",
        "empty_block_ends_reasoning_and_is_dropped",
    ],
}
