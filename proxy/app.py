"""The Starlette application: routes, and the one loop that drives a response.

A request is read and checked, the backend request is opened (a backend that
refuses gets its error mapped before any byte goes to the client), then one
driver loop runs: backend chunks -> :class:`Turn` (parser events) ->
:class:`Shaper` (ops) -> a dialect writer (bytes).
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
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

from . import upstream
from .config import Settings
from .dialects import ANTHROPIC, OPENAI, Dialect, StreamWriter
from .errors import ProxyError
from .request import Plan
from .sessions import Recorder, Sessions
from .shape import Op, Shaper, new_id
from .store import StoredTurn, open_store
from .streaming import SSEResponse
from .tokens import count_prompt_tokens
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


class Proxy:
    """State shared by the routes of one app: settings and the backend session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.session: aiohttp.ClientSession | None = None
        self.backend_model = settings.backend_model
        self.started = int(time.time())
        self.sessions: Sessions | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        if self.settings.session_store_enabled:
            self.sessions = Sessions(self.settings, open_store(self.settings))
        if self.backend_model is None:
            self.backend_model = await self._discover_model()

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.sessions is not None:
            await self.sessions.store.close()

    async def _discover_model(self) -> str | None:
        """The backend's model id, so that client names ("gpt-4o", "claude-…") never reach it."""
        assert self.session is not None
        try:
            async with self.session.get(
                self.settings.backend_url + "/v1/models",
                headers=self._backend_auth(),
                timeout=aiohttp.ClientTimeout(total=3),
            ) as resp:
                if resp.status == 200:
                    data = msgspec.json.decode(await resp.read())
                    return str(data["data"][0]["id"])
        except (
            aiohttp.ClientError,
            TimeoutError,
            msgspec.DecodeError,
            KeyError,
            IndexError,
            TypeError,
        ):
            pass
        log.warning("could not read the backend's model id; client model names pass through")
        return None

    def _backend_auth(self) -> dict[str, str]:
        key = self.settings.backend_api_key
        return {"authorization": f"Bearer {key}"} if key else {}

    # -- request helpers ------------------------------------------------------

    def check_auth(self, request: Request) -> None:
        expected = self.settings.auth_api_key
        if expected is None:
            return
        given = request.headers.get("x-api-key") or ""
        bearer = request.headers.get("authorization") or ""
        if bearer[:7].lower() == "bearer ":
            given = given or bearer[7:].strip()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ProxyError(401, "invalid or missing API key", code="invalid_api_key")

    async def read_json(self, request: Request) -> Any:
        limit = self.settings.max_request_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise ProxyError(413, f"the request body is larger than {limit} bytes")
        parts: list[bytes] = []
        size = 0
        async for piece in request.stream():
            size += len(piece)
            if size > limit:
                raise ProxyError(413, f"the request body is larger than {limit} bytes")
            parts.append(piece)
        raw = b"".join(parts)
        if not raw.strip():
            raise ProxyError(400, "the request body is empty; expected JSON")
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            raise ProxyError(400, f"the request body is not valid JSON: {exc}") from None

    async def open(self, plan: Plan) -> aiohttp.ClientResponse:
        assert self.session is not None
        return await upstream.open_stream(self.session, self.settings, plan.backend_body)

    async def count_tokens(self, plan: Plan) -> int:
        assert self.session is not None
        return await count_prompt_tokens(self.session, self.settings, plan.backend_body)

    def turn(self, plan: Plan) -> Turn:
        s = self.settings
        return Turn(plan.tools, s.starts_in_think, parse=s.tool_translation)


