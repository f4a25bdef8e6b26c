"""Ops to a Responses API answer: the event stream, or one response object.

Output items come in generation order, one at a time: ``reasoning``
(``rs_…``), ``message`` (``msg_…``), ``function_call`` (``fc_…``) or
``custom_tool_call`` (``ctc_…``). Each is ``output_item.added``, then its part
(if it has one), its deltas, the ``.done`` events and ``output_item.done``
with the whole item, because Codex runs tools and records history only from
``output_item.done`` and the openai SDK's stream helper checks the order.
``sequence_number`` counts every event, keep-alives included.

Per delta the work is one small encode and a join: each item's event heads
are built once when it opens.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from ..errors import ProxyError
from ..shape import CALL_ARGS, CALL_END, CALL_START, REASONING, TEXT, Op
from ..turn import Turn
from .carry import seal_reasoning
from .freeform import InputStream
from .reader import Echo

__all__ = ["ResponsesResult", "ResponsesStream", "response_object"]

_enc = msgspec.json.Encoder().encode
_CALL = CALL_START


def usage_dict(turn: Turn) -> dict[str, Any]:
    prompt, completion = turn.prompt_tokens, turn.completion_tokens
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": turn.cached_tokens},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": min(turn.reasoning_deltas, completion)},
        "total_tokens": prompt + completion,
    }


def response_object(
    response_id: str,
    created: int,
    model: str,
    echo: Echo,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The Response object, with the request's fields echoed as OpenAI does."""
    f = echo.fields
    obj: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": f["background"],
        "error": error,
        "incomplete_details": ({"reason": "max_output_tokens"} if status == "incomplete" else None),
        "instructions": f["instructions"],
        "max_output_tokens": f["max_output_tokens"],
        "model": model,
        "output": output,
        "parallel_tool_calls": f["parallel_tool_calls"],
        "previous_response_id": f["previous_response_id"],
        "prompt_cache_key": f["prompt_cache_key"],
        "reasoning": f["reasoning"] or {"effort": None, "summary": None},
        "safety_identifier": f["safety_identifier"],
        "service_tier": f["service_tier"] or "default",
        "store": f["store"],
        "temperature": f["temperature"],
        "text": f["text"] or {"format": {"type": "text"}},
        "tool_choice": f["tool_choice"],
        "tools": f["tools"],
        "top_p": f["top_p"],
        "truncation": f["truncation"] or "disabled",
        "usage": usage,
        "user": f["user"],
        "metadata": f["metadata"] or {},
    }
    if f["conversation"] is not None:
        obj["conversation"] = f["conversation"]
    if status == "completed":
        obj["completed_at"] = int(time.time())
    return obj


def _status(turn: Turn) -> str:
    # A cut-off answer is incomplete, tool calls or not: the calls may be cut too.
    return "incomplete" if turn.finish_reason == "length" else "completed"


def _head(kind: str) -> bytes:
    return (
        b"event: " + kind.encode() + b'\ndata: {"type":"' + kind.encode() + b'","sequence_number":'
    )


_TEXT_DELTA = _head("response.output_text.delta")
_SUMMARY_DELTA = _head("response.reasoning_summary_text.delta")
_REASONING_DELTA = _head("response.reasoning_text.delta")
_ARGS_DELTA = _head("response.function_call_arguments.delta")
_INPUT_DELTA = _head("response.custom_tool_call_input.delta")
_BRIEF = ("id", "object", "created_at", "status", "model", "output")


