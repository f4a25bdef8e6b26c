"""What the simulated MiniMax-M2 says: raw output chosen deterministically from the request.

The raw text always starts inside reasoning with no ``<think>`` (the MiniMax-M2 template
pre-opens it) and closes it with ``</think>\n\n``; tool calls are rendered exactly as the
chat template renders them (string values verbatim, other values as JSON, one
``<minimax:tool_call>`` wrapper for all invokes of a turn). See ``proxy/sim/server.py`` for
the rules.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator
from typing import Any

__all__ = [
    "DEFAULT_TOOL",
    "DIRECTIVE",
    "endless",
    "message_text",
    "plan_reply",
    "render_prompt",
    "split_script",
    "token_pieces",
]

DIRECTIVE = re.compile(r"SIM_(FAULT|RATE|TOKEN_CHARS|STALL|PING|TTFT|CRLF):(\S+)")
LONG_CHARS = 8_000  # ~2,000 tokens at the default token size

_THOUGHTS = (
    "Let me think about what is really being asked here.",
    "Accuracy matters more than length, so I will keep it short.",
    "There may be edge cases: empty input, Unicode such as naïve café, or very large values.",
    "I should check whether a tool would help before answering.",
    "A direct answer without headings fits best.",
    "I will double-check the details before I reply.",
)
_WORDS = ("alpha", "cedar", "harbor", "lumen", "nimbus", "orbit", "quartz", "0042", "true")
_PLACES = ("Tokyo", "Paris", "São Paulo", "Zürich", "東京", "Reykjavík")
_CODE = r'''def render_card_@I@(items: list[str], limit: int = @L@) -> str:
    """Wrap items in HTML. Note: "</parameter>" ends a value only before a tag."""
    html = ['<div class="card-@I@" data-limit="@L@">']
    for item in items:
        if 0 < len(item) < limit and item != "\\":
            html.append(f"  <span title=\"{item}\">{item!r}</span>")
    html.append("</div>")
    path = "C:\\temp\\card_@I@.html"
    return "\n".join(html) + f"<!-- {path} -->"

'''
_RUN = re.compile(r"\brun `([^`\n]+)`", re.IGNORECASE)
_SHELLS = frozenset(
    (
        "bash",
        "shell",
        "exec_command",
        "execute_command",
        "run_command",
        "run_commands",
        "run_shell_command",
    )
)
DEFAULT_TOOL = {"type": "function", "function": {"name": "write_file", "parameters": {
    "type": "object", "required": ["path", "content"],
    "properties": {"path": {"type": "string"}, "content": {"type": "string"}}}}}  # fmt: skip


def split_script(text: str) -> tuple[str, Any]:
    """The text without its SIM_SCRIPT directive, and the script's JSON (None when absent)."""
    at = text.find("SIM_SCRIPT:")
    if at < 0:
        return text, None
    start = at + len("SIM_SCRIPT:")
    start += len(text[start:]) - len(text[start:].lstrip())
    script, end = json.JSONDecoder().raw_decode(text, start)
    return text[:at] + text[end:], script


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and "text" in p)
    return ""


