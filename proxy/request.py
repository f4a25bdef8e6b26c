"""What both APIs need to read a request: checks, and the history MiniMax-M2 expects.

A check failing is a 400 naming the field, never a 500: clients do not
retry a 400, and the message says what to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .errors import ProxyError

__all__ = [
    "Plan",
    "backend_body",
    "bad",
    "call_order",
    "check_temperature",
    "positive_int",
    "presented_key",
    "think_content",
    "tool_hint",
]

_enc = msgspec.json.Encoder().encode


@dataclass(slots=True)
class Plan:
    """One request, read: what to send to the backend and how to answer."""

    backend_body: dict[str, Any]
    stream: bool
    model: str  # echoed to the client
    tools: list[Any] | None  # typed by the parser
    split: bool  # reasoning in its own fields (OpenAI) or blocks (Anthropic)
    max_calls: int | None
    include_usage: bool = False
    thinking: bool = True  # Anthropic: emit thinking blocks
    stop_sequences: tuple[str, ...] = ()
    foreign_thinking: int = 0  # Anthropic thinking blocks this proxy did not sign
    extra: Any = None  # what one dialect alone needs to answer (Responses: its echo fields)


def backend_body(
    messages: list[dict[str, Any]],
    model: str | None,
    temperature: float | None,
    max_tokens: int | None,
    tools: list[Any] | None,
) -> dict[str, Any]:
    """The backend request both APIs start from: always streamed, always with usage."""
    body: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if model:
        body["model"] = model
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if tools:
        body["tools"] = tools
    return body


def presented_key(headers: Mapping[str, str]) -> str:
    """The API key a client sent: ``x-api-key``, else ``Authorization: Bearer``, else ''."""
    key = headers.get("x-api-key") or ""
    bearer = headers.get("authorization") or ""
    if not key and bearer[:7].lower() == "bearer ":
        key = bearer[7:].strip()
    return key


def bad(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(400, message, param=param)


def check_temperature(body: Mapping[str, Any]) -> float | None:
    t = body.get("temperature")
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
        raise bad(
            f"temperature must be a number in (0, 1] for MiniMax-M2, got {_enc(t).decode()}",
            "temperature",
        )
    return float(t)


def positive_int(body: Mapping[str, Any], name: str) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise bad(f"{name} must be a positive integer, got {_enc(v).decode()}", name)
    return v


def think_content(reasoning: str | None, text: str) -> str:
    """The assistant content MiniMax-M2's template splits reasoning out of again."""
    if "</think>" in text:
        head = text.split("</think>", 1)[0]
        return text if "<think>" in head else "<think>\n" + text
    reasoning = (reasoning or "").strip()
    if not reasoning:
        return text
    return f"<think>\n{reasoning}\n</think>\n\n{text.lstrip()}"


def tool_hint(required: bool, name: str | None) -> str | None:
    """MiniMax-M2 has no forced tool choice; a system hint is the closest honest thing."""
    if name:
        return f"You must respond by calling the tool `{name}`."
    if required:
        return "You must respond by calling one or more of the available tools."
    return None


def call_order(history: list[dict[str, Any]]) -> dict[str, int]:
    """Call id -> position in the last assistant turn: the MiniMax-M2 template matches
    tool results to calls by position only, so results go back in call order."""
    for msg in reversed(history):
        if msg["role"] == "assistant":
            calls = msg.get("tool_calls") or []
            return {c["id"]: n for n, c in enumerate(calls)}
    return {}
