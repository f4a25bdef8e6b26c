"""A simulated MiniMax-M2 backend: a test double for the model, never for the proxy.

It speaks OpenAI chat completions the way TabbyAPI does with no tool parser configured: the raw
model text goes out in ``choices[0].delta.content`` (or ``message.content``) unparsed, events are
``data: {json}\\n\\n`` and the stream ends with ``data: [DONE]``. Everything is deterministic:
the reply is chosen from the request and seeded by its text, so tests can predict it and the
request log (``GET /_sim/requests``) records what was planned and how far it got. That is
the default ``tabby`` mode; ``--mode`` (``SimOptions.mode``) gives it the manners of stock vLLM,
vLLM with its parsers, vLLM's append-think reasoning parser or SGLang instead, and a request
with image parts gets a 400 unless it is ``--multimodal`` (see ``proxy/sim/modes.py``).

Reply rules (the raw output always starts inside reasoning with no ``<think>``, because the
MiniMax-M2 template pre-opens it, and closes it with ``</think>\\n\\n``):
- the last message (user or tool) holds ``SIM_SCRIPT:{"raw", "chunks", "finish_reason",
  "usage"}``: exactly ``raw``, in deltas of the ``chunks`` sizes (characters; the rest by token);
- the last message (the user's, or a tool result) asks to "run `cmd`" and a coding agent's
  shell tool is offered (bash, exec_command, run_shell_command, run_commands, …): one call that
  runs exactly ``cmd`` (``replies._shell_call``), so an agent CLI's round trip is deterministic;
- otherwise, the last message is a tool result: a final answer quoting its first 40 characters;
- tools are present (and ``tool_choice`` is not "none"): a sentence and one call to the first
  (or the named) tool, arguments generated from its JSON schema; the word "parallel" gives up to
  three invokes in one block; the word "long" puts ~8,000 characters of code (``<``, ``</div>``,
  quotes, backslashes, a literal ``</parameter>`` not followed by a tag) in string parameters;
- otherwise: a plain answer (with "long": a long one with a code block).
``max_tokens`` cuts a generated reply and makes ``finish_reason`` "length". Like vLLM, a generated
reply honours ``min_tokens`` (padded with more text) and ``ignore_eos`` (generation goes on to
exactly ``max_tokens``); ``logprobs`` (with ``top_logprobs``) adds each token's logprobs to its
chunk.

MiniMax-M3: for a model whose name (or, for ``model``, the ``root`` it reports) names
MiniMax-M3, the reply is written in M3's grammar and thinking mode, images are read, and
the history is checked as the M3 template reads it (``proxy/sim/m3.py``): each record
says how many assistant turns it recognised and which lost their thinking
(``strict_thinking``: a 400). ``SIM_HABITS:<auto|all|none>`` sets M3's habits for one
request.

Models: ``model`` is the id ``/v1/models`` lists (with its ``root``); ``models`` adds more.
When several are served, a request for another name gets vLLM's 404, and each generated answer
ends by naming the model that produced it.

Prefix cache: like vLLM's automatic prefix caching, the rendered prompt is hashed in blocks of
``cache_block`` tokens; blocks a previous request already had count as
``usage.prompt_tokens_details.cached_tokens``. Each server (a replica) has its own cache of at
most ``cache_blocks`` blocks, least recently used out first.

Directives in the last user message (or a later tool message) override the server options for
one request: ``SIM_FAULT:<name|none>``, ``SIM_RATE:<tokens/s>``, ``SIM_TOKEN_CHARS:<n>``,
``SIM_STALL:<s>``, ``SIM_PING:<s>``, ``SIM_TTFT:<s>``, ``SIM_CRLF:<0|1>``.

Faults (``SIM_FAULT:<name>``, or ``--fault`` for every request). At once: http500, http503,
http429 (``Retry-After: 2``), http400_context (OpenAI body, code ``context_length_exceeded``),
http422_detail (FastAPI ``{"detail"}``), http401 (vLLM's ``{"error": "Unauthorized"}``), html500.
stall_first sleeps ``stall_seconds`` before the headers. After half the tokens: stall_mid sleeps,
cut_mid drops the connection, bad_sse sends ``data {oops`` and a line without a colon, bad_json a
``data: {not json}`` event, bad_utf8 a 0xFF byte inside that token's JSON string, error_event
``data: {"error": …}`` then ``[DONE]``. cut_in_tool drops the connection halfway through the first
parameter value (with a write_file tool if the request has none); endless streams reasoning until
the client leaves. Not streaming: cuts drop the connection before the headers, stalls and endless
delay the reply, bad_json truncates the body, bad_utf8 puts the byte in ``message.content``,
error_event answers 500, bad_sse does nothing.

Token counting: one token is ``token_chars`` characters (default 4) of a simple rendering of the
request: the tools as JSON, then one ``role: text`` line per message (tool calls as JSON). It
only has to be stable and roughly proportional, not match the real tokenizer.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import time
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from ..grammar import names_m3
from . import m3
from .modes import MODES, PARSING, deltas, message, model_view, refusal
from .replies import (
    DEFAULT_TOOL,
    DIRECTIVE,
    endless,
    message_text,
    plan_reply,
    plan_turn,
    render_prompt,
    split_script,
    token_pieces,
)

__all__ = [
    "FAULTS",
    "MODES",
    "RequestRecord",
    "SimOptions",
    "SimServer",
    "create_app",
    "main",
    "plan_reply",
    "render_prompt",
    "start_sim",
]

_HTTP_FAULTS = ("http500", "http503", "http429", "http400_context", "http422_detail", "http401")
_STREAM_FAULTS = ("stall_mid", "cut_mid", "cut_in_tool", "bad_sse", "bad_json", "bad_utf8")
FAULTS = frozenset(
    (*_HTTP_FAULTS, *_STREAM_FAULTS, "stall_first", "error_event", "endless", "html500")
)
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "x-admin-key", "proxy-authorization"})
_ENC = msgspec.json.Encoder()


@dataclass(slots=True)
class SimOptions:
    """Server-wide settings; tests may change them on a running server (next request on)."""

    model: str = "MiniMax-M2"  # a MiniMax-M3 name makes it write M3 (proxy/sim/m3.py)
    root: str | None = None  # the checkpoint /v1/models reports for ``model`` (default: model)
    habits: str = "auto"  # M3's leading-tag habits: auto (per reply), all or none
    strict_thinking: bool = False  # M3: a history that lost a turn's thinking gets a 400
    mode: str = "tabby"  # which server's manners: see proxy/sim/modes.py
    multimodal: bool = False  # accept image parts (a text-only model refuses them)
    reasoning_field: str = "reasoning"  # parsing modes; vLLM before 0.11: reasoning_content
    models: tuple[str, ...] = ()  # more model ids served besides ``model``
    cache_block: int = 16  # tokens per prefix-cache block
    cache_blocks: int = (
        100_000  # prefix-cache capacity in blocks (a replica's KV cache); 0: no limit
    )
    token_chars: int = 4
    tokens_per_second: float = 0.0  # 0: as fast as the socket takes them
    fault: str | None = None
    stall_seconds: float = 30.0
    ping_interval: float = 0.0  # 0: no ": ping" comments
    first_token_delay: float = 0.0  # silence after the headers, like a long prefill
    max_model_len: int = 196_608
    crlf: bool = False  # sse-starlette (TabbyAPI's SSE library) really ends lines with \r\n
    log_limit: int = 1_000  # request records kept; bounds memory in soak runs

    def __post_init__(self) -> None:
        if self.reasoning_field not in ("reasoning", "reasoning_content"):
            raise ValueError("reasoning_field must be reasoning or reasoning_content")
        if self.habits not in m3.HABITS:
            raise ValueError(f"habits must be one of {', '.join(m3.HABITS)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; known: {', '.join(sorted(FAULTS))}")
        if min(self.token_chars, self.log_limit, self.max_model_len, self.cache_block) < 1:
            raise ValueError(
                "token_chars, log_limit, max_model_len and cache_block must be positive"
            )
        if min(self.tokens_per_second, self.stall_seconds, self.ping_interval,
               self.cache_blocks) < 0:  # fmt: skip
            raise ValueError("rates and durations must not be negative")


@dataclass(slots=True)
class RequestRecord:
    """What the server saw of one request and how its response ended."""

    seq: int
    method: str
    path: str
    headers: dict[str, str]  # secret headers kept with the value "<redacted>"
    body: Any  # the decoded JSON body, or None
    received_at: float
    stream: bool = False
    fault: str | None = None
    status: int | None = None
    response_id: str | None = None
    raw: str = ""  # the whole raw output planned (a fault may send less; endless: "")
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # planned {name, arguments}
    finish_reason: str | None = None
    grammar: str = "m2"  # m3 for an M3 model
    thinking_mode: str | None = None  # M3: chat_template_kwargs.thinking_mode as read
    history_checked: int = 0  # M3: assistant turns of the history this server recognised
    thinking_lost: list[int] = field(default_factory=list)  # M3: ... whose thinking was lost
    sent_chars: int = 0
    # pending, completed, error (an error status), cut (the server dropped the connection),
    # client_closed (the client went away first) or server_closed
    outcome: str = "pending"
    ended_at: float | None = None


@dataclass(slots=True)
class _Reply:
    raw: str
    pieces: Iterable[str]
    finish_reason: str = "stop"
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None


_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "FAULT": ("fault", lambda v: None if v == "none" else v),
    "RATE": ("tokens_per_second", float),
    "TOKEN_CHARS": ("token_chars", int),
    "STALL": ("stall_seconds", float),
    "PING": ("ping_interval", float),
    "TTFT": ("first_token_delay", float),
    "CRLF": ("crlf", lambda v: v not in ("0", "false")),
    "HABITS": ("habits", str),
}


def _directives(base: SimOptions, messages: list[Any]) -> tuple[SimOptions, dict[str, Any] | None]:
    """Per-request options and the SIM_SCRIPT, if any. Raises ValueError on a bad directive.

    Options come from the last user message and the tool results after it, so a tool loop keeps
    its rate or fault; a script only from the last message, so a tool result can bring its own.
    """
    first = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
    overrides: dict[str, Any] = {}
    script = None
    for i in range(first, len(messages)):
        if messages[i].get("role") not in ("user", "tool"):
            continue
        rest, found = split_script(message_text(messages[i].get("content")))
        if found is not None and i == len(messages) - 1:
            script = _check_script(found)
        for match in DIRECTIVE.finditer(rest):
            name, convert = _FIELDS[match[1]]
            overrides[name] = convert(match[2])
    return dataclasses.replace(base, **overrides), script


def _check_script(script: Any) -> dict[str, Any]:
    chunks = script.get("chunks") or [] if isinstance(script, dict) else None
    if not (
        isinstance(script, dict)
        and isinstance(script.get("raw"), str)
        and isinstance(script.get("finish_reason", ""), str)
        and isinstance(script.get("usage", {}), dict)
        and isinstance(chunks, list)
        and all(isinstance(n, int) and n >= 0 for n in chunks)
    ):
        raise ValueError(
            'SIM_SCRIPT needs {"raw": str, "chunks": [int >= 0, ...], "finish_reason": str, '
            '"usage": {...}} (the last two optional)'
        )
    return script


def _make_reply(
    body: dict[str, Any], o: SimOptions, script: dict[str, Any] | None, history: m3.History | None
) -> _Reply:
    """The reply to ``body``; ``history`` (M3 models only) remembers a whole generated turn."""
    if script is not None:
        raw = script["raw"]
        pieces = token_pieces(raw, o.token_chars, script.get("chunks"))
        return _Reply(raw, pieces, script.get("finish_reason", "stop"), [], script.get("usage"))
    if o.fault == "endless":
        return _Reply("", endless(o.token_chars))
    if o.fault == "cut_in_tool" and not body.get("tools"):
        body = {**body, "tools": [DEFAULT_TOOL], "tool_choice": "auto"}
    written = None
    if history is not None:
        raw, written = m3.render(plan_turn(body), m3.thinking_mode(body), o.habits)
        calls = written.calls
    else:
        raw, calls = plan_reply(body)
    suffix = f"\n\n(answered by {body.get('model')})" if o.models else ""
    raw += suffix
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    ignore_eos = body.get("ignore_eos") is True and isinstance(limit, int)
    least = limit if ignore_eos else body.get("min_tokens")
    if isinstance(least, int) and not isinstance(least, bool):
        raw = _padded(raw, o.token_chars, least)
    if isinstance(limit, int) and (ignore_eos or len(raw) > limit * o.token_chars):
        raw = raw[: limit * o.token_chars]
        return _Reply(raw, token_pieces(raw, o.token_chars), "length", calls)
    if history is not None and written is not None and o.fault not in _CUTS:
        history.remember(written, suffix)
    return _Reply(raw, token_pieces(raw, o.token_chars), "stop", calls)


_CUTS = frozenset({"cut_mid", "cut_in_tool", "error_event"})


def _padded(raw: str, size: int, tokens: int) -> str:
    """``raw`` generated on (as past an ignored end of sequence) to at least ``tokens``."""
    missing = tokens - -(-len(raw) // size)
    if missing <= 0:
        return raw
    more = endless(size)
    return raw + "".join(next(more) for _ in range(missing))


def _logprobs(piece: str, top: int) -> dict[str, Any]:
    """A token's logprobs in OpenAI's chunk shape (made up, but stable per token)."""
    logprob = -(zlib.crc32(piece.encode()) % 1000) / 1000
    alts = [{"token": piece, "logprob": logprob, "bytes": list(piece.encode())}]
    alts += [{"token": f"<alt{n}>", "logprob": logprob - n - 1, "bytes": None} for n in range(top)]
    return {"content": [{**alts[0], "top_logprobs": alts[:top]}]}


class _PrefixCache:
    """Block hashes of prompts seen: how many leading tokens a new prompt shares with them.

    Bounded like a KV cache (``SimOptions.cache_blocks``; 0: unlimited), least recently used
    first. As in vLLM, a prompt's later blocks are evicted before its earlier ones: a prefix
    is only useful from its start, and many prompts share the early blocks.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self.limit = limit

    def cached_tokens(self, prompt: str, o: SimOptions) -> int:
        size = o.cache_block * o.token_chars
        digest = hashlib.blake2b(digest_size=16)
        hits, hitting = 0, True
        blocks = []
        for start in range(0, len(prompt) - size + 1, size):
            digest.update(prompt[start : start + size].encode())
            key = digest.copy().digest()
            hitting = hitting and key in self._seen
            hits += hitting
            blocks.append(key)
        for key in reversed(blocks):  # the first block ends up most recent
            self._seen[key] = None
            self._seen.move_to_end(key)
        while self.limit and len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        prompt_tokens = -(-len(prompt) // o.token_chars)
        # As vLLM does, the last prompt token is always computed again.
        return min(hits * o.cache_block, max(prompt_tokens - 1, 0))


def _cut_point(raw: str) -> int:
    """Halfway through the first parameter value (or through the text, without one)."""
    start = raw.find('<parameter name="')
    if start < 0:
        return _m3_cut_point(raw)
    start = raw.index(">", start) + 1
    stop = raw.find("</parameter>", start)
    return start + max(stop - start, 0) // 2


def _m3_cut_point(raw: str) -> int:
    """:func:`_cut_point` in MiniMax-M3's text: halfway through the first element's value."""
    invoke = raw.find(m3.NS + "<invoke ")
    element = raw.find(m3.NS + "<", invoke + 1) if invoke >= 0 else -1
    if element < 0:
        return len(raw) // 2
    start = raw.index(">", element) + 1
    stop = raw.find(m3.NS, start)
    return start + max(stop - start, 0) // 2


# ---------------------------------------------------------------------------- HTTP


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_ENC.encode(data), status=status, content_type="application/json")


