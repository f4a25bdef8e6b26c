"""A strict checker of the Responses event stream, as Codex and the openai SDK read it.

``check(text)`` parses one SSE response body and raises AssertionError at the first
event that breaks the grammar: ``response.created`` then ``response.in_progress``;
items one at a time (``output_item.added`` → part added → deltas → ``.done`` events →
``output_item.done`` with the whole item); ``output_index`` the item's position;
``sequence_number`` 0, 1, 2, …; text in ``.done`` events equal to the deltas joined;
one terminal event last, whose ``output`` holds exactly the items done. Keep-alive
``response.in_progress`` events may come anywhere before the end. A call the model never
finished (cut by a failure or max_tokens) stays open: no ``.done`` events, not in ``output``,
and the terminal event is then ``response.failed`` or ``response.incomplete``. A stream that
starts after 0 is a background run resumed with ``starting_after``: its events must number on
and end in one terminal event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["AsyncRecording", "Checked", "Recording", "check", "events_of"]

_TERMINAL = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
    "response.cancelled": "cancelled",  # a cancelled background response
}
_DELTAS = {
    "message": ("response.output_text.delta", "response.output_text.done"),
    "function_call": (
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ),
    "custom_tool_call": (
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
    ),
}


@dataclass
class Checked:
    events: list[dict[str, Any]]
    response: dict[str, Any]  # the terminal event's response
    items: list[dict[str, Any]] = field(default_factory=list)  # from output_item.done
    deltas: dict[str, int] = field(default_factory=dict)  # item id -> delta events
    cut: dict[str, Any] | None = None  # a call left open at the end, as added


def events_of(text: str) -> list[dict[str, Any]]:
    """The events of an SSE body; the ``event:`` name must equal the data's ``type``."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next((ln[7:] for ln in lines if ln.startswith("event: ")), None)
        data = "\n".join(ln[6:] for ln in lines if ln.startswith("data: "))
        if data == "[DONE]":
            continue
        event = json.loads(data)
        assert name == event["type"], f"event: {name} carries data of type {event['type']}"
        assert "error" not in event, "a top-level error key makes the openai SDK raise"
        out.append(event)
    return out


def check(text: str) -> Checked:
    events = events_of(text)
    assert events, "no events"
    if events[0]["sequence_number"] > 0:
        return _check_tail(events)
    rid = _check_start(events)
    done: list[dict[str, Any]] = []
    deltas: dict[str, int] = {}
    item: dict[str, Any] | None = None  # the open item, as added
    text_so_far: list[str] = []
    stage = ""  # within the open item: "", "part", "text-done", "part-done"
    terminal: dict[str, Any] | None = None
    cut: dict[str, Any] | None = None
    for n, ev in enumerate(events):
        kind = ev["type"]
        assert ev["sequence_number"] == n, f"{kind}: sequence_number {ev['sequence_number']} != {n}"
        assert terminal is None, f"{kind} after the terminal event"
        where = f"event {n} ({kind})"
        if kind in ("response.created", "response.in_progress"):
            assert ev["response"]["id"] == rid
            continue
        if kind in _TERMINAL:
            if item is not None:
                assert item["type"] in ("function_call", "custom_tool_call"), (
                    f"{where}: item {item['id']} still open"
                )
                assert kind != "response.completed", f"{where}: completed with a call still open"
                cut, item = item, None
            terminal = ev["response"]
            assert terminal["id"] == rid and terminal["status"] == _TERMINAL[kind]
            assert terminal["output"] == done, f"{where}: output differs from the items done"
            if kind == "response.cancelled":
                assert terminal["background"] is True, "only background responses are cancelled"
            elif kind != "response.failed":
                usage = terminal["usage"]
                for key in ("input_tokens", "output_tokens", "total_tokens"):
                    assert isinstance(usage[key], int)
                assert isinstance(usage["input_tokens_details"]["cached_tokens"], int)
                assert isinstance(usage["output_tokens_details"]["reasoning_tokens"], int)
            else:
                assert terminal["error"]["code"] and terminal["error"]["message"]
            continue
        if kind == "response.output_item.added":
            assert item is None, f"{where}: item {item and item['id']} still open"
            assert ev["output_index"] == len(done), f"{where}: output_index"
            item = ev["item"]
            assert item["status"] == "in_progress" and item["id"]
            assert item["type"] in ("message", "reasoning", "function_call", "custom_tool_call")
            if item["type"] == "reasoning":
                assert item["summary"] == [], "summary is an array, never null"
            if item["type"] in ("function_call", "custom_tool_call"):
                assert item["call_id"] and item["name"]
            text_so_far, stage = [], ""
            deltas[item["id"]] = 0
            continue
        assert item is not None, f"{where}: no item is open"
        assert ev["output_index"] == len(done), f"{where}: output_index"
        if kind == "response.output_item.done":
            whole = ev["item"]
            assert whole["id"] == item["id"] and whole["type"] == item["type"]
            assert whole["status"] in ("completed", "incomplete")
            _check_whole(whole, "".join(text_so_far), stage, where)
            done.append(whole)
            item = None
            continue
        assert ev["item_id"] == item["id"], f"{where}: item_id"
        _check_inner(item["type"], kind, ev, stage, text_so_far, where)
        if kind.endswith(".delta"):
            deltas[item["id"]] += 1
            text_so_far.append(ev["delta"])
        stage = _next_stage(kind, stage)
    assert terminal is not None, "no terminal event"
    return Checked(events, terminal, done, deltas, cut)