class ResponsesResult:
    """Collects ops into output items; the base of the stream writer, which adds events.

    Args:
        echo: what the request asked for (reader.Echo).
        raw_reasoning: reasoning as ``reasoning_text`` content, not a summary.
    """

    def __init__(
        self,
        response_id: str,
        created: int,
        model: str,
        echo: Echo,
        secret: str,
        raw_reasoning: bool = False,
    ) -> None:
        self.id, self._created, self._model = response_id, created, model
        self._echo, self._secret, self._raw = echo, secret, raw_reasoning
        self.items: list[dict[str, Any]] = []  # output items done, in order
        self.final: dict[str, Any] | None = None  # the response object, once ended
        self._kind: int | None = None  # the open item: REASONING, TEXT or _CALL
        self._item: dict[str, Any] = {}
        self._parts: list[str] = []
        self._call_index = -1
        self._custom = False
        self._input = InputStream()  # the open custom call's input, as it streams

    def ops(self, ops: list[Op]) -> None:
        for op in ops:
            self._op(op)

    def _op(self, op: Op) -> None:
        kind = op[0]
        if kind in (TEXT, REASONING):
            if self._kind != kind:
                self._open_text(kind)
            self._parts.append(op[1])
            self._delta(self._delta_head, op[1])
        elif kind == CALL_ARGS:
            if self._kind == _CALL and op[1] == self._call_index:
                self._parts.append(op[2])
                if not self._custom:
                    self._delta(_ARGS_DELTA, op[2])
                else:
                    text = self._input.feed(op[2])
                    if text:
                        self._delta(_INPUT_DELTA, text)
        elif kind == CALL_START:
            self._open_call(op[1], op[2], op[3])
        elif kind == CALL_END and self._kind == _CALL and op[1] == self._call_index:
            self._close("completed", op[4])

    def body(self, turn: Turn, calls: int) -> bytes:
        self._finish("completed")
        status = _status(turn)
        self.final = self._response(status, self.items, usage_dict(turn))
        return _enc(self.final)

    # -- items ------------------------------------------------------------------

    def _open_text(self, kind: int) -> None:
        self._close("completed")
        self._kind = kind
        if kind == TEXT:
            self._item = {"id": "msg_" + self.id[5:] + f"_{len(self.items)}", "type": "message"}
            self._item.update(status="in_progress", content=[], role="assistant")
        else:
            self._item = {"id": "rs_" + self.id[5:] + f"_{len(self.items)}", "type": "reasoning"}
            self._item.update(summary=[], status="in_progress")
        self._added()

    def _open_call(self, index: int, call_id: str, flat_name: str) -> None:
        self._close("completed")
        self._kind, self._call_index = _CALL, index
        self._custom = flat_name in self._echo.custom
        self._input = InputStream()
        n = len(self.items)
        if self._custom:
            item = {
                "id": f"ctc_{self.id[5:]}_{n}",
                "type": "custom_tool_call",
                "status": "in_progress",
            }
            item.update(call_id=call_id, name=flat_name, input="")
        else:
            item = {"id": f"fc_{self.id[5:]}_{n}", "type": "function_call"}
            ns = self._echo.namespaces.get(flat_name)
            name = ns[1] if ns else flat_name
            item.update(status="in_progress", call_id=call_id, name=name, arguments="")
            if ns:
                item["namespace"] = ns[0]
        self._item = item
        self._added()

    def _finish(self, status: str) -> None:
        """At the end of the response: close the open text or reasoning item. An open call
        never got its end from the model (cut by a failure or max_tokens): it gets no
        ``.done`` events and stays out of ``output``, because clients run a call as soon
        as its ``output_item.done`` arrives."""
        if self._kind == _CALL:
            self._kind, self._parts = None, []
        else:
            self._close(status)

    def _close(self, status: str, arguments: Any = None) -> None:
        """Finish the open item (if any) with what it received."""
        if self._kind is None:
            return
        kind, item, text = self._kind, self._item, "".join(self._parts)
        self._kind, self._parts = None, []
        if kind == TEXT:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            item["content"] = [part]
        elif kind == REASONING:
            if self._raw:
                item["content"] = [{"type": "reasoning_text", "text": text}]
            else:
                item["summary"] = [{"type": "summary_text", "text": text}]
            if self._echo.encrypted:
                item["encrypted_content"] = seal_reasoning(self._secret, text)
        elif self._custom:
            item["input"] = self._custom_input(arguments, text)
        else:
            item["arguments"] = text or "{}"
        item["status"] = status
        self._done(kind, item)
        self.items.append(item)

    def _custom_input(self, arguments: Any, text: str) -> str:
        """A custom call's input; never other than what its deltas already said."""
        if not isinstance(arguments, dict):  # closed before its end: what was streamed
            try:
                arguments = msgspec.json.decode(text)
            except msgspec.DecodeError:
                arguments = None
        found = arguments.get("input") if isinstance(arguments, dict) else None
        sent = "".join(self._input.sent)
        if isinstance(found, str) and found.startswith(sent):
            return found
        return sent or (found if isinstance(found, str) else text)

    def _response(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return response_object(
            self.id, self._created, self._model, self._echo, status, output, usage, error
        )

    # -- events: nothing here; the stream writer writes them ---------------------

    _delta_head = b""
    _delta_mid = b""

    def _delta(self, head: bytes, text: str) -> None:
        pass

    def _added(self) -> None:
        pass

    def _done(self, kind: int, item: dict[str, Any]) -> None:
        pass


class ResponsesStream(ResponsesResult):
    """Writes the Responses event stream for one response."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._n = 0  # the next sequence_number
        self._out: list[bytes] = []
        self._ping = b""

    def start(self) -> bytes:
        snapshot = self._response("in_progress", [])
        whole = b',"response":' + _enc(snapshot) + b"}\n\n"
        # Keep-alives repeat only what identifies the response: a client's tools can
        # make the whole object tens of kilobytes.
        brief = {k: snapshot[k] for k in _BRIEF}
        self._ping = b',"response":' + _enc(brief) + b"}\n\n"
        created = _head("response.created") + self._seq() + whole
        return created + _head("response.in_progress") + self._seq() + whole

    def ping(self) -> bytes:
        """``response.in_progress``: an event (Codex's idle timer counts events, not
        comments) that the openai SDK accepts at any point of the stream."""
        return _head("response.in_progress") + self._seq() + self._ping

    def ops(self, ops: list[Op]) -> bytes:  # type: ignore[override]
        out = self._out
        for op in ops:
            kind = op[0]
            if kind == self._kind and kind != _CALL:
                # More text for the open item (nearly every op): one event, built inline.
                self._parts.append(op[1])
                n = self._n
                self._n = n + 1
                text = _enc(op[1])
                out.append(self._delta_head + str(n).encode() + self._delta_mid + text + b"}\n\n")
            else:
                self._op(op)
        return self._flush()

    def _delta(self, head: bytes, text: str) -> None:
        self._out.append(head + self._seq() + self._delta_mid + _enc(text) + b"}\n\n")

    def end(self, turn: Turn, calls: int) -> bytes:
        self._finish("completed")
        status = _status(turn)
        self.final = self._response(status, self.items, usage_dict(turn))
        self._out.append(self._event(f"response.{status}", {"response": self.final}))
        return self._flush()

    def error(self, err: ProxyError) -> bytes:
        self._finish("incomplete")
        code = err.code if err.code and not err.code.startswith("backend_") else "server_error"
        error = {"code": code, "message": err.message}
        self.final = self._response("failed", self.items, error=error)
        self._out.append(self._event("response.failed", {"response": self.final}))
        return self._flush()

    def cancelled(self) -> bytes:
        """The end of a cancelled background response: what was done, and the open item
        as far as it got."""
        self._close("incomplete")
        self.final = self._response("cancelled", self.items)
        self._out.append(self._event("response.cancelled", {"response": self.final}))
        return self._flush()

    def snapshot(self, status: str) -> dict[str, Any]:
        """The response object as it stands: the items done so far."""
        return self._response(status, list(self.items))

    def _flush(self) -> bytes:
        out = self._out
        if len(out) == 1:
            return out.pop()
        data = b"".join(out)
        out.clear()
        return data

    def _seq(self) -> bytes:
        n = self._n
        self._n = n + 1
        return str(n).encode()

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        data = _enc({"type": kind, "sequence_number": self._n, **fields})
        self._n += 1
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"

    def _at(self, **more: Any) -> dict[str, Any]:
        return {"item_id": self._item["id"], "output_index": len(self.items), **more}

    def _added(self) -> None:
        index = len(self.items)
        self._out.append(
            self._event("response.output_item.added", {"output_index": index, "item": self._item})
        )
        kind = self._kind
        where = b',"item_id":' + _enc(self._item["id"]) + b',"output_index":' + str(index).encode()
        if kind == TEXT:
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            self._out.append(
                self._event("response.content_part.added", self._at(content_index=0, part=part))
            )
            self._delta_head = _TEXT_DELTA
            self._delta_mid = where + b',"content_index":0,"logprobs":[],"delta":'
        elif kind == REASONING and self._raw:
            part = {"type": "reasoning_text", "text": ""}
            self._out.append(
                self._event("response.content_part.added", self._at(content_index=0, part=part))
            )
            self._delta_head = _REASONING_DELTA
            self._delta_mid = where + b',"content_index":0,"delta":'
        elif kind == REASONING:
            part = {"type": "summary_text", "text": ""}
            self._out.append(
                self._event(
                    "response.reasoning_summary_part.added", self._at(summary_index=0, part=part)
                )
            )
            self._delta_head = _SUMMARY_DELTA
            self._delta_mid = where + b',"summary_index":0,"delta":'
        else:
            self._delta_mid = where + b',"delta":'

    def _done(self, kind: int, item: dict[str, Any]) -> None:
        ev = self._out
        if kind == TEXT:
            part = item["content"][0]
            ev.append(
                self._event(
                    "response.output_text.done",
                    self._at(content_index=0, text=part["text"], logprobs=[]),
                )
            )
            ev.append(
                self._event("response.content_part.done", self._at(content_index=0, part=part))
            )
        elif kind == REASONING and self._raw:
            part = item["content"][0]
            ev.append(
                self._event(
                    "response.reasoning_text.done", self._at(content_index=0, text=part["text"])
                )
            )
            ev.append(
                self._event("response.content_part.done", self._at(content_index=0, part=part))
            )
        elif kind == REASONING:
            part = item["summary"][0]
            ev.append(
                self._event(
                    "response.reasoning_summary_text.done",
                    self._at(summary_index=0, text=part["text"]),
                )
            )
            ev.append(
                self._event(
                    "response.reasoning_summary_part.done", self._at(summary_index=0, part=part)
                )
            )
        elif item["type"] == "custom_tool_call":
            # What did not stream (arguments of another shape, a call cut short) goes now.
            sent = "".join(self._input.sent)
            rest = item["input"][len(sent) :] if item["input"].startswith(sent) else ""
            if rest:
                ev.append(
                    self._event("response.custom_tool_call_input.delta", self._at(delta=rest))
                )
            ev.append(
                self._event("response.custom_tool_call_input.done", self._at(input=item["input"]))
            )
        else:
            ev.append(
                self._event(
                    "response.function_call_arguments.done",
                    self._at(name=item["name"], arguments=item["arguments"]),
                )
            )
        ev.append(
            self._event(
                "response.output_item.done", {"output_index": len(self.items), "item": item}
            )
        )
