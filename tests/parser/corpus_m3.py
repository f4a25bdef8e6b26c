# ruff: noqa: E501  (fixture texts are kept on one line where that reads better)
"""A corpus of MiniMax-M3 raw outputs with their exact expected results (``grammar="m3"``).

Same shape as ``corpus.py``. Tool-call markup is written the way the M3 chat
template renders it (reference/minimax-m3.md): ``NS<tool_call>\\n``, per call
``NS<invoke name="f">``, per argument ``NS<key>VALUE NS</key>`` with no
whitespace between elements, ``NS</invoke>\\n``, and ``NS</tool_call>``.
``NS`` is the marker ``]<]minimax[>[``. Objects are nested elements, arrays
``NS<item>…NS</item>`` children; strings are raw, booleans true/false.
"""

from __future__ import annotations

from typing import Any

from tests.parser.corpus import Fixture, fn

NS = "]<]minimax[>["
B = NS + "<tool_call>\n"
E = NS + "</tool_call>"


def el(key: str, inner: str) -> str:
    return f"{NS}<{key}>{inner}{NS}</{key}>"


def items(*inners: str) -> str:
    return "".join(el("item", x) for x in inners)


def inv(name: str, *elements: str, quote: str = '"') -> str:
    return f"{NS}<invoke name={quote}{name}{quote}>" + "".join(elements) + f"{NS}</invoke>\n"


def block(*invokes: str) -> str:
    return B + "".join(invokes) + E


def M3(*args: Any, **kw: Any) -> Fixture:
    return Fixture(*args, grammar="m3", **kw)


S = {"type": "string"}
ORDER = fn(
    "create_order",
    {
        "user_id": {"type": "integer"},
        "urgent": {"type": "boolean"},
        "shipping": {"type": "object", "properties": {"city": S}},
        "items": {"type": "array", "items": {"type": "object", "properties": {"sku": S}}},
    },
)
WEATHER = fn(
    "get_weather",
    {"city": S, "days": {"type": "integer"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
)
FILES = fn(
    "write_files",
    {
        "files": {
            "type": "array",
            "items": {"type": "object", "properties": {"path": S, "content": S}},
        },
        "message": S,
    },
)
SEARCH = fn(
    "search",
    {
        "query": S,
        "filter": {"type": "object"},
        "labels": {"type": "array", "items": S},
        "limit": {"type": "integer"},
        "include_closed": {"type": "boolean"},
        "options": {"anyOf": [{"type": "object", "properties": {"deep": {"type": "boolean"}}}, S]},
    },
)
CONFIG = fn(
    "set_config",
    {
        "ratio": {"type": "number"},
        "count": {"type": "integer"},
        "enabled": {"type": "boolean"},
        "maybe": {"type": ["integer", "null"]},
        "label": {"type": ["string", "null"]},
        "tier": {"enum": [1, "gold", None]},
        "choice": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]},
        "meta": {"type": "object"},
        "tags": {"type": "array"},
        "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        "point": {
            "type": "object",
            "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
        },
        "untyped": {"description": "anything"},
    },
)
TOOLS = [ORDER, WEATHER, FILES, SEARCH, CONFIG]

ORDER_CALL = inv(
    "create_order",
    el("user_id", "42"),
    el("urgent", "true"),
    el("shipping", el("city", "Paris")),
    el("items", items(el("sku", "b-1"), el("sku", "p-7"))),
)
ORDER_ARGS = {
    "user_id": 42,
    "urgent": True,
    "shipping": {"city": "Paris"},
    "items": [{"sku": "b-1"}, {"sku": "p-7"}],
}


def nested(keys: list[str], leaf: Any) -> dict[str, Any]:
    """{keys[0]: {keys[1]: … {keys[-1]: leaf}}}."""
    value = leaf
    for key in reversed(keys):
        value = {key: value}
    return value


CODE = 'def f(a, b):\n    """Return a < b & "x".</content>"""\n\treturn a < b\n'

