"""Kept items in OpenAI's shapes: ids for every item, and the cursor-paged list.

Input items arrive loosely (no ``type``, no ``id``, content as a string);
``GET /v1/responses/{id}/input_items`` and the Conversations API hand them
back as the openai SDK's ``ResponseItem``/``ConversationItem`` types want them:
each with an ``id`` (the client's, or one made here once, when kept), a
``type``, content as parts and a ``status``. A normalised item is still a
valid input item, so a kept history can be sent to the model as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ProxyError
from ..shape import new_id

__all__ = ["normalised", "page"]

_PREFIX = {
    "message": "msg_",
    "reasoning": "rs_",
    "function_call": "fc_",
    "function_call_output": "fco_",
    "custom_tool_call": "ctc_",
    "custom_tool_call_output": "ctco_",
}
_MAX_LIMIT = 100


def normalised(items: list[Any]) -> list[dict[str, Any]]:
    """``items`` as kept: each an object with a type, an id and a status."""
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type") or ("message" if "role" in item else "item")
        whole = {**item, "type": kind}
        if not isinstance(whole.get("id"), str) or not whole["id"]:
            whole["id"] = new_id(_PREFIX.get(kind, "item_"))
        if kind == "message":
            whole["content"] = _parts(item.get("content"), item.get("role"))
        if kind != "item_reference":
            whole.setdefault("status", "completed")
        out.append(whole)
    return out


def _parts(content: Any, role: Any) -> Any:
    kind = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        content = [{"type": kind, "text": content}]
    if not isinstance(content, list):
        return []
    if role == "assistant":  # the SDK's output_text has annotations
        content = [
            {"annotations": [], **p} if isinstance(p, dict) and p.get("type") == kind else p
            for p in content
        ]
    return content


def page(items: list[dict[str, Any]], query: Mapping[str, str], before: bool) -> dict[str, Any]:
    """One page of ``items`` (oldest first) for a list request's query, in OpenAI's shape.

    ``after``/``before`` are item ids, ``order`` ``asc`` or ``desc`` (the default),
    ``limit`` 1 to 100 (20); ``include`` is accepted: kept items already hold all
    they have. ``before`` says whether this list takes a ``before``.

    Raises:
        ProxyError: 400 naming the parameter at fault.
    """
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ProxyError(400, 'order must be "asc" or "desc"', param="order")
    raw_limit = query.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= _MAX_LIMIT:
        raise ProxyError(400, f"limit must be an integer from 1 to {_MAX_LIMIT}", param="limit")
    ordered = items if order == "asc" else items[::-1]
    start, end = 0, len(ordered)
    ids = [i.get("id") for i in ordered]
    for name in ("after", "before") if before else ("after",):
        cursor = query.get(name)
        if cursor is None:
            continue
        if cursor not in ids:
            raise ProxyError(400, f"No item with id '{cursor}' in this list.", param=name)
        if name == "after":
            start = max(start, ids.index(cursor) + 1)
        else:
            end = min(end, ids.index(cursor))
    data = ordered[start:end][: int(raw_limit)]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + len(data) < end,
    }
