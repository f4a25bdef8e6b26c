"""Ops to Anthropic Messages: the event stream, or one message.

Blocks come in generation order and never overlap: a thinking block is
closed (with its ``signature_delta``) before a text block opens, and so on.
The signature is an HMAC of the thinking text under the proxy's secret,
computed incrementally as the thinking streams, so the proxy can recognise
its own thinking blocks when a client sends them back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import msgspec

from ..errors import ProxyError, anthropic_error_body
from ..shape import CALL_ARGS, CALL_END, CALL_START, REASONING, TEXT, Op
from ..turn import Turn

__all__ = ["AnthropicResult", "AnthropicStream", "sign_thinking", "stop_reason"]

_enc = msgspec.json.Encoder().encode


def sign_thinking(secret: str, text: str) -> str:
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def is_own_thinking(secret: str, text: str, signature: Any) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(
        signature, sign_thinking(secret, text)
    )


def stop_reason(
    finish: str | None, raw_stop: Any, calls: int, stop_sequences: tuple[str, ...]
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence) from the backend's finish reason."""
    if finish == "length":
        return "max_tokens", None
    if calls:
        return "tool_use", None
    if isinstance(raw_stop, str) and raw_stop in stop_sequences:
        return "stop_sequence", raw_stop
    return "end_turn", None


def usage_dict(turn: Turn) -> dict[str, int]:
    """Anthropic counts cache reads apart: ``input_tokens`` are the uncached ones."""
    cached = turn.cached_tokens
    return {
        "input_tokens": turn.prompt_tokens - cached,
        "output_tokens": turn.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def _event(name: bytes, data: bytes) -> bytes:
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


class AnthropicStream:
    """Writes the Messages event stream for one response."""

    def __init__(
        self, message_id: str, model: str, secret: str, stop_sequences: tuple[str, ...] = ()
    ) -> None:
        self._id = message_id
        self._model = model
        self._secret = secret.encode()
        self._stops = stop_sequences
        self._kind: int | None = None  # the open block: REASONING, TEXT or CALL_START
        self._index = -1
        self._call = -1  # the index of the open call, when the open block is one
        self._delta_head = b""
        self._mac: Any = None

    @staticmethod
    def ping() -> bytes:
        return b'event: ping\ndata: {"type": "ping"}\n\n'

    def start(self) -> bytes:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return _event(b"message_start", _enc({"type": "message_start", "message": message}))

    def ops(self, ops: list[Op]) -> bytes:
        out: list[bytes] = []
        for op in ops:
            kind = op[0]
            if kind == CALL_ARGS:
                out.append(self._delta_head + b'"input_json_delta","partial_json":')
                out.append(_enc(op[2]) + b"}}\n\n")
            elif kind == TEXT:
                if self._kind != TEXT:
                    self._open(TEXT, {"type": "text", "text": ""}, out)
                out.append(self._delta_head + b'"text_delta","text":' + _enc(op[1]) + b"}}\n\n")
            elif kind == REASONING:
                if self._kind != REASONING:
                    self._open(
                        REASONING, {"type": "thinking", "thinking": "", "signature": ""}, out
                    )
                    self._mac = hmac.new(self._secret, b"", hashlib.sha256)
                self._mac.update(op[1].encode())
                out.append(
                    self._delta_head + b'"thinking_delta","thinking":' + _enc(op[1]) + b"}}\n\n"
                )
            elif kind == CALL_START:
                use = {"type": "tool_use", "id": op[2], "name": op[3], "input": {}}
                self._open(CALL_START, use, out)
                self._call = op[1]
            elif kind == CALL_END and self._kind == CALL_START and self._call == op[1]:
                self._close(out)
        return b"".join(out)

    def end(self, turn: Turn, calls: int) -> bytes:
        reason, sequence = stop_reason(turn.finish_reason, turn.stop_reason, calls, self._stops)
        out: list[bytes] = []
        if self._kind == CALL_START:
            self._kind = None  # a call the model never finished: no content_block_stop
        self._close(out)
        delta: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage_dict(turn),
        }
        out.append(_event(b"message_delta", _enc(delta)))
        out.append(_event(b"message_stop", b'{"type":"message_stop"}'))
        return b"".join(out)

    @staticmethod
    def error(err: ProxyError) -> bytes:
        if err.status < 500 and err.code != "backend_timeout":
            body = anthropic_error_body(err)
        else:
            # Mid-stream trouble is the backend's: Anthropic clients retry overloaded_error.
            body = _enc(
                {"type": "error", "error": {"type": "overloaded_error", "message": err.message}}
            )
        return _event(b"error", body)

    def _open(self, kind: int, block: dict[str, object], out: list[bytes]) -> None:
        self._close(out)
        self._kind = kind
        self._index += 1
        index = str(self._index).encode()
        start = {"type": "content_block_start", "index": self._index, "content_block": block}
        out.append(_event(b"content_block_start", _enc(start)))
        self._delta_head = (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
            + index
            + b',"delta":{"type":'
        )

    def _close(self, out: list[bytes]) -> None:
        if self._kind is None:
            return
        if self._kind == REASONING:
            signature = base64.b64encode(self._mac.digest()).decode()
            out.append(self._delta_head + b'"signature_delta","signature":')
            out.append(_enc(signature) + b"}}\n\n")
        stop = b'{"type":"content_block_stop","index":' + str(self._index).encode() + b"}"
        out.append(_event(b"content_block_stop", stop))
        self._kind = None


class AnthropicResult:
    """Collects ops into one ``message`` body."""

    def __init__(
        self, message_id: str, model: str, secret: str, stop_sequences: tuple[str, ...] = ()
    ) -> None:
        self._id, self._model, self._stops = message_id, model, stop_sequences
        self._secret = secret
        self._blocks: list[dict[str, Any]] = []
        self._parts: list[str] = []  # text of the open thinking or text block
        self._uses: dict[str, dict[str, Any]] = {}  # tool_use blocks by id

    def ops(self, ops: list[Op]) -> None:
        for op in ops:
            kind = op[0]
            if kind in (TEXT, REASONING):
                want = "text" if kind == TEXT else "thinking"
                if not self._blocks or self._blocks[-1]["type"] != want:
                    self._end_text()
                    self._blocks.append({"type": want})
                self._parts.append(op[1])
            elif kind == CALL_START:
                self._end_text()
                use = {"type": "tool_use", "id": op[2], "name": op[3]}
                self._uses[op[2]] = use
                self._blocks.append(use)
            elif kind == CALL_END:
                # By id: a backend's own parser ends all its calls at the end of output.
                self._uses[op[2]]["input"] = op[4]

    def _end_text(self) -> None:
        if not self._parts:
            return
        text = "".join(self._parts)
        self._parts = []
        block = self._blocks[-1]
        if block["type"] == "text":
            block["text"] = text
        else:
            block["thinking"] = text
            block["signature"] = sign_thinking(self._secret, text)

    def body(self, turn: Turn, calls: int) -> bytes:
        reason, sequence = stop_reason(turn.finish_reason, turn.stop_reason, calls, self._stops)
        usage = usage_dict(turn)
        self._end_text()
        # A tool_use block gets its input when the model finished the call; one it did
        # not finish (cut by max_tokens) is left out.
        blocks = [b for b in self._blocks if b["type"] != "tool_use" or "input" in b]
        return _enc(
            {
                "id": self._id,
                "type": "message",
                "role": "assistant",
                "model": self._model,
                "content": blocks,
                "stop_reason": reason,
                "stop_sequence": sequence,
                "usage": usage,
            }
        )
