"""The Starlette application: routes, and how one request becomes one response.

A request is read and checked, repaired from the session store if enabled,
and the backend request is opened: a backend that refuses gets its error
mapped before any byte goes to the client. Then the one driver loop of
``service.pump`` runs, and a dialect writer turns its ops into bytes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import metrics
from .config import Settings
from .dialects import ANTHROPIC, OPENAI, Dialect, StreamWriter
from .errors import ProxyError
from .logs import REQUEST_ID
from .metrics import Tracker
from .service import Proxy, pump
from .shape import Op, Shaper, new_id
from .store import StoredTurn
from .streaming import Send, SSEResponse, unless_client_leaves
from .turn import Turn

__all__ = ["create_app"]

log = logging.getLogger("proxy")
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_enc = msgspec.json.Encoder().encode
_CORS_HEADERS = [
    "authorization",
    "x-api-key",
    "content-type",
    "anthropic-version",
    "anthropic-beta",
    "x-request-id",
    "x-session-id",
]


def request_id(request: Request) -> str:
    rid = request.headers.get("x-request-id")
    return rid if rid and len(rid) <= 128 and rid.isprintable() else new_id("req_")


def _id_headers(dialect: Dialect, rid: str) -> dict[str, str]:
    if dialect is ANTHROPIC:
        return {"x-request-id": rid, "request-id": rid}
    return {"x-request-id": rid}


def _summary(turn: Turn, shaper: Shaper) -> dict[str, Any]:
    return {
        "finish_reason": turn.finish_reason,
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
        "reasoning_tokens": turn.reasoning_deltas,
        "tool_calls": shaper.calls,
        "parse_fallbacks": turn.fallbacks,
    }


def _error_info(err: ProxyError) -> dict[str, Any]:
    return {"error": err.code or err.message}


def _failed(tracker: Tracker | None, err: ProxyError, backend: bool) -> None:
    if backend:
        metrics.BACKEND_ERRORS.labels(err.code or "backend").inc()
    if tracker is not None:
        tracker.done(err.status, _error_info(err))


def create_app(settings: Settings) -> Starlette:
    """Build the ASGI app; misconfiguration raises here, at startup."""
    proxy = Proxy(settings)

    async def respond(request: Request, dialect: Dialect) -> Response:
        rid = request_id(request)
        REQUEST_ID.set(rid)
        tracker: Tracker | None = None
        sessions = proxy.sessions
        save = None
        try:
            proxy.check_auth(request)
            body = await proxy.read_json(request)
            plan = dialect.plan(body, settings, await proxy.model())
            tracker = Tracker(request.url.path, dialect.name, plan.stream, rid)
            if plan.foreign_thinking:
                # Edited or from another provider: accepted, as the text is what matters.
                log.info("%d thinking block(s) not signed by this proxy", plan.foreign_thinking)
            if sessions is not None:
                ctx = sessions.context(request, body)
                await sessions.repair(ctx, plan.backend_body["messages"])
                save = functools.partial(sessions.save, ctx)
            resp = await proxy.open(plan)
        except ProxyError as err:
            _failed(tracker, err, backend=bool(err.code and err.code.startswith("backend_")))
            return dialect.error(err, rid)
        turn = proxy.turn(plan, rid, dialect.name)
        shaper = dialect.shaper(plan)
        if plan.stream:
            writer = dialect.stream(plan, settings)
            body = _stream_body(proxy, resp, turn, shaper, writer, tracker, save)
            headers = {**_SSE_HEADERS, **_id_headers(dialect, rid)}
            return SSEResponse(body, headers, dialect.ping, settings.ping_interval)  # type: ignore[return-value]
        result = dialect.result(plan, settings)

        async def collect(ops: list[Op]) -> None:
            result.ops(ops)

        try:
            if not await unless_client_leaves(
                request.receive, pump(resp, turn, shaper, collect, save)
            ):
                tracker.done(499)
                return Response(status_code=499)  # nobody is there to read it
        except ProxyError as err:
            _failed(tracker, err, backend=True)  # everything the pump raises is the backend's
            return dialect.error(err, rid)
        finally:
            resp.close()
        tracker.done(200, _summary(turn, shaper))
        await _write_trace(proxy, turn)
        content = result.body(turn, shaper.calls)
        return Response(content, media_type="application/json", headers=_id_headers(dialect, rid))

    async def chat_completions(request: Request) -> Response:
        return await respond(request, OPENAI)

    async def messages(request: Request) -> Response:
        return await respond(request, ANTHROPIC)

    async def count_tokens(request: Request) -> Response:
        rid = request_id(request)
        try:
            proxy.check_auth(request)
            plan = ANTHROPIC.plan(await proxy.read_json(request), settings, await proxy.model())
            count = await proxy.count_tokens(plan)
        except ProxyError as err:
            return ANTHROPIC.error(err, rid)
        body = _enc({"input_tokens": count})
        return Response(body, media_type="application/json", headers=_id_headers(ANTHROPIC, rid))

    async def models(request: Request) -> Response:
        names = list(dict.fromkeys(settings.model_aliases + _some(proxy.backend_model)))
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(proxy.started))
        # One list both SDKs read: OpenAI's fields and Anthropic's side by side.
        data = [
            {
                "id": n,
                "object": "model",
                "created": proxy.started,
                "owned_by": "minimax",
                "type": "model",
                "display_name": n,
                "created_at": created,
            }
            for n in names
        ]
        body = {
            "object": "list",
            "data": data,
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
        return Response(_enc(body), media_type="application/json")

    async def ok(request: Request) -> Response:
        # Claude Code's background calls (HEAD /, event logging): answered cheaply, never 404.
        return Response(b"{}", media_type="application/json")

    async def responses(request: Request) -> Response:
        err = ProxyError(
            404,
            "the Responses API is not served here; use POST /v1/chat/completions "
            "(openai-agents: set_default_openai_api('chat_completions'))",
            code="unsupported_api",
        )
        return OPENAI.error(err, request_id(request))

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def ready(request: Request) -> Response:
        if await proxy.backend_ready():
            return Response(b'{"status":"ready"}', media_type="application/json")
        body = _enc({"status": "unavailable", "backend": settings.backend_url})
        return Response(body, 503, media_type="application/json")

    async def metrics_route(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await proxy.start()
        try:
            yield
        finally:
            await proxy.stop()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        err = ProxyError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")
        return _dialect_error(request, err)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return _dialect_error(request, ProxyError(500, "internal proxy error; see the proxy log"))

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/anthropic/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/anthropic/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/", ok, methods=["GET", "HEAD"]),
        Route("/api/event_logging/batch", ok, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: http_error,
        Exception: server_error,
    }
    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=_CORS_HEADERS,
                expose_headers=["x-request-id", "request-id", "retry-after"],
            )
        )
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers=handlers, middleware=middleware
    )
    app.state.proxy = proxy
    return app


def _some(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


def _dialect_error(request: Request, err: ProxyError) -> Response:
    path = request.url.path
    dialect = ANTHROPIC if "/messages" in path or path.startswith("/anthropic/") else OPENAI
    return dialect.error(err, request_id(request))


async def _write_trace(proxy: Proxy, turn: Turn) -> None:
    trace = turn.trace
    if trace is None:
        return
    if proxy.settings.log_raw_responses:
        log.info("raw backend output", extra={"fields": {"raw": "".join(trace.deltas)}})
    if proxy.traces is not None:
        await proxy.traces.write(trace)


def _stream_body(
    proxy: Proxy,
    resp: aiohttp.ClientResponse,
    turn: Turn,
    shaper: Shaper,
    writer: StreamWriter,
    tracker: Tracker,
    save: Callable[[StoredTurn], Awaitable[None]] | None,
) -> Callable[[Send], Awaitable[None]]:
    """The body of a streamed response: start, the pump's ops as they come, then the end."""

    async def body(send: Send) -> None:
        status = 499  # the client went away first, unless set below
        info: dict[str, Any] = {}

        async def emit(ops: list[Op]) -> None:
            data = writer.ops(ops)
            if data:
                tracker.chunk()
                await send(data)

        try:
            await send(writer.start())
            try:
                await pump(resp, turn, shaper, emit, save)
            except ProxyError as err:
                log.warning("stream failed after it began: %s", err.message)
                metrics.BACKEND_ERRORS.labels(err.code or "backend").inc()
                status, info = err.status, _error_info(err)
                await send(writer.error(err))
                return
            status, info = 200, _summary(turn, shaper)
            await send(writer.end(turn, shaper.calls))
        finally:
            resp.close()  # also when cancelled before the pump began
            tracker.done(status, info)
            await _write_trace(proxy, turn)

    return body
