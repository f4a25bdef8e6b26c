"""The route handlers: how one request becomes one response.

A request is read and checked, repaired from the session store if enabled,
and the backend request is opened: a backend that refuses gets its error
mapped before any byte goes to the client. Then the one driver loop of
``service.pump`` runs, and a dialect writer turns its ops into bytes.
Every handler finds the app's :class:`Proxy` on ``request.app.state``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from . import metrics
from .chat import CHAT
from .dialect import Dialect, StreamWriter
from .errors import ProxyError
from .logs import REQUEST_ID
from .messages import MESSAGES
from .metrics import Tracker
from .request import Plan, presented_key
from .responses import RESPONSES, background
from .routing import route_plan
from .service import Proxy, pump
from .sessions import scope_for
from .shape import Op, Shaper, new_id
from .store import StoredTurn
from .streaming import Send, SSEResponse, unless_client_leaves
from .turn import Turn

__all__ = [
    "chat_completions",
    "count_tokens",
    "dialect_error",
    "health",
    "messages",
    "metrics_route",
    "models",
    "ok",
    "ready",
    "responses",
]

log = logging.getLogger("proxy")
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_enc = msgspec.json.Encoder().encode


def request_id(request: Request) -> str:
    rid = request.headers.get("x-request-id")
    return rid if rid and len(rid) <= 128 and rid.isprintable() else new_id("req_")


def _proxy(request: Request) -> Proxy:
    proxy: Proxy = request.app.state.proxy
    return proxy


def _id_headers(dialect: Dialect, rid: str) -> dict[str, str]:
    return dict.fromkeys(dialect.id_headers, rid)


def _summary(turn: Turn, shaper: Shaper) -> dict[str, Any]:
    return {
        "finish_reason": turn.finish_reason,
        "prompt_tokens": turn.prompt_tokens,
        "cached_tokens": turn.cached_tokens,
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


async def respond(request: Request, dialect: Dialect) -> Response:
    """Answer one API request; the caller's key slot is held until the response has ended."""
    slot: list[Callable[[], None]] = []  # the release of the key's slot, once taken

    def release() -> None:
        for free in slot:
            free()

    try:
        response = await _respond(request, dialect, slot)
    except BaseException:
        release()
        raise
    if isinstance(response, SSEResponse):
        response.on_close = release  # when the stream ends, however it ends
    else:
        release()
    return response  # type: ignore[return-value]  # an SSEResponse is an ASGI app too


async def _respond(
    request: Request, dialect: Dialect, slot: list[Callable[[], None]]
) -> Response | SSEResponse:
    proxy = _proxy(request)
    settings = proxy.settings
    rid = request_id(request)
    REQUEST_ID.set(rid)
    tracker: Tracker | None = None
    try:
        key = proxy.check_auth(request)
        body, size = await proxy.read_body(request)
        plan = await proxy.plan(dialect, body, size, await proxy.models.route(_model_of(body)))
        # The matched route's path, without building the whole URL (a cost per request)
        tracker = Tracker(request.scope["path"], dialect.name, plan.stream, rid, key)
        lease = await proxy.limits.acquire(key)
        slot.append(lease.release)
        scope = scope_for(presented_key(request.headers))
        await dialect.prepare(plan, proxy, scope)
        if plan.foreign_thinking:
            # Edited or from another provider: accepted, as the text is what matters.
            log.info("%d thinking block(s) not signed by this proxy", plan.foreign_thinking)
        save = await _repair(proxy, request, body, scope, plan)
        route_plan(plan, request, body, key, settings)
        turn = proxy.turn(plan, rid, dialect.name)
        lease.tokens = lambda: turn.prompt_tokens + turn.completion_tokens  # counted against tpm
        if getattr(plan.extra, "background", False):
            return await _in_background(proxy, plan, scope, rid, tracker, turn, slot, save)
        resp = await proxy.open(plan)
    except ProxyError as err:
        _failed(tracker, err, backend=bool(err.code and err.code.startswith("backend_")))
        return dialect.error(err, rid)
    shaper = dialect.shaper(plan)
    if plan.stream:
        writer = dialect.stream(plan, settings)
        keep = functools.partial(dialect.keep, plan, proxy, scope, writer)
        body = _stream_body(proxy, resp, turn, shaper, writer, tracker, save, keep)
        headers = {**_SSE_HEADERS, **_id_headers(dialect, rid)}
        return SSEResponse(body, headers, writer.ping, settings.ping_interval, writer.start())
    result = dialect.result(plan, settings)

    async def collect(ops: list[Op]) -> None:
        result.ops(ops)

    pumped = []  # the pump disposes of the backend response once it has begun

    async def answer() -> None:
        pumped.append(True)
        result.ops(await pump(resp, turn, shaper, collect, save))

    try:
        if not await unless_client_leaves(request.receive, answer()):
            tracker.done(499)
            return Response(status_code=499)  # nobody is there to read it
    except ProxyError as err:
        _failed(tracker, err, backend=True)  # everything the pump raises is the backend's
        return dialect.error(err, rid)
    finally:
        if not pumped:
            resp.close()
    tracker.done(200, _summary(turn, shaper))
    await _write_trace(proxy, turn)
    content = result.body(turn, shaper.calls)
    await dialect.keep(plan, proxy, scope, result)
    return Response(content, media_type="application/json", headers=_id_headers(dialect, rid))


