"""OpenAI Chat Completions: ``POST /v1/chat/completions``."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from ..config import Settings
from ..dialect import Dialect, Result, Stateless, StreamWriter
from ..errors import ProxyError, openai_error_body
from ..request import Plan
from ..shape import Shaper, new_id
from .reader import plan_openai
from .writer import OpenAIResult, OpenAIStream

__all__ = ["CHAT"]


class Chat(Stateless):
    name = "openai"
    id_headers: tuple[str, ...] = ("x-request-id",)

    def plan(self, body: Any, settings: Settings, backend_model: str | None) -> Plan:
        return plan_openai(body, settings, backend_model)

    def shaper(self, plan: Plan) -> Shaper:
        shown = (plan.grammar.shown_open, plan.grammar.shown_close)
        return Shaper(think_as_text=not plan.split, max_calls=plan.max_calls, shown=shown)

    def stream(self, plan: Plan, settings: Settings) -> StreamWriter:
        return OpenAIStream(new_id("chatcmpl-"), int(time.time()), plan.model, plan.include_usage)

    def result(self, plan: Plan, settings: Settings) -> Result:
        return OpenAIResult(new_id("chatcmpl-"), int(time.time()), plan.model, plan.split)

    def error(self, err: ProxyError, rid: str) -> Response:
        headers = {"x-request-id": rid, **err.headers()}
        return Response(openai_error_body(err), err.status, headers, "application/json")


CHAT: Dialect = Chat()
