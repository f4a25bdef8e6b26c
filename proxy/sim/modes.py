"""How the simulated backend behaves like each real server (``--mode``).

- ``tabby``: TabbyAPI without ``tool_format``: the raw text in ``content``; with
  ``tool_choice: "none"`` the model makes no call.
- ``vllm``: a stock ``vllm serve`` (no parser flags): tools with a missing or
  ``"auto"`` tool_choice get vLLM's 400; with ``"none"`` the tools are still
  rendered into the prompt (the model may call them) and the raw text comes back.
- ``vllm-parsers``: vLLM with ``--enable-auto-tool-choice --tool-call-parser minimax_m2
  --reasoning-parser minimax_m2``: reasoning in ``reasoning`` (``reasoning_content`` before
  vLLM 0.11: ``SimOptions.reasoning_field``); with tools and no
  ``"none"``, tool calls parsed by vLLM and streamed whole (one delta per invoke);
  with ``"none"``, no tool parser runs and the raw XML stays in ``content``.
- ``vllm-append-think``: the same with ``--reasoning-parser minimax_m2_append_think``:
  everything in ``content``, ``<think>`` put back in front.
- ``sglang``: SGLang without parsers: raw; ``tool_choice: "none"`` drops the tools
  from the prompt.

Whatever the mode, a request with image parts gets a 400 unless the server is
``multimodal`` (MiniMax-M2 reads text only).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

__all__ = ["MODES", "PARSING", "deltas", "message", "model_view", "refusal"]

MODES = ("tabby", "vllm", "vllm-parsers", "vllm-append-think", "sglang")
PARSING = ("vllm-parsers", "vllm-append-think")  # modes whose server parses the output
_VLLM = ("vllm", "vllm-parsers", "vllm-append-think")
AUTO_REFUSAL = (
    '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
)
_BLOCK = re.compile(r"<minimax:tool_call>(.*?)</minimax:tool_call>", re.S)
_INVOKE = re.compile(r'<invoke name="([^"]*)">(.*?)</invoke>', re.S)
_PARAM = re.compile(r'<parameter name="([^"]*)">(.*?)</parameter>', re.S)


def _has_images(body: dict[str, Any]) -> bool:
    for m in body.get("messages") or ():
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list) and any(
            isinstance(p, dict) and p.get("type") == "image_url" for p in content
        ):
            return True
    return False


def refusal(mode: str, body: dict[str, Any], multimodal: bool) -> tuple[int, Any] | None:
    """(status, JSON body) of the error this server answers ``body`` with, or None."""
    if not multimodal and _has_images(body):
        text = "MiniMaxM2ForCausalLM is not a multimodal model (simulated)"
        return 400, {"error": {"message": text, "type": "BadRequestError", "code": 400}}
    if mode == "vllm" and body.get("tools") and body.get("tool_choice", "auto") == "auto":
        error = {"message": AUTO_REFUSAL, "type": "BadRequestError", "param": None, "code": 400}
        return 400, {"error": error}
    return None


def model_view(mode: str, body: dict[str, Any]) -> dict[str, Any]:
    """The request as the model sees it, for choosing the reply."""
    if body.get("tool_choice") != "none":
        return body
    if mode in _VLLM:  # the template still renders the tools
        return {k: v for k, v in body.items() if k != "tool_choice"}
    if mode == "sglang":
        return {k: v for k, v in body.items() if k != "tools"}
    return body


def _parses_tools(mode: str, body: dict[str, Any]) -> bool:
    return mode in PARSING and body.get("tool_choice") != "none"


def _typed(value: str, schema: Any) -> Any:
    """vLLM's minimax_m2 tool parser types values by the tool's schema."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if kind == "string":
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _call(name: str, inner: str, tools: list[Any]) -> dict[str, Any]:
    fn: dict[str, Any] = next(
        (t["function"] for t in tools if t.get("function", {}).get("name") == name), {}
    )
    props = (fn.get("parameters") or {}).get("properties") or {}
    args = {k: _typed(v, props.get(k)) for k, v in _PARAM.findall(inner)}
    return {"name": name, "arguments": json.dumps(args, ensure_ascii=False)}


def _segments(mode: str, raw: str, body: dict[str, Any]) -> tuple[str, list[tuple[str, int, Any]]]:
    """The text the server's parsers read, cut into (kind, end, payload) segments in order.

    Kinds: ``reasoning``, ``content``, ``skip`` (markup a parser took out), ``call``
    (an invoke, sent whole when its last character has been generated).
    """
    text, start = raw, 0
    out: list[tuple[str, int, Any]] = []
    if mode == "vllm-append-think":
        text = "<think>" + raw
    elif mode == "vllm-parsers":
        end = raw.find("</think>")
        end = len(raw) if end < 0 else end
        out += [("reasoning", end, None), ("skip", min(end + 8, len(raw)), None)]
        start = out[-1][1]
    if _parses_tools(mode, body):
        tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
        for block in _BLOCK.finditer(text, start):
            out.append(("content", block.start(), None))
            for invoke in _INVOKE.finditer(text, block.start(1), block.end(1)):
                out.append(("call", invoke.end(), _call(invoke[1], invoke[2], tools)))
            out.append(("skip", block.end(), None))
    out.append(("content", len(text), None))
    return text, out


def deltas(
    mode: str, raw: str, pieces: list[str], body: dict[str, Any], field: str = "reasoning"
) -> list[dict[str, Any]]:
    """The stream's deltas: ``pieces`` (the raw text's tokens) as a :data:`PARSING` server
    sends them, reasoning in ``field``."""
    text, segments = _segments(mode, raw, body)
    if mode == "vllm-append-think":
        pieces = ["<think>" + pieces[0], *pieces[1:]] if pieces else ["<think>"]
    out: list[dict[str, Any]] = []
    calls, pos, seg, seg_start = 0, 0, 0, 0
    for piece in pieces:
        end = pos + len(piece)
        while seg < len(segments) and seg_start < end:
            kind, seg_end, payload = segments[seg]
            lo, hi = max(pos, seg_start), min(end, seg_end)
            if kind in ("reasoning", "content") and hi > lo:
                out.append({field if kind == "reasoning" else kind: text[lo:hi]})
            elif kind == "call" and seg_end <= end:
                out.append({"tool_calls": [_tool_delta(calls, payload)]})
                calls += 1
            if seg_end > end:
                break
            seg, seg_start = seg + 1, seg_end
        pos = end
    return out


def _tool_delta(index: int, call: dict[str, Any]) -> dict[str, Any]:
    return {"index": index, "id": f"chatcmpl-tool-{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": call["name"], "arguments": call["arguments"]}}  # fmt: skip


def message(mode: str, raw: str, body: dict[str, Any], field: str = "reasoning") -> dict[str, Any]:
    """The non-streamed ``message`` for ``raw``."""
    if mode not in PARSING:
        return {"role": "assistant", "content": raw}
    parts = deltas(mode, raw, [raw], body, field)
    msg: dict[str, Any] = {"role": "assistant", "content": None}
    for d in parts:
        for key in (field, "content"):
            if key in d:
                msg[key] = (msg.get(key) or "") + d[key]
        if "tool_calls" in d:
            msg.setdefault("tool_calls", []).append(d["tool_calls"][0])
    if msg["content"] is None and "tool_calls" not in msg:
        msg["content"] = ""
    return msg
