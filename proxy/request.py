"""What every API needs to read a request: checks, images, and the history MiniMax-M2 expects.

A check failing is a 400 naming the field, never a 500: clients do not
retry a 400, and the message says what to change.

Images and documents (BACKEND_IMAGES) are handled here for every API, wherever
they stand (user turns, tool results): MiniMax-M2 reads text only, and a 400 for
an image in the history would break every later request of the session (Claude
Code's Read tool returns a screenshot as an image block in a tool result). With
``text`` each one becomes a short note in its place; with ``pass`` images go to
a multimodal backend as OpenAI ``image_url`` parts.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from . import metrics
from .config import Settings
from .errors import ProxyError

__all__ = [
    "Plan",
    "backend_body",
    "bad",
    "base64_size",
    "call_order",
    "check_temperature",
    "data_url",
    "image_note",
    "image_part",
    "media_note_part",
    "parts_content",
    "positive_int",
    "presented_key",
    "think_content",
    "tool_hint",
]

_enc = msgspec.json.Encoder().encode
log = logging.getLogger("proxy")


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


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{round(n / 1024)} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def image_note(media_type: str | None, size_bytes: int | None, kind: str = "image") -> str:
    """The text an image (or document: ``kind``) becomes for a text-only backend.

    ``image_note("image/png", 49152)`` is ``[image omitted: image/png, 48 KB; this model
    reads text only]``; what is unknown is left out.
    """
    details = [d for d in (media_type, None if size_bytes is None else _size(size_bytes)) if d]
    where = f": {', '.join(details)}" if details else ""
    return f"[{kind} omitted{where}; this model reads text only]"


def base64_size(data: str) -> int:
    """The decoded size of base64 text, without decoding it."""
    return len(data) * 3 // 4 - data[-2:].count("=")


def data_url(url: str) -> tuple[str | None, int | None]:
    """(media type, decoded size) of a ``data:`` URL; of another URL, the type its name implies."""
    if not url.startswith("data:"):
        return mimetypes.guess_type(url.split("?", 1)[0])[0], None
    head, _, data = url[5:].partition(",")
    media_type = head.split(";", 1)[0] or None
    if head.endswith(";base64"):
        return media_type, base64_size(data)
    return media_type, len(data)


def media_note_part(
    media_type: str | None, size_bytes: int | None, kind: str = "image"
) -> dict[str, Any]:
    """An image or document the backend will not get: a text part in its place, logged
    and counted."""
    note = image_note(media_type, size_bytes, kind)
    log.info("%s replaced by a text note: %s", kind, note)
    metrics.count_media(kind, "note")
    return {"type": "text", "text": note}


def image_part(
    part: Mapping[str, Any], settings: Settings, where: str = "image_url"
) -> dict[str, Any]:
    """An OpenAI ``image_url`` part as the backend gets it: the part itself with
    BACKEND_IMAGES=pass, else :func:`media_note_part`.

    Raises:
        ProxyError: 400 when the part has no URL (``where`` names it).
    """
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise bad(f"{where}: an image_url part needs image_url.url, a URL or data: URL")
    if settings.backend_images == "pass":
        metrics.count_media("image", "pass")
        return {
            "type": "image_url",
            "image_url": dict(image) if isinstance(image, Mapping) else {"url": url},
        }
    return media_note_part(*data_url(url))


def parts_content(parts: list[dict[str, Any]], sep: str) -> str | list[dict[str, Any]]:
    """Text parts joined into one string (what the template reads best), or the parts
    as they are when an image is among them."""
    if all(p["type"] == "text" for p in parts):
        return sep.join(p["text"] for p in parts)
    return parts
