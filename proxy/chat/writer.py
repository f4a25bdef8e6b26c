"""Ops to OpenAI chat-completion chunks (streaming) or one chat completion.

Every chunk of a response shares one envelope (``id``, ``object``,
``created``, ``model``), so it is encoded once and each chunk only encodes
its delta: per token the work is one small msgspec encode and a join.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import ProxyError, openai_error_body
from ..shape import CALL_ARGS, CALL_END, CALL_START, LOGPROBS, REASONING, TEXT, Op
from ..turn import Turn

__all__ = ["OpenAIResult", "OpenAIStream", "finish_reason", "usage_dict"]

_enc = msgspec.json.Encoder().encode
_dec = msgspec.json.decode
DONE = b"data: [DONE]\n\n"
_DETAIL_HEAD = b'"reasoning_details":[{"type":"reasoning.text","id":"reasoning-text-1","format":"MiniMax-response-v1","index":0,"text":'  # noqa: E501


def finish_reason(backend: str | None, calls: int) -> str:
    """``length`` wins (a cut-off call is no reason to run tools); then tool calls."""
    if backend == "length":
        return "length"
    if calls:
        return "tool_calls"
    return backend if backend in ("stop", "content_filter") else "stop"


def usage_dict(turn: Turn) -> dict[str, Any]:
    prompt, completion = turn.prompt_tokens, turn.completion_tokens
    total = turn.usage.total_tokens if turn.usage is not None else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": turn.cached_tokens},
    }


class OpenAIStream:
    """Writes SSE bytes for one streamed response."""

    def __init__(self, response_id: str, created: int, model: str, include_usage: bool) -> None:
        envelope = (
            b'{"id":'
            + _enc(response_id)
            + b',"object":"chat.completion.chunk","created":'
            + str(created).encode()
            + b',"model":'
            + _enc(model)
        )
        self._envelope = envelope
        self._head = b"data: " + envelope + b',"choices":[{"index":0,"delta":'
        self._tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self._include_usage = include_usage

    @staticmethod
    def ping() -> bytes:
        return b": ping\n\n"  # an SSE comment: the openai SDK skips it

    def start(self) -> bytes:
        return self._head + b'{"role":"assistant","content":""}' + self._tail

    def ops(self, ops: list[Op]) -> bytes:
        parts = []
        head, tail = self._head, self._tail
        for op in ops:
            kind = op[0]
            if kind == TEXT:
                parts.append(head + b'{"content":' + _enc(op[1]) + b"}" + tail)
            elif kind == REASONING:
                t = _enc(op[1])
                delta = b'{"reasoning_content":' + t + b"," + _DETAIL_HEAD + t + b"}]}"
                parts.append(head + delta + tail)
            elif kind == CALL_ARGS:
                parts.append(
                    head
                    + b'{"tool_calls":[{"index":'
                    + str(op[1]).encode()
                    + b',"function":{"arguments":'
                    + _enc(op[2])
                    + b"}}]}"
                    + tail
                )
            elif kind == CALL_START:
                parts.append(
                    head
                    + b'{"tool_calls":[{"index":'
                    + str(op[1]).encode()
                    + b',"id":'
                    + _enc(op[2])
                    + b',"type":"function","function":{"name":'
                    + _enc(op[3])
                    + b',"arguments":""}}]}'
                    + tail
                )
            elif kind == LOGPROBS:
                # One chunk per backend chunk, its logprobs as the backend gave them.
                for raw in op[1]:
                    parts.append(head + b'{},"logprobs":' + raw + b',"finish_reason":null}]}\n\n')
        return b"".join(parts)

    def end(self, turn: Turn, calls: int) -> bytes:
        reason = finish_reason(turn.finish_reason, calls)
        usage = usage_dict(turn)
        out = self._head + b"{}," + b'"logprobs":null,"finish_reason":' + _enc(reason) + b"}]}\n\n"
        if self._include_usage:
            out += b"data: " + self._envelope + b',"choices":[],"usage":' + _enc(usage) + b"}\n\n"
        return out + DONE

    @staticmethod
    def error(err: ProxyError) -> bytes:
        return b"data: " + openai_error_body(err) + b"\n\n" + DONE


class OpenAIResult:
    """Collects ops into one ``chat.completion`` body."""

    def __init__(self, response_id: str, created: int, model: str, split_reasoning: bool) -> None:
        self._id, self._created, self._model = response_id, created, model
        self._split = split_reasoning
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._ended: set[int] = set()  # calls the model finished; only these are returned
        self._logprobs: list[Any] | None = None

    def ops(self, ops: list[Op]) -> None:
        for op in ops:
            kind = op[0]
            if kind == TEXT:
                self._text.append(op[1])
            elif kind == REASONING:
                self._reasoning.append(op[1])
            elif kind == CALL_ARGS:
                self._calls[op[1]]["function"]["arguments"].append(op[2])
            elif kind == CALL_START:
                fn = {"name": op[3], "arguments": []}
                self._calls[op[1]] = {"id": op[2], "type": "function", "function": fn}
            elif kind == CALL_END:
                self._ended.add(op[1])
            elif kind == LOGPROBS:
                if self._logprobs is None:
                    self._logprobs = []
                for raw in op[1]:
                    part = _dec(raw)
                    if isinstance(part, dict) and isinstance(part.get("content"), list):
                        self._logprobs += part["content"]

    def body(self, turn: Turn, calls: int) -> bytes:
        reason = finish_reason(turn.finish_reason, calls)
        usage = usage_dict(turn)
        text = "".join(self._text)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if self._split and self._reasoning:
            reasoning = "".join(self._reasoning)
            message["reasoning_content"] = reasoning
            message["reasoning_details"] = [
                {
                    "type": "reasoning.text",
                    "id": "reasoning-text-1",
                    "format": "MiniMax-response-v1",
                    "index": 0,
                    "text": reasoning,
                }
            ]
        ended = [call for index, call in self._calls.items() if index in self._ended]
        if ended:
            tool_calls = []
            for call in ended:
                fn = call["function"]
                joined = {**fn, "arguments": "".join(fn["arguments"])}
                tool_calls.append({**call, "function": joined})
            message["tool_calls"] = tool_calls
        elif not text:
            message["content"] = ""
        return _enc(
            {
                "id": self._id,
                "object": "chat.completion",
                "created": self._created,
                "model": self._model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None if self._logprobs is None else {"content": self._logprobs},
                        "finish_reason": reason,
                    }
                ],
                "usage": usage,
            }
        )