async def drive(
    resp: aiohttp.ClientResponse,
    turn: Turn,
    shaper: Shaper,
    save: Callable[[StoredTurn], Awaitable[None]] | None = None,
) -> AsyncGenerator[list[Op], None]:
    """Backend chunks in, ops out; the backend connection is closed however this ends.

    With ``save``, the completed turn is stored before the last ops go out, so a
    client can never send its next request before the turn can be found.
    """
    recorder = Recorder() if save is not None else None
    try:
        async for chunks in upstream.read(resp):
            ops = shaper.feed(turn.feed(chunks))
            if ops:
                if recorder is not None:
                    recorder.feed(ops)
                yield ops
        ops = shaper.feed(turn.close()) + shaper.close()
        if recorder is not None and save is not None:
            recorder.feed(ops)
            await save(recorder.turn())
        if ops:
            yield ops
    finally:
        # Closing (not releasing) drops the connection, so a generation the
        # client abandoned stops at the backend at once.
        resp.close()


def request_id(request: Request) -> str:
    rid = request.headers.get("x-request-id")
    return rid if rid and len(rid) <= 128 and rid.isprintable() else new_id("req_")


def create_app(settings: Settings) -> Starlette:
    """Build the ASGI app; misconfiguration raises here, at startup."""
    proxy = Proxy(settings)

    async def respond(request: Request, dialect: Dialect) -> Response:
        rid = request_id(request)
        sessions = proxy.sessions
        save = None
        try:
            proxy.check_auth(request)
            body = await proxy.read_json(request)
            plan = dialect.plan(body, settings, proxy.backend_model)
            if sessions is not None:
                ctx = sessions.context(request, body)
                await sessions.repair(ctx, plan.backend_body["messages"])
                save = functools.partial(sessions.save, ctx)
            resp = await proxy.open(plan)
        except ProxyError as err:
            return dialect.error(err, rid)
        turn = proxy.turn(plan)
        shaper = dialect.shaper(plan)
        ops = drive(resp, turn, shaper, save)
        if plan.stream:
            writer = dialect.stream(plan, settings)
            headers = {**_SSE_HEADERS, "x-request-id": rid}
            if dialect is ANTHROPIC:
                headers["request-id"] = rid
            body = _sse(ops, turn, shaper, writer)
            return SSEResponse(body, headers, dialect.ping, settings.ping_interval)  # type: ignore[return-value]
        result = dialect.result(plan, settings)
        try:
            async with contextlib.aclosing(ops):
                async for piece in ops:
                    result.ops(piece)
        except ProxyError as err:
            return dialect.error(err, rid)
        headers = {"x-request-id": rid}
        if dialect is ANTHROPIC:
            headers["request-id"] = rid
        return Response(
            result.body(turn, shaper.calls), media_type="application/json", headers=headers
        )

    async def chat_completions(request: Request) -> Response:
        return await respond(request, OPENAI)

    async def messages(request: Request) -> Response:
        return await respond(request, ANTHROPIC)

    async def count_tokens(request: Request) -> Response:
        rid = request_id(request)
        try:
            proxy.check_auth(request)
            plan = ANTHROPIC.plan(await proxy.read_json(request), settings, proxy.backend_model)
            count = await proxy.count_tokens(plan)
        except ProxyError as err:
            return ANTHROPIC.error(err, rid)
        return Response(_enc({"input_tokens": count}), media_type="application/json")

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

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def ready(request: Request) -> Response:
        assert proxy.session is not None
        try:
            async with proxy.session.get(
                settings.backend_url + "/v1/models",
                headers=proxy._backend_auth(),
                timeout=aiohttp.ClientTimeout(total=5),
            ) as resp:
                ok = resp.status < 400
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            return Response(b'{"status":"ready"}', media_type="application/json")
        body = _enc({"status": "unavailable", "backend": settings.backend_url})
        return Response(body, 503, media_type="application/json")

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
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
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
    dialect = ANTHROPIC if "/messages" in request.url.path else OPENAI
    return dialect.error(err, request_id(request))


async def _sse(
    ops: AsyncGenerator[list[Op], None], turn: Turn, shaper: Shaper, writer: StreamWriter
) -> AsyncGenerator[bytes, None]:
    yield writer.start()
    try:
        async with contextlib.aclosing(ops):
            async for piece in ops:
                data = writer.ops(piece)
                if data:
                    yield data
    except ProxyError as err:
        log.warning("stream failed after it began: %s", err.message)
        yield writer.error(err)
        return
    yield writer.end(turn, shaper.calls)
