"""Counting a request's prompt tokens for ``/v1/messages/count_tokens``.

Claude Code decides when to compact its context from this count, so a low
estimate makes it compact too late. The backend's own tokenizer over the
templated prompt is exact: vLLM and SGLang offer ``POST /tokenize`` (chat
messages in, template applied), TabbyAPI ``POST /v1/token/encode``. A backend
with neither gets an estimate of one token per 3 characters of the request's
messages and tools as JSON, which errs high for English and code (about 4
characters per token) and is close for CJK-heavy text.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import msgspec

from .config import Settings
from .upstream import backend_headers

__all__ = ["count_prompt_tokens", "estimate"]

log = logging.getLogger("proxy.tokens")
_enc = msgspec.json.Encoder().encode
_CHARS_PER_TOKEN = 3
# Paths that answered 404/405 on this backend, so each is tried at most once per process.
_missing: set[tuple[str, str]] = set()


def estimate(body: dict[str, Any]) -> int:
    size = len(_enc(body.get("messages", [])).decode()) + len(_enc(body.get("tools", [])).decode())
    return max(1, size // _CHARS_PER_TOKEN)


async def count_prompt_tokens(
    session: aiohttp.ClientSession, settings: Settings, body: dict[str, Any]
) -> int:
    messages, tools = body.get("messages", []), body.get("tools")
    vllm: dict[str, Any] = {"messages": messages, "add_generation_prompt": True}
    if body.get("model"):
        vllm["model"] = body["model"]
    if tools:
        vllm["tools"] = tools
    attempts = [
        ("/tokenize", vllm, "count"),
        ("/v1/token/encode", {"text": messages, "add_bos_token": True}, "length"),
    ]
    headers = backend_headers(settings)
    timeout = aiohttp.ClientTimeout(total=settings.backend_connect_timeout + 20)
    for path, payload, field in attempts:
        if (settings.backend_url, path) in _missing:
            continue
        try:
            async with session.post(
                settings.backend_url + path, data=_enc(payload), headers=headers, timeout=timeout
            ) as resp:
                if resp.status in (404, 405):
                    _missing.add((settings.backend_url, path))
                    continue
                if resp.status == 200:
                    count = msgspec.json.decode(await resp.read()).get(field)
                    if isinstance(count, int):
                        return count
        except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError, AttributeError):
            log.warning("token counting at %s failed; estimating", path)
            break
    return estimate(body)