def _error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    return _json({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)


def _usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}  # fmt: skip


def _http_fault(fault: str, o: SimOptions) -> web.Response:
    if fault in ("http500", "http503"):
        return _error(int(fault[4:]), f"simulated {fault[4:]} error", "server_error")
    if fault == "http429":
        response = _error(429, "simulated: too many requests", "rate_limit_error")
        response.headers["Retry-After"] = "2"
        return response
    if fault == "http400_context":
        text = f"This model's maximum context length is {o.max_model_len} tokens (simulated)."
        return _error(400, text, "invalid_request_error", "context_length_exceeded")
    if fault == "http422_detail":  # TabbyAPI's errors are mostly FastAPI's shape
        return _json({"detail": "simulated FastAPI validation error"}, 422)
    if fault == "http401":
        return _json({"error": "Unauthorized"}, 401)  # vLLM's --api-key middleware says this
    html = "<html><body><h1>500 Internal Server Error</h1><hr>nginx</body></html>"
    return web.Response(text=html, status=500, content_type="text/html")


def _cut(
    request: web.Request, rec: RequestRecord, response: web.StreamResponse
) -> web.StreamResponse:
    """Drop the connection: the body ends without its terminating chunk (or never starts)."""
    rec.outcome, rec.ended_at = "cut", time.time()
    if request.transport is not None:
        request.transport.close()
    return response  # aiohttp's final write to the closed transport fails quietly


