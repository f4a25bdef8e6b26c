"""The two APIs the proxy speaks, as the few pieces in which they differ.

A dialect reads a request into a :class:`Plan`, says how to shape the
output, makes its stream and buffered writers, and renders errors. The
pipeline between them (backend, parser, shaper) is one and the same.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from starlette.responses import Response

from .anthropic_in import plan_anthropic
from .anthropic_out import AnthropicResult, AnthropicStream
from .config import Settings
from .errors import ProxyError, anthropic_error_body, openai_error_body
from .openai_in import plan_openai
from .openai_out import OpenAIResult, OpenAIStream
from .request import Plan
from .shape import Op, Shaper, new_id
from .turn import Turn

__all__ = ["ANTHROPIC", "OPENAI", "Dialect", "Result", "StreamWriter"]


class StreamWriter(Protocol):
    def start(self) -> bytes: ...
    def ops(self, ops: list[Op]) -> bytes: ...
    def end(self, turn: Turn, calls: int) -> bytes: ...
    def error(self, err: ProxyError) -> bytes: ...


class Result(Protocol):
    def ops(self, ops: list[Op]) -> None: ...
    def body(self, turn: Turn, calls: int) -> bytes: ...


class Dialect(Protocol):
    name: str
    ping: bytes

    def plan(self, body: Any, settings: Settings, backend_model: str | None) -> Plan: ...
    def shaper(self, plan: Plan) -> Shaper: ...
    def stream(self, plan: Plan, settings: Settings) -> StreamWriter: ...
    def result(self, plan: Plan, settings: Settings) -> Result: ...
    def error(self, err: ProxyError, rid: str) -> Response: ...


class OpenAI:
    name = "openai"
    ping = b": ping\n\n"  # an SSE comment: the openai SDK skips it

    def plan(self, body: Any, settings: Settings, backend_model: str | None) -> Plan:
        return plan_openai(body, settings, backend_model)

    def shaper(self, plan: Plan) -> Shaper:
        return Shaper(think_as_text=not plan.split, max_calls=plan.max_calls)

    def stream(self, plan: Plan, settings: Settings) -> StreamWriter:
        return OpenAIStream(new_id("chatcmpl-"), int(time.time()), plan.model, plan.include_usage)

    def result(self, plan: Plan, settings: Settings) -> Result:
        return OpenAIResult(new_id("chatcmpl-"), int(time.time()), plan.model, plan.split)

    def error(self, err: ProxyError, rid: str) -> Response:
        headers = {"x-request-id": rid, **err.headers()}
        return Response(openai_error_body(err), err.status, headers, "application/json")


class Anthropic:
    name = "anthropic"
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'

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


OPENAI: Dialect = OpenAI()
ANTHROPIC: Dialect = Anthropic()
