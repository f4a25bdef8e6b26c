"""The Responses API's other endpoints: input items, and the Conversations API.

Each handler checks the key, finds the caller's scope and answers JSON in the
OpenAI shape; every failure is an OpenAI error body (``RESPONSES.error``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ProxyError
from ..request import presented_key
from ..routes import request_id
from ..service import Proxy
from ..sessions import scope_for
from ..streaming import SSEResponse
from . import RESPONSES, background, chain_items, conversations, stored_response
from .items import page

__all__ = [
    "add_conversation_items",
    "cancel_response",
    "create_conversation",
    "delete_conversation",
    "delete_conversation_item",
    "delete_response",
    "get_conversation",
    "get_conversation_item",
    "get_response",
    "input_items",
    "list_conversation_items",
    "update_conversation",
]

_enc = msgspec.json.Encoder().encode
Handler = Callable[[Request, Proxy, str], Awaitable[Any]]


def api(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route from ``handler(request, proxy, scope)``, which returns the JSON body."""

    @functools.wraps(handler)
    async def route(request: Request) -> Response:
        proxy: Proxy = request.app.state.proxy
        rid = request_id(request)
        try:
            proxy.check_auth(request)
            scope = scope_for(presented_key(request.headers))
            body = await handler(request, proxy, scope)
        except ProxyError as err:
            return RESPONSES.error(err, rid)
        if isinstance(body, (Response, SSEResponse)):
            return body  # type: ignore[return-value]  # an SSEResponse is an ASGI app too
        return Response(_enc(body), media_type="application/json", headers={"x-request-id": rid})

    return route


async def kept(proxy: Proxy, scope: str, response_id: str) -> Any:
    """The kept record of a response.

    Raises:
        ProxyError: 404 when this key has none of that id.
    """
    record = await stored_response(proxy, scope, response_id)
    if record is None:
        raise ProxyError(404, f"No response found with id '{response_id}'.", param="response_id")
    return record


@api
async def get_response(request: Request, proxy: Proxy, scope: str) -> Any:
    """A kept response as it stands; with ``stream=true``, a background run's events
    after ``starting_after``, then the new ones as they come."""
    response_id = request.path_params["response_id"]
    record = await background.settle(proxy, scope, await kept(proxy, scope, response_id))
    if request.query_params.get("stream") not in ("true", "1"):
        return record["response"]
    if not record["response"].get("background"):
        raise ProxyError(
            400,
            "Only responses created with background=true can be streamed again.",
            param="stream",
        )
    after = request.query_params.get("starting_after", "-1")
    if not after.lstrip("-").isdigit() or int(after) < -1:
        raise ProxyError(400, "starting_after must be a sequence number", param="starting_after")
    headers = {"x-request-id": request_id(request)}
    return background.follower(proxy, scope, response_id, int(after), headers)


@api
async def delete_response(request: Request, proxy: Proxy, scope: str) -> Any:
    response_id = request.path_params["response_id"]
    if not await background.forget(proxy, scope, response_id):
        raise ProxyError(404, f"No response found with id '{response_id}'.", param="response_id")
    return {"id": response_id, "object": "response", "deleted": True}


@api
async def cancel_response(request: Request, proxy: Proxy, scope: str) -> Any:
    record = await kept(proxy, scope, request.path_params["response_id"])
    if not record["response"].get("background"):
        raise ProxyError(400, "Only responses created with background=true can be cancelled.")
    return await background.cancel(proxy, scope, record)


@api
async def input_items(request: Request, proxy: Proxy, scope: str) -> Any:
    """What a response was given: the items its ``previous_response_id`` chain carried,
    then its own input."""
    record = await kept(proxy, scope, request.path_params["response_id"])
    carried, _ = await chain_items(proxy, scope, record["response"].get("previous_response_id"))
    return page(carried + record["input"], request.query_params, before=True)


# -- conversations ---------------------------------------------------------------


async def _body(request: Request, proxy: Proxy) -> dict[str, Any]:
    body = await proxy.read_json(request)
    if not isinstance(body, dict):
        raise ProxyError(400, "the request body must be a JSON object")
    return body


@api
async def create_conversation(request: Request, proxy: Proxy, scope: str) -> Any:
    return await conversations.create(proxy, scope, await _body(request, proxy))


@api
async def get_conversation(request: Request, proxy: Proxy, scope: str) -> Any:
    cid = request.path_params["conversation_id"]
    return (await conversations.load(proxy, scope, cid))["conversation"]


@api
async def update_conversation(request: Request, proxy: Proxy, scope: str) -> Any:
    cid = request.path_params["conversation_id"]
    body = await _body(request, proxy)
    metadata = conversations.check_metadata(body.get("metadata"))
    async with conversations.lock(cid):
        record = await conversations.load(proxy, scope, cid)
        record["conversation"]["metadata"] = metadata
        await conversations.save(proxy, scope, record)
    return record["conversation"]


@api
async def delete_conversation(request: Request, proxy: Proxy, scope: str) -> Any:
    cid = request.path_params["conversation_id"]
    if not await conversations.delete(proxy, scope, cid):
        raise ProxyError(404, f"Conversation with id '{cid}' not found.", param="conversation_id")
    return {"id": cid, "object": "conversation.deleted", "deleted": True}


@api
async def list_conversation_items(request: Request, proxy: Proxy, scope: str) -> Any:
    record = await conversations.load(proxy, scope, request.path_params["conversation_id"])
    return page(record["items"], request.query_params, before=False)


@api
async def add_conversation_items(request: Request, proxy: Proxy, scope: str) -> Any:
    cid = request.path_params["conversation_id"]
    body = await _body(request, proxy)
    items = conversations.check_items(body.get("items"), "items")
    await conversations.add_items(proxy, scope, cid, items, "conversation_id")
    return page(items, {"order": "asc", "limit": "100"}, before=False)


def _find(record: Any, item_id: str) -> int:
    for n, item in enumerate(record["items"]):
        if item.get("id") == item_id:
            return n
    raise ProxyError(404, f"Item with id '{item_id}' not found.", param="item_id")


@api
async def get_conversation_item(request: Request, proxy: Proxy, scope: str) -> Any:
    record = await conversations.load(proxy, scope, request.path_params["conversation_id"])
    return record["items"][_find(record, request.path_params["item_id"])]


@api
async def delete_conversation_item(request: Request, proxy: Proxy, scope: str) -> Any:
    cid = request.path_params["conversation_id"]
    async with conversations.lock(cid):
        record = await conversations.load(proxy, scope, cid)
        del record["items"][_find(record, request.path_params["item_id"])]
        await conversations.save(proxy, scope, record)
    return record["conversation"]