_Handler = Callable[["_Sim", web.Request, RequestRecord], Awaitable[web.StreamResponse]]


class _Sim:
    """The server's state and handlers."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.records: deque[RequestRecord] = deque(maxlen=options.log_limit)
        self.seq = 0
        self.closing = False
        self.cache = _PrefixCache(options.cache_blocks)
        self.history = m3.History()

    def check_m3(
        self, rec: RequestRecord, body: dict[str, Any], messages: list[Any]
    ) -> web.Response | None:
        """Read an M3 request's history as the template would: records what it found, and
        with ``strict_thinking`` answers a history that lost thinking with a 400."""
        rec.grammar, rec.thinking_mode = "m3", m3.thinking_mode(body)
        rec.history_checked, rec.thinking_lost = self.history.check(messages)
        if rec.thinking_lost and self.options.strict_thinking:
            text = (f"simulated MiniMax-M3 template: assistant messages {rec.thinking_lost} "
                    "came back without the thinking they were generated with")  # fmt: skip
            return _error(400, text, "BadRequestError")
        return None

    def recorded(self, handler: _Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            headers = {k: "<redacted>" if k.lower() in _SECRET_HEADERS else v
                       for k, v in request.headers.items()}  # fmt: skip
            self.seq += 1
            rec = RequestRecord(self.seq, request.method, request.path, headers, body, time.time())
            self.records.append(rec)
            try:
                response = await handler(self, request, rec)
            except asyncio.CancelledError:  # aiohttp cancels the handler when the client leaves
                rec.outcome = "server_closed" if self.closing else "client_closed"
                rec.ended_at = time.time()
                raise
            if rec.outcome == "pending":
                rec.outcome = "completed" if response.status < 400 else "error"
            rec.status, rec.ended_at = response.status, rec.ended_at or time.time()
            return response

        return wrapper

    async def models(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse:
        served = (self.options.model, *self.options.models)
        roots = {self.options.model: self.options.root or self.options.model}
        cards = [{"id": m, "object": "model", "created": 0, "owned_by": "sim",
                  "root": roots.get(m, m)} for m in served]  # fmt: skip
        return _json({"object": "list", "data": cards})

    async def health(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse:
        return _json({"status": "healthy", "issues": []})

    async def tokenize(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse:
        if not isinstance(rec.body, dict):
            return _json({"detail": "body must be a JSON object"}, 422)
        text, size = render_prompt(rec.body), self.options.token_chars
        ids = [zlib.crc32(text[i : i + size].encode()) % 200_064 for i in range(0, len(text), size)]
        if request.path == "/tokenize":  # vLLM's shape
            limit = self.options.max_model_len
            return _json({"count": len(ids), "tokens": ids, "max_model_len": limit})
        return _json({"tokens": ids, "length": len(ids)})  # TabbyAPI's shape

    async def log(self, request: web.Request) -> web.StreamResponse:
        return _json(list(self.records))

    async def reset(self, request: web.Request) -> web.StreamResponse:
        self.records.clear()
        return _json({"ok": True})

    async def chat(self, request: web.Request, rec: RequestRecord) -> web.StreamResponse:
        body = rec.body
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _json({"detail": "body must be a JSON object with a messages list"}, 422)
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        try:
            o, script = _directives(self.options, messages)
        except (ValueError, TypeError) as exc:
            return _error(400, f"bad SIM_ directive: {exc}", "invalid_request_error")
        rec.stream, rec.fault = bool(body.get("stream")), o.fault
        if o.fault in _HTTP_FAULTS or o.fault == "html500":
            return _http_fault(o.fault, o)
        speaks_m3 = _speaks_m3(body, o)
        if speaks_m3:
            lost = self.check_m3(rec, body, messages)
            if lost is not None:
                return lost
        # MiniMax-M3 reads images; M2 only when the server is multimodal.
        refused = refusal(o.mode, body, o.multimodal or speaks_m3)
        if refused is not None:
            return _json(refused[1], refused[0])
        model = body.get("model")
        if o.models and model not in (o.model, *o.models):  # vLLM's answer
            missing = f"The model `{model}` does not exist."
            return _json({"error": {"message": missing, "type": "NotFoundError",
                                    "param": None, "code": 404}}, 404)  # fmt: skip
        prompt = render_prompt(body)
        prompt_tokens = -(-len(prompt) // o.token_chars)
        if prompt_tokens > o.max_model_len:
            return _http_fault("http400_context", o)
        if o.fault == "stall_first":
            await asyncio.sleep(o.stall_seconds)
        history = self.history if speaks_m3 else None
        reply = _make_reply(model_view(o.mode, body), o, script, history)
        rec.raw, rec.tool_calls = reply.raw, reply.tool_calls
        rec.finish_reason = reply.finish_reason
        rec.response_id = f"chatcmpl-{uuid.uuid4().hex}"
        self.cache.limit = o.cache_blocks  # a test may change it on a running server
        cached = self.cache.cached_tokens(prompt, o)
        if rec.stream:
            return await _Stream(request, rec, o, body).run(reply, prompt_tokens, cached)
        if o.fault in ("cut_mid", "cut_in_tool"):
            return _cut(request, rec, web.StreamResponse())
        if o.fault in ("stall_mid", "endless"):  # endless: "generating" until the client leaves
            await asyncio.sleep(o.stall_seconds if o.fault == "stall_mid" else 1e9)
        if o.fault == "error_event":
            return _error(500, "simulated generation failure", "server_error")
        return _answer(rec, o, body, reply, prompt_tokens, cached)


def _answer(
    rec: RequestRecord, o: SimOptions, body: dict[str, Any], reply: _Reply, prompt: int, cached: int
) -> web.Response:
    """The non-streamed chat completion of a planned reply (with the bad_json/bad_utf8 faults)."""
    assert isinstance(reply.pieces, list)
    usage = reply.usage or _usage(prompt, len(reply.pieces), cached)
    msg = message(o.mode, reply.raw, body, o.reasoning_field)
    finish = "tool_calls" if msg.get("tool_calls") else reply.finish_reason
    choice: dict[str, Any] = {"index": 0, "message": msg, "finish_reason": finish}
    top = _top_logprobs(body)
    if top is not None:
        tokens = [_logprobs(p, top)["content"][0] for p in reply.pieces]
        choice["logprobs"] = {"content": tokens}
    data = _ENC.encode({"id": rec.response_id, "object": "chat.completion",
                        "created": int(rec.received_at), "model": _served(body, o),
                        "choices": [choice], "usage": usage})  # fmt: skip
    if o.fault == "bad_json":
        data = data[: len(data) // 2]
    elif o.fault == "bad_utf8":
        data = data.replace(b'"content":"', b'"content":"\xff', 1)
    rec.sent_chars = len(reply.raw)
    return web.Response(body=data, content_type="application/json")


class _Stream:
    """One streamed response: TabbyAPI's chunk shapes, pacing, pings and stream faults."""

    def __init__(self, request: web.Request, rec: RequestRecord, o: SimOptions, body: Any) -> None:
        self.request, self.rec, self.o, self.body = request, rec, o, body
        self.sep = "\r\n" if o.crlf else "\n"
        self.end = (self.sep * 2).encode()
        self.include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.top_logprobs = _top_logprobs(body)
        self.base = {"id": rec.response_id, "object": "chat.completion.chunk",
                     "created": int(rec.received_at), "model": _served(body, o)}  # fmt: skip
        # Chunks differ only in their content, so each token costs one string encode and a join.
        self.first = self.template({"role": "assistant", "content": ""})
        self.next = self.template({"content": ""})
        self.response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )

    def event(self, payload: bytes) -> bytes:
        return b"data: " + payload + self.end

    def chunk(self, **fields: Any) -> bytes:
        return self.event(_ENC.encode({**self.base, **fields}))

    def template(self, delta: dict[str, str]) -> tuple[bytes, bytes]:
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        head, tail = self.chunk(choices=[choice]).split(b'"content":""')
        return head + b'"content":', tail

    async def pause(self, seconds: float) -> None:
        """Sleep, sending ": ping" comments meanwhile if enabled (as sse-starlette does)."""
        loop, interval = asyncio.get_running_loop(), self.o.ping_interval
        if not interval or seconds < interval:
            if seconds > 0:
                await asyncio.sleep(seconds)
            return
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            if left < interval:
                await asyncio.sleep(left)
                return
            await asyncio.sleep(interval)
            await self.response.write(f": ping - {datetime.now(UTC)}".encode() + self.end)

    async def run(self, reply: _Reply, prompt_tokens: int, cached: int) -> web.StreamResponse:
        o, rec, fault = self.o, self.rec, self.o.fault
        pieces: Iterable[str | dict[str, Any]] = reply.pieces
        at, finish = -1, reply.finish_reason  # at: how many tokens go out before a fault
        if isinstance(reply.pieces, list):
            tokens = reply.pieces
            at = len(tokens) // 2
            if fault == "cut_in_tool":
                tokens = token_pieces(reply.raw[: _cut_point(reply.raw)], o.token_chars)
            elif fault == "cut_mid":
                tokens = tokens[:at]
            pieces = tokens
            if o.mode in PARSING:
                field = o.reasoning_field
                pieces = parsed = deltas(o.mode, reply.raw, tokens, self.body, field)
                if any("tool_calls" in d for d in parsed):
                    finish = "tool_calls"
        try:
            await self.response.prepare(self.request)
            await self.pause(o.first_token_delay)
            loop = asyncio.get_running_loop()
            step, due, sent = (1 / o.tokens_per_second if o.tokens_per_second else 0.0), 0.0, 0
            for piece in pieces:
                if sent == at and fault in _MID_STREAM:
                    if await self.fault(fault):
                        return self.response
                    due = 0.0
                if step:
                    due = max(due + step, loop.time())  # after a stall: resume pacing, no burst
                    await self.pause(due - loop.time())
                elif sent % 16 == 15:
                    await asyncio.sleep(0)  # as fast as possible, yet fair to other streams
                await self.write(piece, sent, fault == "bad_utf8" and sent == at)
                sent += 1
            if fault in ("cut_mid", "cut_in_tool"):
                return _cut(self.request, rec, self.response)
            if not sent:
                await self.response.write(b'""'.join(self.first))
            choice = {"index": 0, "delta": {}, "finish_reason": finish}
            await self.response.write(self.chunk(choices=[choice]))
            if self.include_usage:
                usage = reply.usage or _usage(prompt_tokens, sent, cached)
                await self.response.write(self.chunk(choices=[], usage=usage))
            await self.response.write(self.event(b"[DONE]"))
        except ConnectionResetError:  # a write found the client gone
            rec.outcome, rec.ended_at = "client_closed", time.time()
        return self.response

    async def write(self, piece: str | dict[str, Any], sent: int, bad_utf8: bool) -> None:
        """One chunk: a token of raw content, or a delta of a parsing server's."""
        if isinstance(piece, dict):
            delta = piece if sent else {"role": "assistant", **piece}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            await self.response.write(self.chunk(choices=[choice]))
            self.rec.sent_chars += len(piece.get("content") or piece.get("reasoning") or "")
            return
        if self.top_logprobs is not None:
            await self.response.write(self.token_chunk(piece, sent))
        else:
            content = _ENC.encode(piece)
            if bad_utf8:
                content = b'"\xff' + content[1:]
            head, tail = self.next if sent else self.first
            await self.response.write(b"".join((head, content, tail)))
        self.rec.sent_chars += len(piece)

    def token_chunk(self, piece: str, sent: int) -> bytes:
        """A token's chunk with its logprobs (the slow path: only when they are asked for)."""
        delta = {"role": "assistant", "content": piece} if not sent else {"content": piece}
        logprobs = _logprobs(piece, self.top_logprobs or 0)
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": None}
        return self.chunk(choices=[choice])

    async def fault(self, fault: str) -> bool:
        """Act out a mid-stream fault; True when the stream ends here."""
        if fault == "stall_mid":
            await self.pause(self.o.stall_seconds)
        elif fault == "bad_sse":  # a WHATWG decoder ignores both lines
            await self.response.write(f"data {{oops{self.sep}no colon here".encode() + self.end)
        elif fault == "bad_json":
            await self.response.write(self.event(b"{not json}"))
        elif fault == "error_event":
            error = {"error": {"message": "simulated generation failure", "type": "server_error"}}
            await self.response.write(self.event(_ENC.encode(error)) + self.event(b"[DONE]"))
            self.rec.outcome, self.rec.ended_at = "completed", time.time()
            return True
        return False


