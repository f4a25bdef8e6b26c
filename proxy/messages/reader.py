"""Reading an Anthropic Messages request into a backend (OpenAI chat) request.

Claude Code and the Anthropic SDKs send what the Messages API allows:
``system`` as text or blocks, ``role: "system"`` messages in the middle of
``messages`` (merged into the one system turn the template renders),
``thinking`` blocks with any signature (their text becomes the turn's
``<think>``), ``tool_use`` and ``tool_result`` blocks. Tool results go to the
backend in the order of the calls they answer, because the MiniMax-M2
template matches them by position only.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..config import Settings
from ..errors import ProxyError
from ..grammar import Grammar, rules
from ..request import (
    Plan,
    backend_body,
    bad,
    call_order,
    check_temperature,
    forward_options,
    parts_content,
    positive_int,
    tool_hint,
)
from .media import media_part
from .writer import is_own_thinking

__all__ = ["plan_anthropic"]

_enc = msgspec.json.Encoder().encode


def plan_anthropic(body: Any, settings: Settings, backend_model: str | None) -> Plan:
    """Check ``body`` and build the backend request.

    Raises:
        ProxyError: 400 naming what is wrong.
    """
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages: must be a non-empty array")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("stream: must be a boolean")
    temperature = check_temperature(body)
    max_tokens = positive_int(body, "max_tokens")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad("model: must be a string")

    tools = _tools(body.get("tools"))
    required, named, max_calls = _tool_choice(body.get("tool_choice"))
    if named and tools:
        tools = [t for t in tools if t["function"]["name"] == named] or tools
    if max_calls == 0:
        tools = None

    system = [_system_text(body.get("system"))]
    out, foreign = _conversation(messages, system, settings)
    hint = tool_hint(required, named) if tools else None
    system_text = "\n\n".join(s for s in [*system, hint or ""] if s)
    if system_text:
        out.insert(0, {"role": "system", "content": system_text})

    backend = backend_body(out, backend_model or model, temperature, max_tokens, tools)
    # stop_sequences is Anthropic's stop; logprobs have no place in a Messages response.
    forward_options(body, backend, settings, skip=("stop", "logprobs", "top_logprobs"))
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise bad("stop_sequences: must be an array of strings")
        if stops:
            backend["stop"] = stops
    return Plan(
        backend_body=backend,
        stream=stream,
        model=model or "MiniMax-M2",
        tools=tools,
        split=True,
        max_calls=max_calls,
        thinking=settings.anthropic_thinking_blocks,
        stop_sequences=tuple(stops or ()),
        foreign_thinking=foreign,
    )


def _conversation(
    messages: list[Any], system: list[str], settings: Settings
) -> tuple[list[dict[str, Any]], int]:
    """The backend messages of ``messages`` (their system texts added to ``system``), and how
    many thinking blocks were not signed by this proxy (accepted all the same)."""
    out: list[dict[str, Any]] = []
    secret = settings.thinking_signature_secret or ""
    grammar = rules(settings)
    foreign: list[int] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise bad(f"messages.{i}: must be an object")
        role = msg.get("role")
        if role == "system":
            # Claude Code >= 2.1.154 sends these anywhere; the template has one system turn.
            system.append(_system_text(msg.get("content")))
        elif role == "user":
            out += _user(msg.get("content"), i, out, settings)
        elif role == "assistant":
            out.append(_assistant(msg.get("content"), i, secret, foreign, grammar))
        else:
            raise bad(f"messages.{i}.role: must be user or assistant")
    return out, len(foreign)


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise bad("tools: must be an array")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise bad(f"tools.{i}: must be an object with a name")
        kind = tool.get("type")
        if kind not in (None, "custom"):
            continue  # server tools (web_search_…, bash_…) run at Anthropic, not in this model
        schema = tool.get("input_schema")
        if schema is not None and not isinstance(schema, dict):
            raise bad(f"tools.{i}.input_schema: must be an object")
        fn: dict[str, Any] = {"name": tool["name"], "parameters": schema or {"type": "object"}}
        if isinstance(tool.get("description"), str):
            fn["description"] = tool["description"]
        out.append({"type": "function", "function": fn})
    return out or None


def _tool_choice(choice: Any) -> tuple[bool, str | None, int | None]:
    """(required, named tool, max calls)."""
    if choice is None:
        return False, None, None
    if not isinstance(choice, dict):
        raise bad('tool_choice: must be an object such as {"type": "auto"}')
    kind = choice.get("type")
    one = 1 if choice.get("disable_parallel_tool_use") else None
    if kind == "auto":
        return False, None, one
    if kind == "any":
        return True, None, one
    if kind == "none":
        return False, None, 0
    if kind == "tool" and isinstance(choice.get("name"), str):
        return True, choice["name"], one
    raise bad("tool_choice.type: must be auto, any, tool (with a name) or none")


def _system_text(system: Any) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n\n".join(
            b["text"] for b in system if isinstance(b, dict) and isinstance(b.get("text"), str)
        )
    raise bad("system: must be a string or an array of text blocks")


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        return content
    raise bad(f"{where}.content: must be a string or an array of content blocks")


def _unsupported(kind: Any, where: str) -> ProxyError:
    if kind in ("image", "document"):
        return bad(f"{where}: {kind} blocks belong in user turns and tool results")
    return bad(f"{where}: unsupported content block type {_enc(kind).decode()}")


def _user(
    content: Any, i: int, history: list[dict[str, Any]], settings: Settings
) -> list[dict[str, Any]]:
    """A user turn: its tool results (in call order) as tool messages, then its text."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(content, f"messages.{i}")):
        kind = block.get("type")
        where = f"messages.{i}.content.{j}"
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "tool_result":
            results.append(_tool_result(block, where, settings))
        elif kind in ("image", "document"):
            parts.append(media_part(block, settings, where))
        else:
            raise _unsupported(kind, where)
    out: list[dict[str, Any]] = []
    if results:
        order = call_order(history)
        results.sort(key=lambda r: order.get(r["tool_call_id"], len(order)))
        out += results
    if parts or not results:
        out.append({"role": "user", "content": parts_content(parts, "\n\n")})
    return out


