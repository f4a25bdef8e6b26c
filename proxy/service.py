"""What one app holds for its whole life, and the driver loop of a response.

:class:`Proxy` owns the settings, the one ``aiohttp.ClientSession`` to the
backend (created in the lifespan), the session store and the trace writer.
:func:`pump` is the loop every response runs: backend chunks -> :class:`Turn`
(parser events) -> :class:`Shaper` (ops) -> a sink.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
from starlette.requests import Request

from . import upstream
from .config import Settings
from .dialect import Dialect
from .errors import ProxyError
from .grammar import apply_thinking_mode, per_grammar_settings
from .keys import Keys
from .limits import LocalLimits
from .models import Models
from .request import Plan, check_forward_names, presented_key
from .sessions import Recorder, Sessions
from .shape import LOGPROBS, Op, Shaper
from .shared_limits import RedisLimits
from .store import MemoryRecords, Records, RedisStore, SQLiteStore, StoredTurn, open_store
from .tokens import count_prompt_tokens
from .tool_mode import ToolMode
from .trace import Trace, TraceWriter
from .turn import Turn

__all__ = ["Proxy", "Sink", "pump"]

log = logging.getLogger("proxy")

# Planning a body this big (hundreds of history messages: an agent late in a session) takes
# milliseconds of pure Python, done in a worker thread so that the loop keeps serving the
# other streams meanwhile (asgi.py has the GIL handed over at least every millisecond).
# Below it, a plan takes well under a millisecond: the thread hop would cost more.
OFF_LOOP_BYTES = 128 * 1024


class Proxy:
    """State shared by the routes of one app: settings and the backend session."""

    def __init__(self, settings: Settings) -> None:
        check_forward_names(settings.forward_options)
        self.settings = settings
        # What a request of each grammar is read with (MODEL_GRAMMAR, BACKEND_IMAGES resolved).
        self.by_grammar = per_grammar_settings(settings)
        self.session: aiohttp.ClientSession | None = None
        self.models = Models(settings, lambda: self._backend_models(timeout=3))
        self.keys = Keys(settings)
        self.limits: LocalLimits | RedisLimits = (
            RedisLimits(settings, self.keys.limits)
            if settings.limits_backend == "redis"
            else LocalLimits(self.keys.limits)
        )
        self.started = int(time.time())
        self.sessions: Sessions | None = None
        self.records: Records = MemoryRecords(settings.responses_store_bytes)
        self.traces: TraceWriter | None = None
        self.tool_mode = ToolMode(settings.backend_tool_choice)

    async def start(self) -> None:
        loop = type(asyncio.get_running_loop())
        log.info("event loop: %s", "uvloop" if loop.__module__.startswith("uvloop") else "asyncio")
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        if self.settings.session_store_enabled:
            store = open_store(self.settings)
            self.sessions = Sessions(self.settings, store)
            if isinstance(store, (SQLiteStore, RedisStore)):
                self.records = store  # kept responses survive restarts and reach every replica
        if self.settings.streaming_debug:
            self.traces = TraceWriter(self.settings.streaming_debug_path)
        await self.models.start()
        await self.keys.start()
        await self.limits.start()

    async def stop(self) -> None:
        await self.limits.stop()
        await self.keys.stop()
        await self.models.stop()
        if self.session is not None:
            await self.session.close()
        if self.sessions is not None:
            await self.sessions.store.close()
        if self.traces is not None:
            self.traces.close()

    async def _backend_models(self, timeout: float) -> Any:
        """The backend's model list (a cheap call: never a generation), or None."""
        assert self.session is not None
        try:
            async with self.session.get(
                self.settings.backend_url + "/v1/models",
                headers=upstream.backend_headers(self.settings),
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                if resp.status < 400:
                    return msgspec.json.decode(await resp.read())
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError):
            pass
        return None

    async def backend_ready(self) -> bool:
        return await self._backend_models(timeout=5) is not None

    # -- request helpers ------------------------------------------------------

    def check_auth(self, request: Request) -> str:
        """The name of the caller's key (``-`` when auth is off); 401 for a wrong key."""
        return self.keys.name_of(presented_key(request.headers))

    async def read_json(self, request: Request) -> Any:
        return (await self.read_body(request))[0]

    async def read_body(self, request: Request) -> tuple[Any, int]:
        """The request's JSON, and its size in bytes."""
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
            return msgspec.json.decode(raw), len(raw)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise ProxyError(400, f"the request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise ProxyError(400, "the request body is nested too deeply") from None

    async def plan(self, dialect: Dialect, body: Any, size: int, backend_model: str | None) -> Plan:
        """``dialect``'s plan of a request ``size`` bytes long, for ``backend_model`` (the
        model it goes to) in that model's grammar; off the loop when it is big.

        Raises:
            ProxyError: 400 for what the dialect or the thinking mode refuses.
        """
        name = body.get("model") if isinstance(body, dict) else None
        grammar = self.models.grammar(backend_model or (name if isinstance(name, str) else None))
        settings = self.by_grammar[grammar.name]
        if size < OFF_LOOP_BYTES:
            plan = dialect.plan(body, settings, backend_model)
        else:
            plan = await asyncio.to_thread(dialect.plan, body, settings, backend_model)
        plan.grammar = grammar
        plan.starts_in_think = apply_thinking_mode(grammar, body, plan.backend_body, settings)
        return plan

    async def open(self, plan: Plan) -> aiohttp.ClientResponse:
        """Open the backend stream; a refusal of tools is retried here, before any byte
        goes to the client (see :mod:`proxy.tool_mode`)."""
        assert self.session is not None
        name = self.settings.backend_routing_header
        route = {name: plan.route} if name and plan.route else {}
        body = self.tool_mode.body(plan.backend_body)
        try:
            return await upstream.open_stream(self.session, self.settings, body, route)
        except ProxyError as err:
            if not self.tool_mode.refused(body, err):
                raise
        body = self.tool_mode.body(plan.backend_body)
        return await upstream.open_stream(self.session, self.settings, body, route)

    async def count_tokens(self, plan: Plan) -> int:
        assert self.session is not None
        return await count_prompt_tokens(self.session, self.settings, plan.backend_body)

    def turn(self, plan: Plan, rid: str, dialect: str) -> Turn:
        s = self.settings
        starts = s.starts_in_think if plan.starts_in_think is None else plan.starts_in_think
        turn = Turn(plan.tools, starts, parse=s.tool_translation, grammar=plan.grammar)
        if self.traces is not None or s.log_raw_responses:
            turn.trace = Trace(rid, dialect, plan.tools, starts, plan.grammar.name)
        return turn


Sink = Callable[[list[Op]], Awaitable[None]]


async def pump(
    resp: aiohttp.ClientResponse,
    turn: Turn,
    shaper: Shaper,
    sink: Sink,
    save: Callable[[StoredTurn], Awaitable[None]] | None = None,
) -> list[Op]:
    """The driver loop of one response: each backend read becomes ops, handed to ``sink``,
    but for the last read's: those are returned with the closing ops, for the caller to
    send with the end of the response (one write where it would be two).

    Every step but the read and the sink is a plain function call, so the per-chunk
    cost is the steps themselves. The backend connection is closed however this ends,
    but for a stream the backend ended: its connection goes back to the pool.
    With ``save``, the completed turn is stored before the last ops are returned, so a
    client can never send its next request before the turn can be found.

    Raises:
        ProxyError: the backend failed, stalled or cut the stream.
    """
    reader = upstream.ChunkReader()
    recorder = Recorder(turn.grammar) if save is not None else None
    idle = upstream.IdleWatch(resp)
    try:
        try:
            chunks: list[upstream.UpChunk] = []
            async for data in resp.content.iter_any():
                idle.taken += len(data)
                chunks = reader.feed(data)
                if reader.done:
                    break
                if chunks:
                    ops = shaper.feed(turn.feed(chunks))
                    if turn.logprobs:
                        ops.append((LOGPROBS, turn.take_logprobs()))
                    if ops:
                        if recorder is not None:
                            recorder.feed(ops)
                        await sink(ops)
            else:
                chunks = reader.close()
        except upstream.NETWORK_ERRORS as exc:
            raise upstream.network_error(exc) from exc
        ops = shaper.feed(turn.feed(chunks) + turn.close()) + shaper.close()
        if turn.logprobs:
            ops.append((LOGPROBS, turn.take_logprobs()))
        if recorder is not None and save is not None:
            recorder.feed(ops)
            await save(recorder.turn())
        return ops
    finally:
        idle.stop()
        if reader.done:
            upstream.release(resp)
        else:
            # Closing (not releasing) drops the connection, so a generation the
            # client abandoned stops at the backend at once.
            resp.close()