_MID_STREAM = frozenset({"stall_mid", "bad_sse", "bad_json", "error_event"})


def _speaks_m3(body: dict[str, Any], o: SimOptions) -> bool:
    """Whether the model asked for is a MiniMax-M3 (by its name, or the main model's root)."""
    model = body.get("model") or o.model
    return names_m3(model) or (model == o.model and names_m3(o.root))


def _served(body: dict[str, Any], o: SimOptions) -> Any:
    """The model that answers: the one asked for when several are served (as vLLM)."""
    return body.get("model") if o.models else o.model


def _top_logprobs(body: dict[str, Any]) -> int | None:
    """None without ``logprobs``; else how many alternatives each token lists."""
    if body.get("logprobs") is not True:
        return None
    top = body.get("top_logprobs")
    return top if isinstance(top, int) and 0 <= top <= 20 else 0


# ---------------------------------------------------------------------------- running it

_SIM = web.AppKey("sim", _Sim)


def create_app(options: SimOptions | None = None) -> web.Application:
    """The simulated backend as an aiohttp application, for a runner of your own."""
    sim = _Sim(options or SimOptions())
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_SIM] = sim
    app.router.add_post("/v1/chat/completions", sim.recorded(_Sim.chat))
    app.router.add_get("/v1/models", sim.recorded(_Sim.models))
    app.router.add_get("/health", sim.recorded(_Sim.health))
    app.router.add_post("/tokenize", sim.recorded(_Sim.tokenize))
    app.router.add_post("/v1/token/encode", sim.recorded(_Sim.tokenize))
    app.router.add_get("/_sim/requests", sim.log)
    app.router.add_post("/_sim/reset", sim.reset)
    return app