def _tool_result(block: dict[str, Any], where: str, settings: Settings) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str):
        raise bad(f"{where}.tool_use_id: must be a string")
    content = block.get("content")
    parts: list[dict[str, Any]] = []
    if isinstance(content, str):
        parts.append({"type": "text", "text": content})
    elif isinstance(content, list):
        for k, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind in ("image", "document"):
                # Claude Code's Read returns a screenshot or a PDF this way.
                parts.append(media_part(part, settings, f"{where}.content.{k}"))
    elif content is not None:
        raise bad(f"{where}.content: must be a string or an array of blocks")
    if block.get("is_error"):
        if parts and parts[0]["type"] == "text":
            parts[0] = {"type": "text", "text": "Error: " + parts[0]["text"]}
        else:
            parts.insert(0, {"type": "text", "text": "Error:"})
    return {"role": "tool", "tool_call_id": call_id, "content": parts_content(parts, "\n")}


def _assistant(
    content: Any, i: int, secret: str, foreign: list[int], grammar: Grammar
) -> dict[str, Any]:
    thinking: list[str] = []
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(_blocks(content, f"messages.{i}")):
        kind = block.get("type")
        if kind == "thinking":
            # Any signature, or none: the text is what the model needs back.
            text_of_block = str(block.get("thinking", ""))
            if not is_own_thinking(secret, text_of_block, block.get("signature")):
                foreign.append(i)
            thinking.append(text_of_block)
        elif kind == "redacted_thinking":
            continue  # encrypted by another provider; nothing this model can read
        elif kind == "text":
            text.append(str(block.get("text", "")))
        elif kind in ("tool_use", "server_tool_use"):
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise bad(f"messages.{i}.content.{j}: tool_use needs an id and a name")
            arguments = block.get("input") if block.get("input") is not None else {}
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": _enc(arguments).decode()},
                }
            )
        else:
            raise _unsupported(kind, f"messages.{i}.content.{j}")
    reasoning = "\n\n".join(t.strip() for t in thinking if t.strip())
    out: dict[str, Any] = {
        "role": "assistant",
        "content": grammar.history(reasoning, "".join(text)),
    }
    if calls:
        out["tool_calls"] = calls
    return out
