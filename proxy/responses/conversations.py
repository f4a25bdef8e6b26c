"""Conversations: a kept list of items that ``responses.create(conversation=…)`` extends.

A conversation is one record in the records store (memory, SQLite or Redis, as
kept responses), scoped by API key: ``{"conversation": {id, object,
created_at, metadata}, "items": [...]}``. A response on it sees the items
before its own input, and its input and output are appended when it ends,
reasoning items included, so the thinking comes back on the next turn as
with ``previous_response_id``. Changes to one conversation are serialised
within a process; two replicas writing the same conversation at the same
instant can lose one write (one record, read and written whole).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import ProxyError
from ..shape import new_id
from .items import normalised

if TYPE_CHECKING:
    from ..service import Proxy

__all__ = [
    "add_items",
    "check_items",
    "check_metadata",
    "conversation_id",
    "create",
    "delete",
    "load",
    "lock",
    "save",
    "store_call",
]

log = logging.getLogger("proxy")
T = TypeVar("T")
_KEY = "conversation:"
_MAX_ADD = 20  # items per create or add call, as OpenAI
_LOCKS = [asyncio.Lock() for _ in range(64)]  # bounded: ids share a lock by hash


def lock(cid: str) -> asyncio.Lock:
    return _LOCKS[zlib.crc32(cid.encode()) % len(_LOCKS)]


async def store_call(call: Awaitable[T]) -> T:
    """The store's answer; 503 when it does not answer."""
    try:
        return await call
    except Exception as exc:
        log.warning("the records store failed: %s", exc)
        raise ProxyError(
            503, "the response store is unavailable; try again", code="store_unavailable"
        ) from None


def conversation_id(value: Any) -> str | None:
    """The id in a ``conversation`` field: a string or ``{"id": …}``.

    Raises:
        ProxyError: 400 for anything else.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        raise ProxyError(400, 'conversation must be an id or {"id": …}', param="conversation")
    return value


def check_metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > 16
        or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
            for k, v in value.items()
        )
    ):
        raise ProxyError(
            400, "metadata must map at most 16 keys (64 chars) to strings (512)", param="metadata"
        )
    return dict(value)


def check_items(value: Any, param: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(i, dict) for i in value):
        raise ProxyError(400, f"{param} must be an array of input items", param=param)
    if len(value) > _MAX_ADD:
        raise ProxyError(400, f"at most {_MAX_ADD} items can be added at a time", param=param)
    return normalised(value)


async def load(proxy: Proxy, scope: str, cid: str, param: str = "conversation_id") -> Any:
    """The conversation's record.

    Raises:
        ProxyError: 404 when there is none for this key.
    """
    record = await store_call(proxy.records.get_record(scope, _KEY + cid))
    if record is None:
        raise ProxyError(404, f"Conversation with id '{cid}' not found.", param=param)
    return record


async def save(proxy: Proxy, scope: str, record: Any) -> None:
    cid = record["conversation"]["id"]
    ttl = proxy.settings.responses_ttl_seconds
    await store_call(proxy.records.put_record(scope, _KEY + cid, record, ttl))


async def delete(proxy: Proxy, scope: str, cid: str) -> bool:
    return await store_call(proxy.records.delete_record(scope, _KEY + cid))


async def create(proxy: Proxy, scope: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ProxyError(400, "the request body must be a JSON object")
    conversation = {
        "id": new_id("conv_"),
        "object": "conversation",
        "created_at": int(time.time()),
        "metadata": check_metadata(body.get("metadata")),
    }
    record = {"conversation": conversation, "items": check_items(body.get("items"), "items")}
    await save(proxy, scope, record)
    return conversation


async def add_items(proxy: Proxy, scope: str, cid: str, items: list[Any], param: str) -> None:
    """Append kept (normalised) items to the conversation."""
    async with lock(cid):
        record = await load(proxy, scope, cid, param)
        record["items"] += items
        await save(proxy, scope, record)