def _check_start(events: list[dict[str, Any]]) -> str:
    """The response id, once the stream is seen to start as it must."""
    assert events[0]["type"] == "response.created", "the first event must be response.created"
    assert events[1]["type"] == "response.in_progress"
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == []
    return str(events[0]["response"]["id"])


def _check_tail(events: list[dict[str, Any]]) -> Checked:
    """A background stream resumed after a sequence number (``starting_after``): the
    events that follow, numbered on from there, ending in one terminal event."""
    first = events[0]["sequence_number"]
    for n, ev in enumerate(events):
        assert ev["sequence_number"] == first + n, f"{ev['type']}: sequence_number"
        assert ev["type"] != "response.created", "response.created in a resumed stream"
    ends = [ev for ev in events if ev["type"] in _TERMINAL]
    assert ends == [events[-1]], "one terminal event, last"
    return Checked(events, events[-1]["response"])


def _next_stage(kind: str, stage: str) -> str:
    if kind.endswith("part.added"):
        return "part"
    if kind.endswith("part.done"):
        return "part-done"
    if kind.endswith(".done"):
        return "text-done"
    return stage


def _check_inner(
    item_type: str, kind: str, ev: dict[str, Any], stage: str, text: list[str], where: str
) -> None:
    if item_type == "reasoning":
        summary = kind.startswith("response.reasoning_summary")
        index = "summary_index" if summary else "content_index"
        assert ev[index] == 0, f"{where}: {index}"
        if kind.endswith("part.added"):
            assert stage == "", f"{where}: a second part"
            part_type = "summary_text" if summary else "reasoning_text"
            assert ev["part"]["type"] == part_type
        elif kind.endswith(".delta"):
            assert stage == "part", f"{where}: a delta outside its part"
            assert kind in (
                "response.reasoning_summary_text.delta",
                "response.reasoning_text.delta",
            )
        elif kind.endswith("part.done"):
            assert stage == "text-done", f"{where}: part done before its text"
        else:
            assert kind in ("response.reasoning_summary_text.done", "response.reasoning_text.done")
            assert ev["text"] == "".join(text), f"{where}: text differs from the deltas"
            assert stage == "part"
        return
    delta, finished = _DELTAS[item_type]
    if item_type == "message":
        if kind == "response.content_part.added":
            assert stage == "" and ev["content_index"] == 0
            assert ev["part"]["type"] == "output_text"
            return
        assert ev["content_index"] == 0, f"{where}: content_index"
        if kind == "response.content_part.done":
            assert stage == "text-done"
            assert ev["part"]["text"] == "".join(text)
            return
        assert stage == "part", f"{where}: text outside its part"
        assert ev["logprobs"] == [], f"{where}: logprobs"
    if kind == delta:
        assert stage in ("", "part"), f"{where}: a delta after done"
    elif kind == finished:
        field_name = {"message": "text", "function_call": "arguments"}.get(item_type, "input")
        assert ev[field_name] == "".join(text), f"{where}: {field_name} differs from the deltas"
    else:
        raise AssertionError(f"{where}: unexpected inside a {item_type} item")


def _check_whole(item: dict[str, Any], text: str, stage: str, where: str) -> None:
    kind = item["type"]
    if kind == "message":
        assert stage == "part-done", f"{where}: message done before its part"
        assert item["role"] == "assistant"
        assert item["content"] == [
            {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        ]
    elif kind == "reasoning":
        assert stage == "part-done", f"{where}: reasoning done before its part"
        assert isinstance(item["summary"], list)
        texts = [p["text"] for p in item["summary"] + item.get("content", [])]
        assert texts == [text]
    elif kind == "function_call":
        assert stage == "text-done"
        assert item["arguments"] == text
        assert isinstance(json.loads(item["arguments"]), dict)
    else:
        assert stage == "text-done" and item["input"] == text


def _is_stream(resp: httpx.Response) -> bool:
    return resp.headers.get("content-type", "").startswith("text/event-stream")


class Recording(httpx.BaseTransport):
    """Keeps the bytes of every event-stream response a client reads, for :func:`check`."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.bodies: list[bytearray] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        resp = self.inner.handle_request(request)
        if not _is_stream(resp):
            return resp
        body = bytearray()
        self.bodies.append(body)
        stream = resp.stream
        assert isinstance(stream, httpx.SyncByteStream)

        class Tee(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for chunk in stream:
                    body.extend(chunk)
                    yield chunk

            def close(self) -> None:
                stream.close()

        return httpx.Response(
            resp.status_code, headers=resp.headers, stream=Tee(), extensions=resp.extensions
        )

    def close(self) -> None:
        self.inner.close()


class AsyncRecording(httpx.AsyncBaseTransport):
    """:class:`Recording` for async clients (the Agents SDK)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.bodies: list[bytearray] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        if not _is_stream(resp):
            return resp
        body = bytearray()
        self.bodies.append(body)
        stream = resp.stream
        assert isinstance(stream, httpx.AsyncByteStream)

        class Tee(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                async for chunk in stream:
                    body.extend(chunk)
                    yield chunk

            async def aclose(self) -> None:
                await stream.aclose()

        return httpx.Response(
            resp.status_code, headers=resp.headers, stream=Tee(), extensions=resp.extensions
        )

    async def aclose(self) -> None:
        await self.inner.aclose()
