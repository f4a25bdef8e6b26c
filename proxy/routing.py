"""The routing key: which conversation a backend request belongs to, for a router in front
of several backend replicas.

A replica that already holds a conversation's prompt in its prefix (KV) cache answers the
next turn far sooner, so a router (smg ``--policy consistent_hashing``, vllm-router, Envoy)
should send every turn of a conversation to the same replica. The proxy knows the
conversation; it sends a hash of it in ``BACKEND_ROUTING_HEADER``. The first hint that
applies names the conversation:

1. the proxy's session id (``X-Session-Id``, ``conversation_id``);
2. Claude Code's ``x-claude-code-session-id`` header;
3. ``prompt_cache_key`` (Codex and qwen-code on Responses, OpenHands on chat);
4. the root of a ``previous_response_id`` chain (the key its first turn was sent with,
   kept with the stored response: ``Plan.route``);
5. ``user`` (OpenAI) or ``metadata.user_id`` (Anthropic);
6. the first user message of the conversation, with the API key's name.

Each is hashed with the API key's name and its kind, so nothing the client sent leaves
the proxy and two keys' conversations never share a routing key by accident. The same
hint gives the same key on every API. Cost: one short hash per request (the first user
message, at most its first 16 KB, only when nothing else applies).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from .config import Settings
from .request import Plan
from .sessions import session_id

__all__ = ["conversation_hint", "route_plan", "routing_key"]


def route_plan(plan: Plan, request: Request, body: Any, key_name: str, settings: Settings) -> None:
    """Set ``plan.route`` when BACKEND_ROUTING_HEADER is on (after ``Dialect.prepare``)."""
    if settings.backend_routing_header:
        hint = conversation_hint(request.headers, body, session_id(request, body))
        plan.route = routing_key(key_name, hint, plan.route, plan.backend_body["messages"])


def routing_key(
    key_name: str,
    hint: tuple[str, str] | None,
    route: str | None,
    messages: list[dict[str, Any]],
) -> str:
    """The hex routing key of one backend request.

    Args:
        key_name: the caller's API key name (``-`` with auth off).
        hint: what :func:`conversation_hint` found, or None.
        route: the key a ``previous_response_id`` chain's first turn was sent with.
        messages: the backend messages, for the last resort (the first user message).
    """
    if hint is not None and hint[0] in _BEFORE_CHAIN:
        return _digest(key_name, *hint)
    if route is not None:
        return route
    if hint is not None:
        return _digest(key_name, *hint)
    first = next((m.get("content") for m in messages if m.get("role") == "user"), None)
    return _digest(key_name, "first", _head(first))


_BEFORE_CHAIN = frozenset({"session", "claude-code", "prompt-cache"})
# The first user message is hashed up to this many characters (and its length): a pasted
# file or an image must not make every request of the conversation pay for hashing it.
_HEAD = 16_384


def _head(content: Any) -> str:
    """The start of a message's content (text, or the text and URLs of its parts)."""
    if isinstance(content, str):
        return f"{len(content)}\0{content[:_HEAD]}"
    pieces: list[str] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        value = part.get("text")
        image = part.get("image_url")
        if value is None and image is not None:
            value = image.get("url") if isinstance(image, dict) else image
        if isinstance(value, str):
            pieces.append(f"{len(value)}\0{value[:_HEAD]}")
    return "\0".join(pieces)[: 4 * _HEAD]


def conversation_hint(
    headers: Mapping[str, str], body: Any, session: str | None
) -> tuple[str, str] | None:
    """(kind, value) of the strongest hint the request carries, or None."""
    if session:
        return "session", session
    found = headers.get("x-claude-code-session-id")
    if found:
        return "claude-code", found
    if not isinstance(body, dict):
        return None
    found = body.get("prompt_cache_key")
    if isinstance(found, str) and found:
        return "prompt-cache", found
    found = body.get("user")
    if isinstance(found, str) and found:
        return "user", found
    metadata = body.get("metadata")
    found = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(found, str) and found:
        return "user", found
    return None


def _digest(key_name: str, kind: str, value: str) -> str:
    data = f"{key_name}\0{kind}\0{value}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16, person=b"proxy-route-key").hexdigest()
