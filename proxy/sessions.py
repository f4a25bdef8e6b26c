"""Session repair: putting back assistant turns, and their thinking, that clients drop.

MiniMax-M2 continues a tool loop well only when it sees its own previous
turn, thinking included. Many clients drop that turn or strip its thinking.
After each completed turn the proxy stores it (as the backend needs it);
on the next request, inside the current tool loop (after the last user
message, as the template renders thinking only there), it

- puts back an assistant turn that is missing: a tool result answers a call
  id that no assistant message in the request holds;
- restores the thinking of an assistant turn that came back without it.

Turns are found by session id (``X-Session-Id``, ``?conversation_id=``, or a
body ``conversation_id``) or, with ``REQUIRE_SESSION_FOR_REPAIR=false``, by
the tool-call ids the proxy generated, which are random and unguessable.
A complete history is never changed, and a store failure only means no
repair: it is logged and counted, and the request goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from . import metrics
from .config import Settings
from .errors import ProxyError
from .request import think_content
from .shape import CALL_ARGS, CALL_END, CALL_START, REASONING, TEXT, THINK_CLOSE, THINK_OPEN, Op
from .store import Store, StoredTurn

__all__ = ["Recorder", "SessionContext", "Sessions", "scope_for", "session_id"]

log = logging.getLogger("proxy.sessions")
_STORE_TIMEOUT = 3.0


class _Failed:
    """The store could not answer (as opposed to: it has no such turn)."""


FAILED = _Failed()
_MAX_SESSION_ID = 256


@dataclass(slots=True)
class SessionContext:
    scope: str  # hash of the caller's API key
    session: str | None
    _turns: list[StoredTurn] | None = field(default=None, repr=False)  # the session's, fetched once


class Recorder:
    """Collects one response's ops into the turn to store."""

    def __init__(self) -> None:
        self._reasoning: list[str] = []
        self._text: list[str] = []
        self._calls: dict[int, list[Any]] = {}
        self._ended: set[int] = set()  # a call the model never finished is not stored

    def feed(self, ops: list[Op]) -> None:
        for op in ops:
            kind = op[0]
            if kind == TEXT:
                self._text.append(op[1])
            elif kind == CALL_ARGS:
                self._calls[op[1]][2].append(op[2])
            elif kind == REASONING:
                self._reasoning.append(op[1])
            elif kind == CALL_START:
                self._calls[op[1]] = [op[2], op[3], []]
            elif kind == CALL_END:
                self._ended.add(op[1])

    def turn(self) -> StoredTurn:
        reasoning, text = "".join(self._reasoning), "".join(self._text)
        if text.startswith(THINK_OPEN):
            # Thinking passed through inside the text: store it apart, like the split form.
            head, sep, rest = text[len(THINK_OPEN) :].partition(THINK_CLOSE)
            if sep:
                reasoning, text = head, rest
            else:
                reasoning, text = head, ""
        calls = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": "".join(a)}}
            for index, (i, n, a) in self._calls.items()
            if index in self._ended
        ]
        return {"reasoning": reasoning, "content": text, "tool_calls": calls}


def session_id(request: Request, body: Any) -> str | None:
    """The proxy's session id of a request (``X-Session-Id``, ``?conversation_id=`` or a body
    ``conversation_id``), unchecked; None without one."""
    session = request.headers.get("x-session-id") or request.query_params.get("conversation_id")
    if session is None and isinstance(body, dict):
        found = body.get("conversation_id")
        extra = body.get("extra_body")
        if found is None and isinstance(extra, dict):
            found = extra.get("conversation_id")
        session = found if isinstance(found, str) else None
    return session