async def _repair(
    proxy: Proxy, request: Request, body: Any, scope: str, plan: Plan
) -> Callable[[StoredTurn], Awaitable[None]] | None:
    """Session repair of the backend messages; with sessions on, the saver of the turn."""
    sessions = proxy.sessions
    if sessions is None:
        return None
    ctx = sessions.context(request, body, scope)
    await sessions.repair(ctx, plan.backend_body["messages"], plan.grammar)
    return functools.partial(sessions.save, ctx)


async def _in_background(
    proxy: Proxy,
    plan: Plan,
    scope: str,
    rid: str,
    tracker: Tracker,
    turn: Turn,
    slot: list[Callable[[], None]],
    save: Callable[[StoredTurn], Awaitable[None]] | None,
) -> Response | SSEResponse:
    """Start a background run (Responses ``background: true``) and answer at once."""
    answer = await background.start(proxy, plan, scope, rid, tracker, turn, list(slot), save)
    slot.clear()  # the run keeps the key's slot until it ends, not until this answer has gone
    return answer


async def chat_completions(request: Request) -> Response:
    return await respond(request, CHAT)


async def messages(request: Request) -> Response:
    return await respond(request, MESSAGES)


async def count_tokens(request: Request) -> Response:
    proxy = _proxy(request)
    rid = request_id(request)
    try:
        proxy.check_auth(request)
        body, size = await proxy.read_body(request)
        plan = await proxy.plan(MESSAGES, body, size, await proxy.models.route(_model_of(body)))
        count = await proxy.count_tokens(plan)
    except ProxyError as err:
        return MESSAGES.error(err, rid)
    return Response(
        _enc({"input_tokens": count}),
        media_type="application/json",
        headers=_id_headers(MESSAGES, rid),
    )


async def models(request: Request) -> Response:
    proxy = _proxy(request)
    names = proxy.models.names()
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
    return await respond(request, RESPONSES)


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def ready(request: Request) -> Response:
    proxy = _proxy(request)
    # Which tool_choice this process sends with tools, and the setting that chose it.
    mode = {
        "backend_tool_choice": proxy.tool_mode.sending,
        "backend_tool_choice_setting": proxy.tool_mode.setting,
    }
    if await proxy.backend_ready():
        return Response(_enc({"status": "ready", **mode}), media_type="application/json")
    body = _enc({"status": "unavailable", "backend": proxy.settings.backend_url, **mode})
    return Response(body, 503, media_type="application/json")


async def metrics_route(request: Request) -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


def dialect_error(request: Request, err: ProxyError) -> Response:
    """``err`` in the shape of the API the path belongs to."""
    path = request.url.path
    dialect = MESSAGES if "/messages" in path or path.startswith("/anthropic/") else CHAT
    return dialect.error(err, request_id(request))


def _model_of(body: Any) -> Any:
    """The client's model name (the same field in every API), checked by the dialect."""
    return body.get("model") if isinstance(body, dict) else None


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
    keep: Callable[[], Awaitable[None]],
) -> Callable[[Send], Awaitable[None]]:
    """The body of a streamed response: the pump's ops as they come, then the end (the
    start goes out with the first of them, see SSEResponse)."""

    async def body(send: Send) -> None:
        status = 499  # the client went away first, unless set below
        info: dict[str, Any] = {}
        pumped = False  # the pump disposes of the backend response once it has begun

        async def emit(ops: list[Op]) -> None:
            data = writer.ops(ops)
            if data:
                tracker.chunk()
                await send(data)

        try:
            try:
                pumped = True
                last = await pump(resp, turn, shaper, emit, save)
            except ProxyError as err:
                log.warning("stream failed after it began: %s", err.message)
                metrics.BACKEND_ERRORS.labels(err.code or "backend").inc()
                status, info = err.status, _error_info(err)
                await send(writer.error(err))
                return
            status, info = 200, _summary(turn, shaper)
            data = writer.ops(last)
            if data:
                tracker.chunk()
            end = writer.end(turn, shaper.calls)
            await keep()  # before the end goes out: the client may refer to it at once
            await send(data + end)
        finally:
            if not pumped:
                resp.close()
            tracker.done(status, info)
            await _write_trace(proxy, turn)

    return body