M3_FIXTURES: list[Fixture] = [
    # ---- the reference's example and thinking modes ----------------------------------
    M3(
        "m3_reference_example",
        "<mm:think>Two items, ship to Paris.</mm:think>I'll place the order." + block(ORDER_CALL),
        "Two items, ship to Paris.",
        "I'll place the order.",
        [("create_order", ORDER_ARGS)],
        tools=TOOLS,
    ),
    M3(
        "m3_reference_example_adaptive",
        "<mm:think>Two items, ship to Paris.</mm:think>I'll place the order." + block(ORDER_CALL),
        "Two items, ship to Paris.",
        "I'll place the order.",
        [("create_order", ORDER_ARGS)],
        tools=TOOLS,
        starts_in_think=False,
    ),
    M3(
        "m3_enabled_reasoning_then_answer",
        "The user greets me.\n</mm:think>\n\nHello! How can I help?",
        "The user greets me.\n",
        "\n\nHello! How can I help?",
    ),
    M3(
        "m3_enabled_redundant_opener_after_whitespace",
        "\n <mm:think>plan</mm:think>answer",
        "plan",
        "answer",
    ),
    M3(
        "m3_enabled_leading_whitespace_is_reasoning",
        "\n  hmm</mm:think>ok",
        "\n  hmm",
        "ok",
    ),
    M3(
        "m3_enabled_later_opener_in_reasoning_is_text",
        "<mm:think>I could write <mm:think> here.</mm:think>Done.",
        "I could write <mm:think> here.",
        "Done.",
    ),
    M3(
        "m3_enabled_reasoning_runs_into_tool_call",
        "Need the weather in Oslo." + block(inv("get_weather", el("city", "Oslo"))),
        "Need the weather in Oslo.",
        None,
        [("get_weather", {"city": "Oslo"})],
        tools=TOOLS,
    ),
    M3(
        "m3_enabled_reasoning_never_closes",
        "Thinking about <b> and ]< and so on",
        "Thinking about <b> and ]< and so on",
        None,
    ),
    M3(
        "m3_enabled_empty_reasoning_closer_first",
        "</mm:think>Straight to the answer.",
        None,
        "Straight to the answer.",
    ),
    M3("m3_empty_output", "", None, None),
    M3("m3_only_redundant_opener", "<mm:think>", None, None),
    M3("m3_only_closer_disabled", "</mm:think>", None, None, starts_in_think=False),
    M3(
        "m3_disabled_leading_closer_dropped",
        "</mm:think>Paris is the capital of France.",
        None,
        "Paris is the capital of France.",
        starts_in_think=False,
    ),
    M3(
        "m3_disabled_several_closers_with_whitespace_between",
        "</mm:think>\n</mm:think> \n\t</mm:think>Hi.",
        None,
        "Hi.",
        starts_in_think=False,
    ),
    M3(
        "m3_disabled_whitespace_after_last_closer_is_content",
        "</mm:think>\n\nHi.",
        None,
        "\n\nHi.",
        starts_in_think=False,
    ),
    M3(
        "m3_disabled_duplicate_closers_then_tool_call",
        "</mm:think></mm:think>" + block(inv("get_weather", el("city", "Lima"), el("days", "3"))),
        None,
        None,
        [("get_weather", {"city": "Lima", "days": 3})],
        tools=TOOLS,
        starts_in_think=False,
    ),
    M3(
        "m3_adaptive_thinks",
        "<mm:think>Short plan.</mm:think>The answer is 4.",
        "Short plan.",
        "The answer is 4.",
        starts_in_think=False,
    ),
    M3(
        "m3_adaptive_whitespace_before_opener_dropped",
        "\n\n<mm:think>r</mm:think>c",
        "r",
        "c",
        starts_in_think=False,
    ),
    M3(
        "m3_adaptive_closer_then_opener",
        "</mm:think>\n<mm:think>late thought</mm:think>text",
        "late thought",
        "text",
        starts_in_think=False,
    ),
    M3(
        "m3_adaptive_plain_answer",
        "Sure — two lines.\nSecond line.",
        None,
        "Sure — two lines.\nSecond line.",
        starts_in_think=False,
    ),
    M3(
        "m3_adaptive_leading_whitespace_kept_as_content",
        "\n  Hello.",
        None,
        "\n  Hello.",
        starts_in_think=False,
    ),
    M3(
        "m3_stray_closer_in_content_dropped",
        "r</mm:think>a</mm:think>b",
        "r",
        "ab",
    ),
    M3(
        "m3_literal_think_pair_in_content_stays",
        "Tags look like <mm:think>this</mm:think> in my output.",
        None,
        "Tags look like <mm:think>this</mm:think> in my output.",
        starts_in_think=False,
    ),
    M3(
        "m3_m2_tags_are_plain_text",
        '<think>not a tag</think>r</mm:think><minimax:tool_call><invoke name="f"></invoke></minimax:tool_call>',
        "<think>not a tag</think>r",
        '<minimax:tool_call><invoke name="f"></invoke></minimax:tool_call>',
    ),
    # ---- calls, blocks, text around them ------------------------------------------------
    M3(
        "m3_flat_call_typed_by_schema",
        "r</mm:think>"
        + block(
            inv("get_weather", el("city", "São Paulo"), el("days", "7"), el("unit", "celsius"))
        ),
        "r",
        None,
        [("get_weather", {"city": "São Paulo", "days": 7, "unit": "celsius"})],
        tools=TOOLS,
    ),
    M3(
        "m3_parallel_invokes_in_one_block",
        "Two cities.</mm:think>\n\n"
        + block(inv("get_weather", el("city", "Tokyo")), inv("get_weather", el("city", "Osaka"))),
        "Two cities.",
        "\n\n",
        [("get_weather", {"city": "Tokyo"}), ("get_weather", {"city": "Osaka"})],
        tools=TOOLS,
    ),
    M3(
        "m3_two_blocks_text_between_and_after",
        "r</mm:think>First: "
        + block(inv("get_weather", el("city", "Rome")))
        + " then: "
        + block(inv("get_weather", el("city", "Milan")))
        + "\nDone.",
        "r",
        "First:  then: \nDone.",
        [("get_weather", {"city": "Rome"}), ("get_weather", {"city": "Milan"})],
        tools=TOOLS,
        sequence=[
            ("think", "r"),
            ("content", "First: "),
            ("call", "get_weather", {"city": "Rome"}),
            ("content", " then: "),
            ("call", "get_weather", {"city": "Milan"}),
            ("content", "\nDone."),
        ],
    ),
    M3(
        "m3_call_with_no_arguments",
        block(inv("list_files")),
        None,
        None,
        [("list_files", {})],
    ),
    M3(
        "m3_name_single_quoted",
        block(inv("get_weather", el("city", "Kyiv"), quote="'")),
        None,
        None,
        [("get_weather", {"city": "Kyiv"})],
        tools=TOOLS,
    ),
    M3(
        "m3_name_unquoted",
        block(inv("get_weather", el("days", "2"), quote="")),
        None,
        None,
        [("get_weather", {"days": 2})],
        tools=TOOLS,
    ),
    M3(
        "m3_unknown_tool_values_are_strings_or_containers",
        block(inv("mystery", el("n", "42"), el("flag", "true"), el("obj", el("a", "1")))),
        None,
        None,
        [("mystery", {"n": "42", "flag": "true", "obj": {"a": "1"}})],
        tools=TOOLS,
    ),
    M3(
        "m3_whitespace_between_tags_is_markup",
        B
        + f'{NS}<invoke name="get_weather">\n  {NS}<city>Oslo{NS}</city>\n  {NS}<days>1{NS}</days>\n{NS}</invoke>\n\n{E}',
        None,
        None,
        [("get_weather", {"city": "Oslo", "days": 1})],
        tools=TOOLS,
    ),
    # ---- values ---------------------------------------------------------------------------
    M3(
        "m3_silent_schema_nested_object_and_item_array",
        block(
            inv(
                "deploy",
                el("target", el("region", "eu") + el("zones", items("a", "b"))),
                el("note", "ok"),
            )
        ),
        None,
        None,
        [("deploy", {"target": {"region": "eu", "zones": ["a", "b"]}, "note": "ok"})],
    ),
    M3(
        "m3_silent_schema_whitespace_before_first_child_is_markup",
        block(inv("deploy", el("target", "\n  " + el("region", "eu") + "\n"))),
        None,
        None,
        [("deploy", {"target": {"region": "eu"}})],
    ),
    M3(
        "m3_silent_schema_leading_whitespace_of_text_is_kept",
        block(inv("echo", el("text", "\n  indented\n"))),
        None,
        None,
        [("echo", {"text": "\n  indented\n"})],
    ),
    M3(
        "m3_string_values_are_verbatim",
        block(inv("write_files", el("message", CODE))),
        None,
        None,
        [("write_files", {"message": CODE})],
        tools=TOOLS,
    ),
    M3(
        "m3_array_of_objects_streams_nested_strings",
        "Writing two files.</mm:think>"
        + block(
            inv(
                "write_files",
                el(
                    "files",
                    items(
                        el("path", "src/a.py") + el("content", CODE),
                        el("path", "src/b.py") + el("content", "x = 1\n"),
                    ),
                ),
                el("message", "add a and b"),
            )
        ),
        "Writing two files.",
        None,
        [
            (
                "write_files",
                {
                    "files": [
                        {"path": "src/a.py", "content": CODE},
                        {"path": "src/b.py", "content": "x = 1\n"},
                    ],
                    "message": "add a and b",
                },
            )
        ],
        tools=TOOLS,
    ),
    M3(
        "m3_array_schema_children_without_item_are_elements",
        block(inv("search", el("labels", el("label", "bug") + el("label", "ui")))),
        None,
        None,
        [("search", {"labels": ["bug", "ui"]})],
        tools=TOOLS,
    ),
    M3(
        "m3_array_of_objects_without_item_wrapper_is_one_object",
        block(inv("write_files", el("files", el("path", "a.txt") + el("content", "A")))),
        None,
        None,
        [("write_files", {"files": [{"path": "a.txt", "content": "A"}]})],
        tools=TOOLS,
    ),
    M3(
        "m3_repeated_name_collects_when_schema_says_array",
        block(inv("search", el("labels", "bug"), el("labels", "ui"), el("limit", "3"))),
        None,
        None,
        [("search", {"labels": ["bug", "ui"], "limit": 3})],
        tools=TOOLS,
    ),
    M3(
        "m3_repeated_objects_collect_into_array",
        block(
            inv(
                "write_files",
                el("files", el("path", "a") + el("content", "1")),
                el("files", el("path", "b") + el("content", "2")),
            )
        ),
        None,
        None,
        [
            (
                "write_files",
                {"files": [{"path": "a", "content": "1"}, {"path": "b", "content": "2"}]},
            )
        ],
        tools=TOOLS,
    ),
    M3(
        "m3_repeated_name_first_value_wins_otherwise",
        block(inv("get_weather", el("city", "Rome"), el("city", "Paris"), el("days", "1"))),
        None,
        None,
        [("get_weather", {"city": "Rome", "days": 1})],
        tools=TOOLS,
    ),
    M3(
        "m3_repeated_silent_object_first_wins",
        block(inv("deploy", el("t", el("a", "1")), el("t", el("b", "2")))),
        None,
        None,
        [("deploy", {"t": {"a": "1"}})],
    ),
    M3(
        "m3_array_name_repeated_after_another_key_is_dropped",
        block(inv("search", el("labels", "a"), el("query", "q"), el("labels", "b"))),
        None,
        None,
        [("search", {"labels": ["a"], "query": "q"})],
        tools=TOOLS,
    ),
    M3(
        "m3_json_text_in_object_and_array_elements",
        block(
            inv(
                "search",
                el("filter", '{"state": "open", "n": [1, 2]}'),
                el("labels", '["bug", "p1"]'),
            )
        ),
        None,
        None,
        [("search", {"filter": {"state": "open", "n": [1, 2]}, "labels": ["bug", "p1"]})],
        tools=TOOLS,
    ),
    M3(
        "m3_python_literal_in_object_element",
        block(inv("search", el("filter", "{'closed': True}"))),
        None,
        None,
        [("search", {"filter": {"closed": True}})],
        tools=TOOLS,
    ),
    M3(
        "m3_empty_elements_by_schema",
        block(
            inv(
                "set_config",
                el("meta", ""),
                el("tags", ""),
                el("label", ""),
                el("untyped", ""),
                el("point", " "),
            )
        ),
        None,
        None,
        [("set_config", {"meta": {}, "tags": [], "label": "", "untyped": "", "point": {}})],
        tools=TOOLS,
    ),
    M3(
        "m3_scalar_typing_rules",
        block(
            inv(
                "set_config",
                el("ratio", " 0.25 "),
                el("count", "3.0"),
                el("enabled", "False"),
                el("maybe", "null"),
                el("label", "null"),
                el("tier", "gold"),
                el("choice", "true"),
            )
        ),
        None,
        None,
        [
            (
                "set_config",
                {
                    "ratio": 0.25,
                    "count": 3,
                    "enabled": False,
                    "maybe": None,
                    "label": None,
                    "tier": "gold",
                    "choice": True,
                },
            )
        ],
        tools=TOOLS,
    ),
    M3(
        "m3_failed_conversion_keeps_raw_text",
        block(inv("set_config", el("count", "many"), el("enabled", " yes "))),
        None,
        None,
        [("set_config", {"count": "many", "enabled": " yes "})],
        tools=TOOLS,
    ),
    M3(
        "m3_nested_typing_by_schema",
        block(
            inv(
                "set_config",
                el("point", el("x", "1.5") + el("y", "-2")),
                el("matrix", items(items("1", "2"), items("3"))),
            )
        ),
        None,
        None,
        [("set_config", {"point": {"x": 1.5, "y": -2}, "matrix": [[1, 2], [3]]})],
        tools=TOOLS,
    ),
    M3(
        "m3_anyof_object_or_string_takes_children_or_text",
        block(
            inv("search", el("options", el("deep", "true"))), inv("search", el("options", "fast"))
        ),
        None,
        None,
        [("search", {"options": {"deep": True}}), ("search", {"options": "fast"})],
        tools=TOOLS,
    ),
    M3(
        "m3_array_schema_scalar_text_is_one_element",
        block(inv("search", el("labels", "wontfix"))),
        None,
        None,
        [("search", {"labels": ["wontfix"]})],
        tools=TOOLS,
    ),
    M3(
        "m3_string_schema_keeps_child_markup_as_text",
        block(inv("get_weather", el("city", el("name", "Oslo")))),
        None,
        None,
        [("get_weather", {"city": "<name>Oslo</name>"})],
        tools=TOOLS,
    ),
    M3(
        "m3_silent_text_then_child_is_text",
        block(inv("echo", el("text", "see " + el("b", "bold") + " here"))),
        None,
        None,
        [("echo", {"text": "see <b>bold</b> here"})],
    ),
    M3(
        "m3_deep_nesting_object_array_object",
        block(
            inv(
                "plan",
                el(
                    "steps",
                    items(
                        el("name", "build")
                        + el("env", el("CC", "gcc") + el("flags", items("-O2", "-g"))),
                    ),
                ),
            )
        ),
        None,
        None,
        [("plan", {"steps": [{"name": "build", "env": {"CC": "gcc", "flags": ["-O2", "-g"]}}]})],
    ),
    M3(
        "m3_nested_schema_read_through_anyof_and_allof",
        block(
            inv(
                "nested_union",
                el("o", el("n", "5") + el("s", "07")),
                el("ids", items("1", "2")),
                el("odd", el("k", "v")),
            )
        ),
        None,
        None,
        [("nested_union", {"o": {"n": 5, "s": "07"}, "ids": [1, 2], "odd": {"k": "v"}})],
        tools=[
            None,
            "not a tool",
            {"function": "not a definition"},
            fn(
                "nested_union",
                {
                    "o": {
                        "anyOf": [
                            {"type": "object", "properties": {"n": {"type": "integer"}}},
                            {"type": "null"},
                            "not a schema",
                            {"properties": {"s": S, "n": {"type": "string"}}},
                        ]
                    },
                    "ids": {"allOf": [{"type": "array", "items": {"type": "integer"}}]},
                    "odd": "not a schema",
                },
            ),
        ],
    ),
    # ---- end of output ------------------------------------------------------------------
    M3(
        "m3_truncated_in_string_value_keeps_it",
        "r</mm:think>" + B + f'{NS}<invoke name="get_weather">{NS}<days>2{NS}</days>{NS}<city>Ber',
        "r",
        None,
        [("get_weather", {"days": 2, "city": "Ber"})],
        tools=TOOLS,
    ),
    M3(
        "m3_truncated_in_nested_string_keeps_it",
        B
        + f'{NS}<invoke name="write_files">{NS}<files>{NS}<item>{NS}<path>src/a.py{NS}</path>{NS}<content>def ma',
        None,
        None,
        [("write_files", {"files": [{"path": "src/a.py", "content": "def ma"}]})],
        tools=TOOLS,
    ),
    M3(
        "m3_truncated_in_scalar_drops_it",
        B + f'{NS}<invoke name="get_weather">{NS}<city>Rome{NS}</city>{NS}<days>1',
        None,
        None,
        [("get_weather", {"city": "Rome"})],
        tools=TOOLS,
    ),
    M3(
        "m3_truncated_inside_close_tag_of_string",
        B + f'{NS}<invoke name="get_weather">{NS}<city>Rome{NS}</ci',
        None,
        None,
        [("get_weather", {"city": "Rome"})],
        tools=TOOLS,
    ),
    M3(
        "m3_truncated_inside_marker_in_string",
        B + f'{NS}<invoke name="get_weather">{NS}<city>Rome]<]mini',
        None,
        None,
        [("get_weather", {"city": "Rome]<]mini"})],
        tools=TOOLS,
    ),
    M3(
        "m3_truncated_in_pending_element_drops_it",
        B + f'{NS}<invoke name="deploy">{NS}<a>x{NS}</a>{NS}<target>\n ',
        None,
        None,
        [("deploy", {"a": "x"})],
    ),
    M3(
        "m3_truncated_after_first_child_opens_keeps_container",
        B + f'{NS}<invoke name="deploy">{NS}<target>{NS}<n>4',
        None,
        None,
        [("deploy", {"target": {}})],
        tools=[
            fn("deploy", {"target": {"type": "object", "properties": {"n": {"type": "integer"}}}})
        ],
    ),
    M3(
        "m3_truncated_in_collection",
        block(inv("search", el("labels", "a"))).split(f"{NS}</invoke>")[0] + f"{NS}<labels>b",
        None,
        None,
        [("search", {"labels": ["a"]})],
        tools=TOOLS,
    ),
    M3(
        "m3_truncated_inside_invoke_name_yields_nothing",
        "Calling." + B + f'{NS}<invoke name="get_wea',
        "Calling.",
        None,
    ),
    M3(
        "m3_truncated_after_block_open_yields_nothing",
        "r</mm:think>text" + B,
        "r",
        "text",
    ),
    M3(
        "m3_truncated_inside_block_open_marker_is_text",
        "r</mm:think>text]<]minimax[>[<tool_ca",
        "r",
        "text<tool_ca",
    ),
    M3(
        "m3_truncated_partial_marker_in_content_is_text",
        "r</mm:think>a ]<]mini",
        "r",
        "a ]<]mini",
    ),
    M3(
        "m3_truncated_between_invokes",
        B + inv("get_weather", el("city", "A")) + f"{NS}<inv",
        None,
        None,
        [("get_weather", {"city": "A"})],
        tools=TOOLS,
    ),
    # ---- malformed markup ---------------------------------------------------------------
    M3(
        "m3_block_without_invoke_is_given_back",
        "r</mm:think>" + B + "not a call" + E,
        "r",
        "<tool_call>\nnot a call</tool_call>",
    ),
    M3(
        "m3_invoke_without_name_is_given_back",
        "r</mm:think>" + B + f"{NS}<invoke>x",
        "r",
        "<tool_call>\n<invoke>x",
    ),
    M3(
        "m3_block_given_back_inside_reasoning",
        B + "oops",
        "<tool_call>\noops",
        None,
    ),
    M3(
        "m3_empty_block_is_dropped",
        "r</mm:think>a" + B + E + "b",
        "r",
        "ab",
    ),
    M3(
        "m3_new_block_while_block_open_is_markup",
        B
        + inv("get_weather", el("city", "A"))
        + B
        + inv("get_weather", el("city", "B"))
        + E
        + "ok",
        None,
        "ok",
        [("get_weather", {"city": "A"}), ("get_weather", {"city": "B"})],
        tools=TOOLS,
    ),
    M3(
        "m3_repeated_block_opener_is_markup",
        "r</mm:think>" + NS + "<tool_call>" + block(inv("get_weather", el("city", "C"))),
        "r",
        None,
        [("get_weather", {"city": "C"})],
        tools=TOOLS,
    ),
    M3(
        "m3_block_opener_inside_a_value_is_text",
        block(inv("echo", el("text", f"a {NS}<tool_call> b"))),
        None,
        None,
        [("echo", {"text": "a <tool_call> b"})],
    ),
    M3(
        "m3_stray_text_between_invokes_is_content",
        block(inv("get_weather", el("city", "A")) + "note\n" + inv("get_weather", el("city", "B"))),
        None,
        "note",
        [("get_weather", {"city": "A"}), ("get_weather", {"city": "B"})],
        tools=TOOLS,
        strip_content=True,
    ),
    M3(
        "m3_mismatched_close_is_value_text",
        block(inv("echo", el("text", f"x {NS}</other> y"))),
        None,
        None,
        [("echo", {"text": "x </other> y"})],
    ),
    M3(
        "m3_close_of_outer_element_closes_inner",
        block(inv("deploy", f"{NS}<target>{NS}<region>eu{NS}</target>", el("n", "1"))),
        None,
        None,
        [("deploy", {"target": {"region": "eu"}, "n": "1"})],
    ),
    M3(
        "m3_missing_invoke_close_before_block_close",
        B + f'{NS}<invoke name="get_weather">{NS}<city>A{NS}</city>' + E + "after",
        None,
        "after",
        [("get_weather", {"city": "A"})],
        tools=TOOLS,
    ),
    M3(
        "m3_new_invoke_closes_open_call",
        B
        + f'{NS}<invoke name="get_weather">{NS}<city>A{NS}</city>'
        + inv("get_weather", el("city", "B"))
        + E,
        None,
        None,
        [("get_weather", {"city": "A"}), ("get_weather", {"city": "B"})],
        tools=TOOLS,
    ),
    M3(
        "m3_block_close_inside_value_closes_call",
        B + f'{NS}<invoke name="get_weather">{NS}<city>A' + E + "x",
        None,
        "x",
        [("get_weather", {"city": "A"})],
        tools=TOOLS,
    ),
    M3(
        "m3_marker_with_garbage_in_value_is_dropped",
        block(inv("echo", el("text", f"a{NS}b{NS} c"))),
        None,
        None,
        [("echo", {"text": "ab c"})],
    ),
    M3(
        "m3_stray_marker_before_first_child_is_dropped",
        block(inv("deploy", el("t", NS + "\n" + el("a", "1")))),
        None,
        None,
        [("deploy", {"t": {"a": "1"}})],
    ),
    M3(
        "m3_bad_tag_between_elements_is_content",
        block(inv("get_weather", el("city", "A") + f"{NS}<bad tag>")),
        None,
        "<bad tag>",
        [("get_weather", {"city": "A"})],
        tools=TOOLS,
    ),
    M3(
        "m3_nesting_too_deep_is_text",
        block(
            inv(
                "deep",
                "".join(f"{NS}<k{i}>" for i in range(66))
                + "x"
                + "".join(f"{NS}</k{i}>" for i in reversed(range(66))),
            )
        ),
        None,
        None,
        [
            (
                "deep",
                nested([f"k{i}" for i in range(64)], "<k64><k65>x</k65></k64>"),
            )
        ],
    ),
    M3(
        "m3_tag_broken_by_a_bracket_or_newline_is_value_text",
        block(inv("echo", el("text", f"a{NS}<b]c {NS}<d\ne"))),
        None,
        None,
        [("echo", {"text": "a<b]c <d\ne"})],
    ),
    M3(
        "m3_overlong_tag_is_content",
        block(inv("get_weather", el("city", "A") + f"{NS}<{'k' * 300}>")),
        None,
        f"<{'k' * 300}>",
        [("get_weather", {"city": "A"})],
        tools=TOOLS,
    ),
    M3(
        "m3_empty_scalar_element_keeps_empty_text",
        block(inv("set_config", el("count", ""), el("ratio", "  "))),
        None,
        None,
        [("set_config", {"count": "", "ratio": "  "})],
        tools=TOOLS,
    ),
    M3(
        "m3_array_in_array_with_text_is_one_element",
        block(inv("set_config", el("matrix", items("7", "[1, 2]")))),
        None,
        None,
        [("set_config", {"matrix": [[7], [1, 2]]})],
        tools=TOOLS,
    ),
    # ---- leaked markers ------------------------------------------------------------------
    M3(
        "m3_leaked_markers_removed_from_text",
        f"rea{NS}son]~!b[ing</mm:think>con]~b]tent{NS} end[e~[",
        "reasoning",
        "content end",
    ),
    M3(
        "m3_leaked_marker_alone_at_start_of_content",
        NS + "Hello",
        None,
        "Hello",
        starts_in_think=False,
    ),
    M3(
        "m3_special_tokens_removed_inside_call",
        block(inv("get_weather", el("city", "Ri]~b]o"))) + "[e~[",
        None,
        None,
        [("get_weather", {"city": "Rio"})],
        tools=TOOLS,
    ),
]

