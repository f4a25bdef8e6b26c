"""Errors the proxy reports, and their bodies in each API's own shape.

Everything that goes wrong for a request ends up as a :class:`ProxyError`
at one boundary, and each dialect renders it: OpenAI as
``{"error": {"message", "type", "param", "code"}}``, Anthropic as
``{"type": "error", "error": {"type", "message"}}``. The status code drives
the SDKs' retry logic, so bad input is a 400 (never retried) and backend
trouble a 502/503/504.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["ProxyError", "anthropic_error_body", "openai_error_body"]

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}

_encode = msgspec.json.Encoder().encode


class ProxyError(Exception):
    """A failure with the status, message and code a client should see.

    Args:
        status: HTTP status.
        message: what went wrong, for a person.
        code: a machine-readable code (``context_length_exceeded``, ``backend_timeout`` …).
        param: the request field at fault, if any.
        retry_after: seconds, sent as ``Retry-After`` so SDKs back off correctly.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"retry-after": self.retry_after} if self.retry_after else {}


def openai_error_body(err: ProxyError) -> bytes:
    kind = _OPENAI_TYPES.get(err.status, "server_error")
    error: dict[str, Any] = {"message": err.message, "type": kind, "param": err.param}
    error["code"] = err.code
    return _encode({"error": error})


def anthropic_error_body(err: ProxyError, request_id: str | None = None) -> bytes:
    kind = _ANTHROPIC_TYPES.get(err.status, "api_error")
    message = err.message
    if err.code == "context_length_exceeded" and "prompt is too long" not in message:
        # Claude Code triggers auto-compaction on Anthropic's own wording.
        message = f"prompt is too long: {message}"
    body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    if request_id:
        body["request_id"] = request_id
    return _encode(body)
