"""Anthropic Messages: ``POST /v1/messages`` (and ``/anthropic/v1/messages``)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from ..config import Settings
from ..dialect import Dialect, Result, Stateless, StreamWriter
from ..errors import ProxyError, anthropic_error_body
from ..request import Plan
from ..shape import Shaper, new_id
from .reader import plan_anthropic
from .writer import AnthropicResult, AnthropicStream

__all__ = ["MESSAGES"]


class Messages(Stateless):
    name = "anthropic"
    id_headers: tuple[str, ...] = ("x-request-id", "request-id")

    def plan(self, body: Any, settings: Settings, backend_model: str | None) -> Plan:
        return plan_anthropic(body, settings, backend_model)

    def shaper(self, plan: Plan) -> Shaper:
        return Shaper(
            keep_thinking=plan.thinking,
            max_calls=plan.max_calls,
            id_prefix="toolu_",
            segmented=True,
        )

    def stream(self, plan: Plan, settings: Settings) -> StreamWriter:
        secret = settings.thinking_signature_secret or ""
        return AnthropicStream(new_id("msg_"), plan.model, secret, plan.stop_sequences)

    def result(self, plan: Plan, settings: Settings) -> Result:
        secret = settings.thinking_signature_secret or ""
        return AnthropicResult(new_id("msg_"), plan.model, secret, plan.stop_sequences)

    def error(self, err: ProxyError, rid: str) -> Response:
        headers = {"x-request-id": rid, "request-id": rid, **err.headers()}
        return Response(anthropic_error_body(err, rid), err.status, headers, "application/json")


MESSAGES: Dialect = Messages()