def _schema_value(schema: Any, rng: random.Random, name: str, depth: int = 0) -> Any:
    """A value of the schema's type; deterministic given the rng state."""
    if not isinstance(schema, dict):
        return f"{name}-{rng.choice(_WORDS)}"
    if schema.get("enum"):
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        branches = [b for b in schema.get(key) or () if b.get("type") != "null"]
        if branches:
            return _schema_value(branches[0], rng, name, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    low = schema.get("minimum", 0)
    if kind == "integer":
        return rng.randint(int(low), int(schema.get("maximum", low + 100)))
    if kind == "number":
        return round(rng.uniform(low, schema.get("maximum", low + 100)), 2)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "array":
        size = max(int(schema.get("minItems", 1)), rng.randint(1, 3)) if depth < 3 else 0
        return [_schema_value(schema.get("items"), rng, name, depth + 1) for _ in range(size)]
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {"key": rng.choice(_WORDS)} if 0 < depth < 3 else {}
        return {k: _schema_value(s, rng, k, depth + 1) for k, s in props.items() if depth < 3}
    if any(w in name.lower() for w in ("city", "location", "place")):
        return rng.choice(_PLACES)
    return f"{name}-{rng.choice(_WORDS)}"


def _arguments(tool: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    args = _schema_value(tool.get("parameters") or {"type": "object"}, rng, "")
    return args if isinstance(args, dict) else {}  # a non-object schema: no parameters


def _shell_call(
    tools: list[dict[str, Any]], said: str, rng: random.Random
) -> dict[str, Any] | None:
    """The call a coding agent's model makes when asked to "run `cmd`" and a shell tool is offered.

    Agents' shell tools (bash, exec_command, run_shell_command, run_commands, …) take the
    command as ``command`` or ``cmd`` (or a list of ``commands``); the other required parameters
    get schema values, false for a boolean (so no "run in background" or "requires approval"),
    and optional ones are left out (a random ``timeout`` would kill the command). The last such
    request in the text wins.
    """
    asked = _RUN.findall(said)
    for tool in tools if asked else ():
        schema = tool.get("parameters") or {}
        props = schema.get("properties") or {}
        key = next((k for k in ("command", "cmd", "commands") if k in props), None)
        if str(tool.get("name", "")).lower() not in _SHELLS or key is None:
            continue
        command: Any = asked[-1]
        if props[key].get("type") == "array":  # a list of commands, or one command's argv
            command = [command] if key == "commands" else ["bash", "-lc", command]
        args: dict[str, Any] = {key: command}
        for name in schema.get("required") or ():
            if name not in args:
                value = props.get(name) or {}
                args[name] = (
                    False if value.get("type") == "boolean" else _schema_value(value, rng, name)
                )
        return {"name": tool["name"], "arguments": args}
    return None


def _run(call: dict[str, Any], thought: str, rng: random.Random) -> tuple[str, list[Any]]:
    """A reply that runs an agent's command, as asked: one call, never padded."""
    text = f"I'll use {call['name']} for this.\n\n"
    return _reasoning(rng, thought, 2) + text + _render_calls([call]), [call]


def _code(chars: int, first: int) -> str:
    blocks: list[str] = []
    size, i = 0, first
    while size < chars:
        blocks.append(_CODE.replace("@I@", str(i)).replace("@L@", str(8 + i * 3)))
        size, i = size + len(blocks[-1]), i + 1
    return "".join(blocks)


def _render_calls(calls: list[dict[str, Any]]) -> str:
    out = ["<minimax:tool_call>\n"]
    for call in calls:
        out.append(f'<invoke name="{call["name"]}">\n')
        for key, value in call["arguments"].items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            out.append(f'<parameter name="{key}">{text}</parameter>\n')
        out.append("</invoke>\n")
    out.append("</minimax:tool_call>")
    return "".join(out)


def _reasoning(rng: random.Random, opening: str, sentences: int) -> str:
    picked = [rng.choice(_THOUGHTS) for _ in range(sentences)]
    paragraphs = [" ".join(picked[i : i + 3]) for i in range(0, len(picked), 3)]
    return opening + "\n\n".join(["", *paragraphs]) + "\n</think>\n\n"


def plan_reply(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The raw output for a request, and the tool calls it contains (by the module's rules)."""
    messages = [m for m in body.get("messages") or () if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    user = next(
        (message_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    said = DIRECTIVE.sub("", user.split("SIM_SCRIPT:")[0]).strip()
    seed = hashlib.blake2b(f"{said}\0{message_text(last.get('content'))}".encode(), digest_size=8)
    rng = random.Random(seed.digest())
    topic = re.sub(r"[<>\s]+", " ", said).strip()[:60]
    long, parallel = (bool(re.search(rf"\b{w}\b", said, re.I)) for w in ("long", "parallel"))
    tools = [t.get("function", t) for t in body.get("tools") or () if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if last.get("role") == "tool":
        result = message_text(last.get("content"))
        shell = _shell_call(tools, result, rng)  # the output asks for one more command
        if shell is not None:
            return _run(shell, "The output asks me to run one more command.", rng)
        think = _reasoning(rng, "The tool returned its result; I can answer now.", 3)
        return think + f'The tool returned: "{result[:40]}". That settles it.', []
    if not tools or choice == "none" or last.get("role") != "user":
        think = _reasoning(rng, f'The user says: "{topic}".', 12 if long else 3)
        answer = f'Here is my answer about "{topic}". ' + rng.choice(_THOUGHTS)
        if long:
            answer += "\n\n```python\n" + _code(LONG_CHARS - len(think), 0) + "```\n"
        return think + answer, []
    if isinstance(choice, dict):  # a named tool goes first
        named = choice.get("function", {}).get("name")
        tools.sort(key=lambda t: t.get("name") != named)
    shell = _shell_call(tools, said, rng)
    if shell is not None:
        return _run(shell, f'The user says: "{topic}". I will run it.', rng)
    picked = (tools[:3] if len(tools) > 1 else tools * 3) if parallel else tools[:1]
    calls = [{"name": t.get("name", "tool"), "arguments": _arguments(t, rng)} for t in picked]
    names = ", ".join(dict.fromkeys(c["name"] for c in calls))
    think = _reasoning(rng, f'The user says: "{topic}". The {names} tool fits.', 8 if long else 2)
    text = f"I'll use {names} for this.\n\n"
    if long:
        budget = (LONG_CHARS - len(think)) // len(calls)
        for n, call in enumerate(calls):
            args = call["arguments"]
            key = next((k for k, v in args.items() if isinstance(v, str)), None)
            if key is None:
                text = "```python\n" + _code(budget, n * 20) + "```\n" + text
            else:
                args[key] = _code(budget, n * 20)
    return think + text + _render_calls(calls), calls


def token_pieces(raw: str, size: int, chunks: list[int] | None = None) -> list[str]:
    out, pos = [], 0
    for n in chunks or ():
        out.append(raw[pos : pos + n])
        pos += n
    return out + [raw[i : i + size] for i in range(pos, len(raw), size)]


def endless(size: int) -> Iterator[str]:
    text = " ".join(_THOUGHTS) * size  # a multiple of size: every piece is a whole token
    while True:
        yield from (text[i : i + size] for i in range(0, len(text), size))


def render_prompt(body: dict[str, Any]) -> str:
    """The text counted for prompt tokens (see the module docstring)."""
    if isinstance(body.get("prompt"), str):
        return str(body["prompt"])
    if isinstance(body.get("text"), str):
        return str(body["text"])
    parts = [json.dumps(body["tools"], ensure_ascii=False)] if body.get("tools") else []
    for m in body.get("messages") or ():
        if isinstance(m, dict):
            calls = json.dumps(m["tool_calls"], ensure_ascii=False) if m.get("tool_calls") else ""
            parts.append(f"{m.get('role')}: {message_text(m.get('content'))}{calls}")
    return "\n".join(parts)


# ---------------------------------------------------------------------------- directives
