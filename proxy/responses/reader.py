"""Reading a Responses API request (``POST /v1/responses``) into a backend chat request.

Codex CLI and the OpenAI Agents SDK send the whole history as ``input``
items, and loosely: items without ``type``, ``id`` or ``status``, content as
a string or parts, tools the backend cannot run. What this model can use is
kept, what it cannot is dropped with a debug line, and only input that makes
no sense at all is a 400. The history goes to the backend as the MiniMax-M2
template wants it: one leading system turn, each run of reasoning, message
and call items merged into one assistant turn with its ``<think>``, and
tool results in call order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..config import Settings
from ..grammar import Grammar, rules
from ..request import (
    Plan,
    backend_body,
    bad,
    call_order,
    check_temperature,
    data_url,
    echoed_model,
    forward_options,
    image_part,
    media_note_part,
    offered_tools,
    parts_content,
    plain_tool_choice,
    positive_int,
    stream_and_model,
)
from .carry import read_reasoning
from .conversations import conversation_id

__all__ = ["Echo", "history_messages", "plan_responses"]

log = logging.getLogger("proxy")
_enc = msgspec.json.Encoder().encode
_CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "the tool's whole input"}},
    "required": ["input"],
}
_CALL_ITEMS = frozenset({"function_call", "custom_tool_call", "local_shell_call"})
_OUTPUT_ITEMS = frozenset(
    {"function_call_output", "custom_tool_call_output", "local_shell_call_output"}
)
# The response object repeats these request fields back as they were sent.
_ECHOED = (
    "instructions",
    "max_output_tokens",
    "metadata",
    "previous_response_id",
    "prompt_cache_key",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "temperature",
    "text",
    "top_p",
    "truncation",
    "user",
)


@dataclass(slots=True)
class Echo:
    """What the answer needs besides the ops: echoed fields and how to name calls."""

    fields: dict[str, Any]  # request fields the response object repeats
    namespaces: dict[str, tuple[str, str]] = field(default_factory=dict)  # flat -> (ns, name)
    custom: frozenset[str] = frozenset()  # names of custom (freeform) tools
    encrypted: bool = False  # include asks for reasoning.encrypted_content
    store: bool = True
    previous: str | None = None  # previous_response_id
    conversation: str | None = None  # the conversation's id
    background: bool = False
    items: list[Any] = field(default_factory=list)  # this request's input items
    instructions: str | None = None
    hint: str | None = None  # the system hint for a required or named tool choice


def plan_responses(body: Any, settings: Settings, backend_model: str | None) -> Plan:
    """Check ``body`` and build the backend request from its own ``input``.

    A ``previous_response_id`` is resolved later (``Responses.prepare``), from the store.

    Raises:
        ProxyError: 400 naming the field at fault.
    """
    if not isinstance(body, dict):
        raise bad("the request body must be a JSON object")
    items = _input_items(body.get("input"))
    stream, model = stream_and_model(body)
    temperature = check_temperature(body)
    max_tokens = positive_int(body, "max_output_tokens")
    instructions = _instructions(body.get("instructions"))
    previous, conversation, background = _state(body)
    include = body.get("include")
    if include is not None and not isinstance(include, list):
        raise bad("include must be an array of strings", "include")

    tools, namespaces, custom, hint, max_calls = _offered(body)
    echo = Echo(
        fields={k: body.get(k) for k in _ECHOED},
        namespaces=namespaces,
        custom=custom,
        encrypted="reasoning.encrypted_content" in (include or ()),
        store=body.get("store") is not False,
        previous=previous,
        conversation=conversation,
        background=background,
        items=items,
        instructions=instructions,
        hint=hint,
    )
    echo.fields["tools"] = body.get("tools") or []
    echo.fields["tool_choice"] = body.get("tool_choice") or "auto"
    echo.fields["parallel_tool_calls"] = body.get("parallel_tool_calls") is not False
    thread = {"id": conversation} if conversation else None
    echo.fields.update(store=echo.store, background=background, conversation=thread)
    messages = history_messages(items, echo, settings)
    backend = backend_body(messages, backend_model or model, temperature, max_tokens, tools)
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        backend["response_format"] = response_format
    # top_p and the backend's own options as on chat; no place for logprobs in these items.
    forward_options(body, backend, settings, skip=("logprobs", "top_logprobs"))
    return Plan(
        backend_body=backend,
        stream=stream,
        model=echoed_model(model, settings),
        tools=tools,
        split=True,
        max_calls=max_calls,
        extra=echo,
    )


def _state(body: dict[str, Any]) -> tuple[str | None, str | None, bool]:
    """(previous_response_id, the conversation's id, background) of a request, checked."""
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise bad("previous_response_id must be a string", "previous_response_id")
    conversation = conversation_id(body.get("conversation"))
    if conversation is not None and previous is not None:
        raise bad("previous_response_id and conversation cannot be used together", "conversation")
    background = body.get("background") is True
    if background and body.get("store") is False:
        raise bad("background responses must be stored: store cannot be false", "background")
    return previous, conversation, background


def _input_items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        return value
    raise bad("input must be a string or an array of input items", "input")


def _tools(
    tools: Any,
) -> tuple[list[dict[str, Any]] | None, dict[str, tuple[str, str]], frozenset[str]]:
    """(chat tools, flat name -> (namespace, name), custom tool names)."""
    if tools is None:
        return None, {}, frozenset()
    if not isinstance(tools, list):
        raise bad("tools must be an array", "tools")
    out: list[dict[str, Any]] = []
    namespaces: dict[str, tuple[str, str]] = {}
    custom: set[str] = set()
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            out.append(_function(tool, f"tools[{i}]"))
        elif kind == "namespace":
            ns = tool.get("name")
            inner = tool.get("tools")
            if not isinstance(ns, str) or not isinstance(inner, list):
                raise bad(f"tools[{i}]: a namespace needs a name and tools", "tools")
            for j, member in enumerate(inner):
                if not isinstance(member, dict) or member.get("type", "function") != "function":
                    log.debug("dropped a non-function tool in namespace %s", ns)
                    continue
                fn = _function(member, f"tools[{i}].tools[{j}]", prefix=ns + "__")
                namespaces[fn["function"]["name"]] = (ns, member["name"])
                out.append(fn)
        elif kind == "custom":
            name = tool.get("name")
            if not isinstance(name, str):
                raise bad(f"tools[{i}]: a custom tool needs a name", "tools")
            desc = tool.get("description") if isinstance(tool.get("description"), str) else ""
            fmt = tool.get("format")
            if isinstance(fmt, dict) and isinstance(fmt.get("definition"), str):
                # The grammar is what tells the model how to write the input.
                desc += f"\n\nThe input follows this {fmt.get('syntax', '')} grammar:\n"
                desc += fmt["definition"]
            fn = {"name": name, "description": desc.strip(), "parameters": _CUSTOM_PARAMETERS}
            out.append({"type": "function", "function": fn})
            custom.add(name)
        elif isinstance(kind, str):
            # Hosted tools (web_search, file_search, ...) run at OpenAI, not in this model.
            log.debug("dropped the hosted tool %s: the backend cannot run it", kind)
        else:
            raise bad(f"tools[{i}] must be an object with a type", "tools")
    return out or None, namespaces, frozenset(custom)


def _function(tool: dict[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    if "name" not in tool and isinstance(tool.get("function"), dict):
        tool = tool["function"]  # the chat-completions shape, which the openai SDK also allows
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise bad(f"{where}: a function tool needs a name", "tools")
    params = tool.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise bad(f"{where}.parameters must be an object", "tools")
    fn: dict[str, Any] = {"name": prefix + name, "parameters": params or {"type": "object"}}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> tuple[bool, str | None, int | None]:
    """(required, named tool, max calls) for a Responses ``tool_choice``."""
    plain = plain_tool_choice(choice)
    if plain is not None:
        return plain
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("function", "custom") and isinstance(choice.get("name"), str):
            return True, choice["name"], None
        if kind == "allowed_tools":
            return choice.get("mode") == "required", None, None
        if isinstance(kind, str):
            log.debug("tool_choice %s names a hosted tool; treated as auto", kind)
            return False, None, None
    raise bad(
        'tool_choice must be "none", "auto", "required" or {"type": "function", "name": ...}',
        "tool_choice",
    )


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    return None


class _Assistant:
    """A run of reasoning, message and call items: one assistant turn for the template."""

    __slots__ = ("calls", "reasoning", "text")

    def __init__(self) -> None:
        self.reasoning: list[str] = []
        self.text: list[str] = []
        self.calls: list[dict[str, Any]] = []

    def message(self, grammar: Grammar) -> dict[str, Any]:
        reasoning = "\n\n".join(r.strip() for r in self.reasoning if r.strip())
        out: dict[str, Any] = {
            "role": "assistant",
            "content": grammar.history(reasoning, "".join(self.text)),
        }
        if self.calls:
            out["tool_calls"] = self.calls
        return out


_Offered = tuple[
    list[dict[str, Any]] | None, dict[str, tuple[str, str]], frozenset[str], str | None, int | None
]


def _offered(body: dict[str, Any]) -> _Offered:
    """The tools offered to the model (after ``tool_choice``), their namespaces and custom
    tools, the system hint ``tool_choice`` asks for, and how many calls may be made."""
    tools, namespaces, custom = _tools(body.get("tools"))
    choice = _tool_choice(body.get("tool_choice"))
    tools, hint, max_calls = offered_tools(tools, choice, body.get("parallel_tool_calls"))
    return tools, namespaces, custom, hint, max_calls


def _instructions(instructions: Any) -> str | None:
    if isinstance(instructions, list):  # a prompt's instructions come back as message items
        instructions = "\n\n".join(
            _text(i.get("content"), "instructions") for i in instructions if isinstance(i, dict)
        )
    if instructions is not None and not isinstance(instructions, str):
        raise bad("instructions must be a string", "instructions")
    return instructions


def history_messages(items: list[Any], echo: Echo, settings: Settings) -> list[dict[str, Any]]:
    """Input items as chat messages: the one system turn first, then the conversation."""
    secret = settings.thinking_signature_secret or ""
    grammar = rules(settings)
    system = [echo.instructions or ""]
    out: list[dict[str, Any]] = []
    turn: _Assistant | None = None
    results: list[dict[str, Any]] = []  # tool results waiting to be put in call order
    leading = True
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise bad(f"input[{i}] must be an object", "input")
        kind = item.get("type") or ("message" if "role" in item else None)
        role = item.get("role") if kind == "message" else None
        if kind in _CALL_ITEMS or kind == "reasoning" or role == "assistant":
            if results:
                out += _in_call_order(results, out)
            if turn is None:
                turn = _Assistant()
            _add_to_turn(turn, kind, item, i, echo, secret)
        elif kind in _OUTPUT_ITEMS:
            if turn is not None:
                out.append(turn.message(grammar))
                turn = None
            results.append(_tool_result(item, i, settings))
        elif kind == "message":
            if turn is not None:
                out.append(turn.message(grammar))
                turn = None
            if results:
                out += _in_call_order(results, out)
            where = f"input[{i}].content"
            if role in ("system", "developer"):
                text = _text(item.get("content"), where)
                if leading:
                    system.append(text)
                    continue
                # The template renders only the first system turn: later ones go as user
                # turns marked as such, or Codex's mid-session settings would be lost.
                content: str | list[dict[str, Any]] = f"<{role}_message>\n{text}\n</{role}_message>"
            elif role == "user":
                content = _content(item.get("content"), where, settings)
            else:
                raise bad(f"input[{i}].role must be user, assistant, system or developer", "input")
            out.append({"role": "user", "content": content})
        else:
            log.debug("skipped input[%d] of type %r: nothing this model can use", i, kind)
            continue
        leading = False
    if turn is not None:
        out.append(turn.message(grammar))
    if results:
        out += _in_call_order(results, out)
    if echo.hint:
        system.append(echo.hint)
    system_text = "\n\n".join(s for s in system if s)
    if system_text:
        out.insert(0, {"role": "system", "content": system_text})
    return out


def _add_to_turn(
    turn: _Assistant, kind: Any, item: dict[str, Any], i: int, echo: Echo, secret: str
) -> None:
    where = f"input[{i}]"
    if kind == "reasoning":
        text = read_reasoning(item, secret)
        if text:
            turn.reasoning.append(text)
    elif kind in _CALL_ITEMS:
        call_id = item.get("call_id") or item.get("id")
        if not isinstance(call_id, str):
            raise bad(f"{where}: a {kind} item needs a call_id", "input")
        if kind == "function_call":
            name, arguments = item.get("name"), item.get("arguments")
            if isinstance(item.get("namespace"), str) and isinstance(name, str):
                name = f"{item['namespace']}__{name}"
            if not isinstance(arguments, str):
                arguments = _enc(arguments if arguments is not None else {}).decode()
        elif kind == "custom_tool_call":
            name = item.get("name")
            arguments = _enc({"input": str(item.get("input") or "")}).decode()
        else:
            name, arguments = "local_shell", _enc(item.get("action") or {}).decode()
        if not isinstance(name, str):
            raise bad(f"{where}: a {kind} item needs a name", "input")
        fn = {"name": name, "arguments": arguments}
        turn.calls.append({"id": call_id, "type": "function", "function": fn})
    else:
        turn.text.append(_text(item.get("content"), f"{where}.content"))


def _tool_result(item: dict[str, Any], i: int, settings: Settings) -> dict[str, Any]:
    call_id = item.get("call_id")
    if not isinstance(call_id, str):
        raise bad(f"input[{i}]: a {item.get('type')} item needs a call_id", "input")
    # Codex's view_image answers with an input_image part in the output.
    content = _content(item.get("output"), f"input[{i}].output", settings)
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _in_call_order(results: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[Any]:
    order = call_order(history)
    ordered = sorted(results, key=lambda r: order.get(r["tool_call_id"], len(order)))
    results.clear()
    return ordered


def _parts(content: Any, where: str, settings: Settings | None) -> list[dict[str, Any]]:
    """Content as OpenAI chat parts. An image is an ``image_url`` part or a text note
    (BACKEND_IMAGES; always a note without ``settings``), a file a note."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad(f"{where} must be a string or an array of content parts", "input")
    parts: list[dict[str, Any]] = []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text", "refusal", "summary_text"):
            text = part.get("text", part.get("refusal"))
            if isinstance(text, str):
                parts.append({"type": "text", "text": text})
        elif kind == "input_image":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str) and url and settings is not None:
                parts.append(image_part({"image_url": {"url": url}}, settings, f"{where}[{k}]"))
            else:  # a file_id, or no URL: nothing this proxy can fetch
                parts.append(media_note_part(*data_url(url if isinstance(url, str) else "")))
        elif kind == "input_file":
            data = part.get("file_data") or part.get("file_url") or part.get("filename") or ""
            parts.append(media_note_part(*data_url(str(data)), kind="document"))
    return parts


def _content(content: Any, where: str, settings: Settings) -> str | list[dict[str, Any]]:
    return parts_content(_parts(content, where, settings), "")


def _text(content: Any, where: str) -> str:
    """The text of a content value: a string, or its parts (an image becomes a note)."""
    return "".join(p["text"] for p in _parts(content, where, None))