M3_RULES: dict[str, list[str]] = {
    "enabled: starts in reasoning, redundant <mm:think> dropped": [
        "m3_reference_example",
        "m3_enabled_redundant_opener_after_whitespace",
        "m3_enabled_leading_whitespace_is_reasoning",
        "m3_enabled_later_opener_in_reasoning_is_text",
        "m3_only_redundant_opener",
    ],
    "disabled/adaptive: leading closers dropped, <mm:think> opens reasoning": [
        "m3_disabled_leading_closer_dropped",
        "m3_disabled_several_closers_with_whitespace_between",
        "m3_disabled_whitespace_after_last_closer_is_content",
        "m3_disabled_duplicate_closers_then_tool_call",
        "m3_adaptive_thinks",
        "m3_adaptive_closer_then_opener",
        "m3_reference_example_adaptive",
    ],
    "reasoning ends at </mm:think> or NS<tool_call>": [
        "m3_enabled_reasoning_then_answer",
        "m3_enabled_reasoning_runs_into_tool_call",
        "m3_enabled_reasoning_never_closes",
    ],
    "blocks: parallel invokes, several blocks, text around them": [
        "m3_parallel_invokes_in_one_block",
        "m3_two_blocks_text_between_and_after",
        "m3_call_with_no_arguments",
    ],
    "names double-, single- or un-quoted": [
        "m3_flat_call_typed_by_schema",
        "m3_name_single_quoted",
        "m3_name_unquoted",
    ],
    "values: objects, <item> arrays, schema says array": [
        "m3_silent_schema_nested_object_and_item_array",
        "m3_array_schema_children_without_item_are_elements",
        "m3_array_of_objects_without_item_wrapper_is_one_object",
        "m3_deep_nesting_object_array_object",
        "m3_nested_typing_by_schema",
        "m3_nested_schema_read_through_anyof_and_allof",
    ],
    "values: JSON text in an object/array element": [
        "m3_json_text_in_object_and_array_elements",
        "m3_python_literal_in_object_element",
    ],
    "values: repeated names": [
        "m3_repeated_name_collects_when_schema_says_array",
        "m3_repeated_objects_collect_into_array",
        "m3_repeated_name_first_value_wins_otherwise",
        "m3_repeated_silent_object_first_wins",
        "m3_array_name_repeated_after_another_key_is_dropped",
    ],
    "values: empty elements and scalar typing": [
        "m3_empty_elements_by_schema",
        "m3_scalar_typing_rules",
        "m3_failed_conversion_keeps_raw_text",
        "m3_anyof_object_or_string_takes_children_or_text",
        "m3_array_schema_scalar_text_is_one_element",
        "m3_empty_scalar_element_keeps_empty_text",
        "m3_array_in_array_with_text_is_one_element",
    ],
    "end of output closes what is open": [
        "m3_truncated_in_string_value_keeps_it",
        "m3_truncated_in_nested_string_keeps_it",
        "m3_truncated_in_scalar_drops_it",
        "m3_truncated_inside_close_tag_of_string",
        "m3_truncated_in_pending_element_drops_it",
        "m3_truncated_after_first_child_opens_keeps_container",
        "m3_truncated_in_collection",
        "m3_truncated_inside_invoke_name_yields_nothing",
        "m3_truncated_after_block_open_yields_nothing",
    ],
    "malformed markup becomes content": [
        "m3_new_block_while_block_open_is_markup",
        "m3_repeated_block_opener_is_markup",
        "m3_block_opener_inside_a_value_is_text",
        "m3_block_without_invoke_is_given_back",
        "m3_invoke_without_name_is_given_back",
        "m3_stray_text_between_invokes_is_content",
        "m3_bad_tag_between_elements_is_content",
        "m3_mismatched_close_is_value_text",
        "m3_nesting_too_deep_is_text",
        "m3_tag_broken_by_a_bracket_or_newline_is_value_text",
        "m3_overlong_tag_is_content",
    ],
    "leaked markers removed": [
        "m3_leaked_markers_removed_from_text",
        "m3_leaked_marker_alone_at_start_of_content",
        "m3_special_tokens_removed_inside_call",
        "m3_marker_with_garbage_in_value_is_dropped",
        "m3_stray_marker_before_first_child_is_dropped",
    ],
}