def scope_for(api_key: str) -> str:
    """The store namespace of one API key (hashed: the store never holds keys)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


def backend_message(turn: StoredTurn) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": think_content(turn.get("reasoning"), turn.get("content") or ""),
    }
    if turn.get("tool_calls"):
        message["tool_calls"] = turn["tool_calls"]
    return message


class Sessions:
    """Repair and storage for one app, with counters for metrics."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.repairs = 0
        self.store_errors = 0

    def context(self, request: Request, body: Any, scope: str) -> SessionContext:
        """The session of a request whose API key's store scope is ``scope`` (scope_for)."""
        session = session_id(request, body)
        if session is not None and not 0 < len(session) <= _MAX_SESSION_ID:
            raise ProxyError(400, f"session id must be 1 to {_MAX_SESSION_ID} characters")
        return SessionContext(scope, session)

    async def save(self, ctx: SessionContext, turn: StoredTurn) -> None:
        if not turn["tool_calls"] and ctx.session is None:
            return  # only tool-loop turns are ever looked up by call id
        await self._guard(self.store.put(ctx.scope, ctx.session, turn))

    async def repair(self, ctx: SessionContext, messages: list[dict[str, Any]]) -> None:
        """Repair ``messages`` (backend form) in place; raise 400 for unlinked tool results.

        Only the current tool loop (after the last user message) is looked at: the
        template renders thinking only there, and older history is the client's own.
        """
        may_repair = ctx.session is not None or not self.settings.require_session_for_repair
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        known = {c["id"] for m in messages if m["role"] == "assistant" for c in _calls(m)}
        i = last_user + 1
        while i < len(messages):
            m = messages[i]
            if may_repair and m["role"] == "assistant" and _calls(m):
                if "</think>" not in m["content"]:
                    turn = await self._find(ctx, [c["id"] for c in _calls(m)])
                    if isinstance(turn, dict) and turn.get("reasoning"):
                        m["content"] = think_content(turn["reasoning"], m["content"])
                        self._repaired("restored the thinking of an assistant turn", ctx)
            elif m["role"] == "tool" and m.get("tool_call_id") not in known:
                call_id = m.get("tool_call_id")
                turn = await self._find(ctx, [call_id]) if isinstance(call_id, str) else None
                if isinstance(turn, dict) and may_repair:
                    messages.insert(i, backend_message(turn))
                    known.update(c["id"] for c in turn["tool_calls"])
                    self._repaired("put back a missing assistant turn", ctx)
                    i += 1
                elif turn is None and self.settings.require_tool_link_validation:
                    raise ProxyError(
                        400,
                        f"tool result for unknown tool call id {call_id!r}: no assistant "
                        "message in this conversation made that call",
                        param="messages",
                        code="unknown_tool_call_id",
                    )
            i += 1

    async def _find(self, ctx: SessionContext, ids: list[str]) -> StoredTurn | _Failed | None:
        """The stored turn holding one of ``ids``; None if there is none; FAILED if the store
        could not say (then nothing is repaired, and nothing is rejected either).

        With a session id and REQUIRE_SESSION_FOR_REPAIR, only that session's turns count:
        a turn of another session, found through its call id, is no turn of this one.
        """
        wanted = set(ids)
        failed = False
        if ctx.session is not None:
            if ctx._turns is None:
                turns: list[StoredTurn] | _Failed = await self._guard(
                    self.store.session(ctx.scope, ctx.session)
                )
                failed = isinstance(turns, _Failed)
                ctx._turns = [] if isinstance(turns, _Failed) else turns
            for turn in reversed(ctx._turns or []):
                if wanted & {c["id"] for c in turn.get("tool_calls") or ()}:
                    return turn
            if self.settings.require_session_for_repair:
                return FAILED if failed else None
        for call_id in ids:
            found: StoredTurn | _Failed | None = await self._guard(
                self.store.by_call(ctx.scope, call_id)
            )
            if found is not None:
                return found
        return FAILED if failed else None

    async def _guard(self, op: Any) -> Any:
        try:
            async with asyncio.timeout(_STORE_TIMEOUT):
                return await op
        except Exception as exc:  # any store failure degrades to "no repair"
            self.store_errors += 1
            metrics.STORE_ERRORS.inc()
            log.warning("session store failed (%s: %s); serving without repair",
                        type(exc).__name__, exc)  # fmt: skip
            return FAILED

    def _repaired(self, what: str, ctx: SessionContext) -> None:
        self.repairs += 1
        metrics.REPAIRS.inc()
        log.info("session repair: %s (session=%s)", what, ctx.session or "-")


def _calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    calls = message.get("tool_calls")
    return calls if isinstance(calls, list) else []
