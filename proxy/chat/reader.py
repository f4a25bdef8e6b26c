"""Reading an OpenAI chat-completions request into a backend request.

Unknown fields are ignored (clients send many); known ones are checked.
Assistant turns go to the backend with their reasoning as ``<think>…</think>``
(MiniMax-M3: ``<mm:think>…</mm:think>``) before the content, whichever field
the client returned it in, because the template needs it to continue a tool
loop (:mod:`proxy.grammar`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ..config import Settings
from ..grammar import Grammar, rules
from ..request import (
    Plan,
    backend_body,
    bad,
    check_temperature,
    data_url,
    echoed_model,
    forward_options,
    image_part,
    media_note_part,
    offered_tools,
    plain_tool_choice,
    positive_int,
    stream_and_model,
)

__all__ = ["plan_openai", "text_of"]

_enc = msgspec.json.Encoder().encode
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def plan_openai(body: Any, settings: Settings, backend_model: str | None) -> Plan:
    """Check ``body`` and build the backend request.

    Raises:
        ProxyError: 400 naming the field at fault.
    """
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty array", "messages")
    n = body.get("n")
    if n is not None and n != 1:
        raise bad("n must be 1: MiniMax-M2 returns one choice per request", "n")
    stream, model = stream_and_model(body)
    temperature = check_temperature(body)
    max_tokens = positive_int(body, "max_completion_tokens") or positive_int(body, "max_tokens")

    tools = body.get("tools")
    if tools is not None and not _valid_tools(tools):
        raise bad("tools must be an array of {type: function, function: {name, ...}}", "tools")
    tools = tools or None
    choice = _tool_choice(body.get("tool_choice"))
    tools, hint, max_calls = offered_tools(tools, choice, body.get("parallel_tool_calls"))

    history = backend_messages(messages, hint, settings)
    backend = backend_body(history, backend_model or model, temperature, max_tokens, tools)
    forward_options(body, backend, settings)

    split_flag = body.get("reasoning_split")
    extra = body.get("extra_body")
    if split_flag is None and isinstance(extra, dict):
        split_flag = extra.get("reasoning_split")
    split = (bool(split_flag) and settings.reasoning_split) or not settings.thinking_passthrough
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return Plan(
        backend_body=backend,
        stream=stream,
        model=echoed_model(model, settings),
        tools=tools,
        split=split,
        max_calls=max_calls,
        include_usage=include_usage,
    )


def _valid_tools(tools: Any) -> bool:
    if not isinstance(tools, list):
        return False
    for tool in tools:
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return False
    return True


def _tool_choice(choice: Any) -> tuple[bool, str | None, int | None]:
    """(required, named tool, max calls) for a ``tool_choice`` value."""
    plain = plain_tool_choice(choice)
    if plain is not None:
        return plain
    if isinstance(choice, dict):
        fn = choice.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            return True, fn["name"], None
    raise bad("tool_choice must be none, auto, required or {type: function, ...}", "tool_choice")


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text of its parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
        ]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    raise bad("message content must be a string or an array of text parts", "messages")


def _reasoning_of(msg: Mapping[str, Any]) -> str | None:
    details = msg.get("reasoning_details")
    if isinstance(details, list):
        texts = [d for d in details if isinstance(d, dict) and isinstance(d.get("text"), str)]
        if texts:
            texts.sort(key=lambda d: d.get("index", 0) if isinstance(d.get("index"), int) else 0)
            return "".join(d["text"] for d in texts)
    for key in ("reasoning_content", "reasoning"):
        if isinstance(msg.get(key), str):
            return str(msg[key])
    return None


def backend_messages(
    messages: list[Any], hint: str | None, settings: Settings
) -> list[dict[str, Any]]:
    """Messages as the MiniMax-M2 template wants them: one system turn first."""
    system: list[str] = []
    out: list[dict[str, Any]] = []
    grammar = rules(settings)
    for i, msg in enumerate(messages):
        role = msg.get("role") if isinstance(msg, dict) else None
        if not isinstance(role, str) or role not in _ROLES:
            raise bad(f"messages[{i}] must be an object with a valid role", "messages")
        if role in ("system", "developer"):
            # The template renders only a leading system turn; merge them all.
            system.append(text_of(msg.get("content")))
        elif role == "assistant":
            out.append(_assistant(msg, grammar))
        elif role == "function":
            out.append({"role": "tool", "content": text_of(msg.get("content"))})
        else:
            m = {k: v for k, v in msg.items() if k in ("role", "content", "name", "tool_call_id")}
            content = m.get("content")
            if content is None:
                m["content"] = ""
            elif isinstance(content, list):
                m["content"] = _parts(content, settings, f"messages[{i}]")
            elif not isinstance(content, str):
                raise bad(
                    f"messages[{i}].content must be a string or an array of parts", "messages"
                )
            out.append(m)
    if hint:
        system.append(hint)
    if system:
        out.insert(0, {"role": "system", "content": "\n\n".join(s for s in system if s)})
    return out


def _parts(parts: list[Any], settings: Settings, where: str) -> list[Any]:
    """User or tool content parts, images and files as BACKEND_IMAGES says."""
    out = []
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url":
            out.append(image_part(part, settings, f"{where}.content[{j}]"))
        elif kind == "file":  # a PDF or the like: no backend of this model reads one
            file = part.get("file")
            data = file.get("file_data") if isinstance(file, dict) else None
            found = data_url(data) if isinstance(data, str) else (None, None)
            out.append(media_note_part(*found, kind="document"))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            fmt = audio.get("format") if isinstance(audio, dict) else None
            out.append(
                media_note_part(f"audio/{fmt}" if isinstance(fmt, str) else None, None, "audio")
            )
        else:
            out.append(part)
    return out


def _assistant(msg: Mapping[str, Any], grammar: Grammar) -> dict[str, Any]:
    out: dict[str, Any] = {
        "role": "assistant",
        "content": grammar.history(_reasoning_of(msg), text_of(msg.get("content"))),
    }
    calls = msg.get("tool_calls")
    if isinstance(calls, list) and calls:
        out["tool_calls"] = [_call(c) for c in calls]
    return out


def _call(call: Any) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise bad("assistant tool_calls need function.name", "messages")
    args = fn.get("arguments")
    if not isinstance(args, str):
        # The OpenAI schema says a JSON string; backends json-decode it before templating.
        args = _enc(args if args is not None else {}).decode()
    return {
        "id": call.get("id") or "",
        "type": "function",
        "function": {"name": fn["name"], "arguments": args},
    }
