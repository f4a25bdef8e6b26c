"""OpenAI Responses: ``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}``.

The API Codex CLI speaks and the OpenAI Agents SDK uses by default, on the
same pipeline as the others: one backend chat-completions call, the same
parser and shaper, its own reader and writer. A response is kept (unless
``store`` is false) so that ``previous_response_id`` can continue from it:
in the session store when sessions are on, else in a bounded memory store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from ..config import Settings
from ..dialect import Dialect, Result, StreamWriter
from ..errors import ProxyError, openai_error_body
from ..request import Plan
from ..shape import Shaper, new_id
from . import conversations
from .items import normalised
from .reader import Echo, history_messages, plan_responses
from .writer import ResponsesResult, ResponsesStream

if TYPE_CHECKING:
    from ..service import Proxy

__all__ = ["RESPONSES", "chain_items", "keep_response", "stored_response"]

log = logging.getLogger("proxy")
_MAX_CHAIN = 10_000  # previous_response_id links followed at most (a loop is not a chain)


class Responses:
    name = "responses"
    id_headers: tuple[str, ...] = ("x-request-id",)

    def plan(self, body: Any, settings: Settings, backend_model: str | None) -> Plan:
        return plan_responses(body, settings, backend_model)

    def shaper(self, plan: Plan) -> Shaper:
        return Shaper(max_calls=plan.max_calls, segmented=True)

    def stream(self, plan: Plan, settings: Settings) -> StreamWriter:
        return ResponsesStream(*self._args(plan, settings))

    def result(self, plan: Plan, settings: Settings) -> Result:
        return ResponsesResult(*self._args(plan, settings))

    @staticmethod
    def _args(plan: Plan, settings: Settings) -> tuple[Any, ...]:
        secret = settings.thinking_signature_secret or ""
        raw = settings.responses_reasoning == "raw"
        return new_id("resp_"), int(time.time()), plan.model, plan.extra, secret, raw

    def error(self, err: ProxyError, rid: str) -> Response:
        headers = {"x-request-id": rid, **err.headers()}
        return Response(openai_error_body(err), err.status, headers, "application/json")

    async def prepare(self, plan: Plan, proxy: Proxy, scope: str) -> None:
        """Put the history of ``previous_response_id`` or ``conversation`` before the input."""
        echo: Echo = plan.extra
        if echo.previous is not None:
            carried, route = await chain_items(proxy, scope, echo.previous)
            # A routing key kept with the chain's first turn keeps the conversation on its replica.
            plan.route = route
        elif echo.conversation is not None:
            carried = (await conversations.load(proxy, scope, echo.conversation, "conversation"))[
                "items"
            ]
        else:
            return
        settings = proxy.by_grammar[plan.grammar.name]
        plan.backend_body["messages"] = history_messages(carried + echo.items, echo, settings)

    async def keep(self, plan: Plan, proxy: Proxy, scope: str, answer: Any) -> None:
        final = getattr(answer, "final", None)
        if final is None:
            return
        await keep_response(proxy, scope, plan, final)


async def keep_response(proxy: Proxy, scope: str, plan: Plan, final: dict[str, Any]) -> None:
    """Keep a finished response (unless ``store`` is false) and extend its conversation.

    A store outage never fails the answer itself: it is logged.
    """
    echo: Echo = plan.extra
    try:
        # Ids made once: the conversation and the record agree. Hundreds of items (an
        # agent late in a session) take milliseconds: beside the loop, not on it.
        items = echo.items
        kept = await asyncio.to_thread(normalised, items) if len(items) > 64 else normalised(items)
        if echo.conversation is not None:
            added = kept + final["output"]
            await conversations.add_items(proxy, scope, echo.conversation, added, "conversation")
        if echo.store:
            record = {"response": final, "input": kept}
            if plan.route is not None:
                record["route"] = plan.route
            ttl = proxy.settings.responses_ttl_seconds
            await proxy.records.put_record(scope, final["id"], record, ttl)
    except Exception as exc:
        log.warning("could not keep response %s: %s", final["id"], exc)


async def chain_items(
    proxy: Proxy, scope: str, previous: str | None
) -> tuple[list[Any], str | None]:
    """The items a ``previous_response_id`` chain carries, oldest first, and the routing
    key its first turn was sent with (None if it kept none).

    Raises:
        ProxyError: 404 ``previous_response_not_found`` for a missing link.
    """
    chain: list[Any] = []
    wanted = previous
    while wanted is not None and len(chain) < _MAX_CHAIN:
        record = await stored_response(proxy, scope, wanted)
        if record is None:
            raise ProxyError(
                404,
                f"Previous response with id '{wanted}' not found.",
                code="previous_response_not_found",
                param="previous_response_id",
            )
        chain.append(record)
        wanted = record["response"].get("previous_response_id")
    items: list[Any] = []
    for record in reversed(chain):
        items += record["input"]
        items += record["response"]["output"]
    return items, (chain[-1].get("route") or None) if chain else None


async def stored_response(proxy: Proxy, scope: str, response_id: str) -> Any:
    """The kept ``{"response", "input"}`` record, or None.

    Raises:
        ProxyError: 503 when the store does not answer (an unknown id is a 404, not this).
    """
    return await conversations.store_call(proxy.records.get_record(scope, response_id))


RESPONSES: Dialect = Responses()
