"""The Starlette application: the route table, the lifespan and the error handlers.

The handlers live in ``routes.py``; each API's reading and writing lives in
its own package (``chat``, ``messages``, ``responses``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import routes as r
from .config import Settings
from .errors import ProxyError
from .responses import background
from .responses import endpoints as e
from .service import Proxy
from .streaming import RAW_SEND

__all__ = ["create_app"]

log = logging.getLogger("proxy")
_CORS_HEADERS = [
    "authorization",
    "x-api-key",
    "content-type",
    "anthropic-version",
    "anthropic-beta",
    "x-request-id",
    "x-session-id",
]
ROUTES = [
    Route("/v1/chat/completions", r.chat_completions, methods=["POST"]),
    Route("/v1/messages", r.messages, methods=["POST"]),
    Route("/anthropic/v1/messages", r.messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", r.count_tokens, methods=["POST"]),
    Route("/anthropic/v1/messages/count_tokens", r.count_tokens, methods=["POST"]),
    Route("/v1/responses", r.responses, methods=["POST"]),
    Route("/v1/responses/{response_id}", e.get_response, methods=["GET"]),
    Route("/v1/responses/{response_id}/cancel", e.cancel_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", e.delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/input_items", e.input_items, methods=["GET"]),
    Route("/v1/conversations", e.create_conversation, methods=["POST"]),
    Route("/v1/conversations/{conversation_id}", e.get_conversation, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}", e.update_conversation, methods=["POST"]),
    Route("/v1/conversations/{conversation_id}", e.delete_conversation, methods=["DELETE"]),
    Route("/v1/conversations/{conversation_id}/items", e.list_conversation_items, methods=["GET"]),
    Route("/v1/conversations/{conversation_id}/items", e.add_conversation_items, methods=["POST"]),
    Route(
        "/v1/conversations/{conversation_id}/items/{item_id}",
        e.get_conversation_item,
        methods=["GET"],
    ),
    Route(
        "/v1/conversations/{conversation_id}/items/{item_id}",
        e.delete_conversation_item,
        methods=["DELETE"],
    ),
    Route("/v1/models", r.models, methods=["GET"]),
    Route("/", r.ok, methods=["GET", "HEAD"]),
    Route("/api/event_logging/batch", r.ok, methods=["POST"]),
    Route("/health", r.health, methods=["GET"]),
    Route("/ready", r.ready, methods=["GET"]),
    Route("/metrics", r.metrics_route, methods=["GET"]),
]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err = ProxyError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")
    return r.dialect_error(request, err)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    return r.dialect_error(request, ProxyError(500, "internal proxy error; see the proxy log"))


class App(Starlette):
    """Starlette, with the server's own ``send`` kept in the scope: a streamed response
    sends its body through it, past the wrappers every other message goes through."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope[RAW_SEND] = send
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> Starlette:
    """Build the ASGI app; misconfiguration raises here, at startup."""
    proxy = Proxy(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await proxy.start()
        try:
            yield
        finally:
            await background.runs_of(proxy).stop()  # marked failed while the store is open
            await proxy.stop()

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: _http_error,
        Exception: _server_error,
    }
    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=_CORS_HEADERS,
                expose_headers=["x-request-id", "request-id", "retry-after"],
            )
        )
    app = App(routes=ROUTES, lifespan=lifespan, exception_handlers=handlers, middleware=middleware)
    app.state.proxy = proxy
    return app