class SimServer:
    """A running simulated backend, from :func:`start_sim`. Use ``async with`` or ``close()``."""

    def __init__(self, runner: web.AppRunner, sim: _Sim, url: str) -> None:
        self._runner, self._sim, self.url = runner, sim, url

    @property
    def options(self) -> SimOptions:
        """The live options: changes apply from the next request on."""
        return self._sim.options

    @property
    def requests(self) -> list[RequestRecord]:
        """The request log, oldest first (a snapshot; the records themselves stay live)."""
        return list(self._sim.records)

    def reset(self) -> None:
        self._sim.records.clear()

    async def close(self) -> None:
        self._sim.closing = True
        await self._runner.cleanup()

    async def __aenter__(self) -> SimServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def start_sim(host: str = "127.0.0.1", port: int = 0, **options: Any) -> SimServer:
    """Start the simulated backend on the running loop; ``options`` are :class:`SimOptions`.

    ``port=0`` picks a free port; the server's ``url`` (no ``/v1``) says which.
    """
    app = create_app(SimOptions(**options))
    # handler_cancellation: a client that leaves during a stall is noticed (and recorded) at
    # once, not at the next write.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    bound_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    return SimServer(runner, app[_SIM], f"http://{bound_host}:{bound_port}")


def main(argv: list[str] | None = None) -> None:
    """``python -m proxy.sim``: serve the simulated backend until interrupted."""
    cli = argparse.ArgumentParser(
        prog="minimax-m2-proxy sim", description="A simulated MiniMax-M2 backend."
    )
    cli.add_argument("--host", default="127.0.0.1")
    cli.add_argument("--port", type=int, default=8000)
    defaults = SimOptions()
    for name, kind, help_ in [
        ("model", str, "model id reported"),
        ("token_chars", int, "characters per token"),
        ("tokens_per_second", float, "per-stream rate; 0 = as fast as possible"),
        ("stall_seconds", float, "length of stall_first / stall_mid"),
        ("ping_interval", float, "': ping' comments after this much silence; 0 = off"),
        ("first_token_delay", float, "silence between the headers and the first token"),
        ("max_model_len", int, "context size; longer prompts get a 400"),
        ("cache_blocks", int, "prefix-cache capacity in blocks of 16 tokens; 0 = no limit"),
        ("log_limit", int, "request records kept"),
    ]:
        default = getattr(defaults, name)
        cli.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default,
                         help=f"{help_} (default {default})")  # fmt: skip
    cli.add_argument(
        "--mode", choices=MODES, default=defaults.mode,
        help="behave like this server (default tabby: raw output, as TabbyAPI without "
        "tool_format); see proxy/sim/modes.py",
    )  # fmt: skip
    cli.add_argument("--multimodal", action="store_true", help="accept image parts")
    cli.add_argument("--root", help="the checkpoint /v1/models reports for --model")
    cli.add_argument("--habits", choices=m3.HABITS, default=defaults.habits,
                     help="MiniMax-M3's leading-tag habits (default auto: per reply)")  # fmt: skip
    cli.add_argument("--strict-thinking", action="store_true",
                     help="MiniMax-M3: answer a history that lost thinking with a 400")  # fmt: skip
    cli.add_argument(
        "--reasoning-field", choices=("reasoning", "reasoning_content"),
        default=defaults.reasoning_field,
        help="where the parsing modes put reasoning (reasoning_content: vLLM before 0.11)",
    )  # fmt: skip
    cli.add_argument("--models", type=lambda v: tuple(m for m in v.split(",") if m), default=(),
                     help="more model ids served, comma-separated")  # fmt: skip
    cli.add_argument("--fault", choices=sorted(FAULTS), help="apply this fault to every request")
    cli.add_argument("--crlf", action="store_true", help="end SSE lines with \\r\\n")
    args = vars(cli.parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    app = create_app(SimOptions(**args))
    web.run_app(app, host=host, port=port, handler_cancellation=True, access_log=None, print=None)
