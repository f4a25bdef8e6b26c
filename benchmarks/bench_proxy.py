"""End-to-end streaming benchmark: the proxy against a pass-through relay and the bare backend.

Run from the repository root::

    .venv/bin/python benchmarks/bench_proxy.py          # full run (~3 min): RESULTS.md + PNG
    .venv/bin/python benchmarks/bench_proxy.py --quick  # smoke run (~30 s), writes nothing
    .venv/bin/python benchmarks/bench_proxy.py --rev HEAD        # the committed proxy and sim
    .venv/bin/python benchmarks/bench_proxy.py --profile /tmp/p.txt  # py-spy the proxy (64 streams)
    .venv/bin/python benchmarks/bench_proxy.py --loops   # the proxy on uvloop and on asyncio

Three server processes are started on free loopback ports and always stopped at the end:

- the simulated MiniMax-M2 backend (``python -m proxy sim``), raw output at 4 characters a token;
- a minimal pass-through relay (this file, ``--serve-relay``): an aiohttp server that forwards the
  request body to the sim with an aiohttp client and copies the response bytes through unchanged
  (``iter_any`` -> ``write``), no parsing. It is the practical floor for a Python relay;
- the proxy (``python -m proxy``, one hypercorn worker, default settings: uvloop where it is
  installed), in front of the same sim, started in a scratch directory so that no ``.env`` is read.
  With ``--loops`` it is pinned to uvloop (``EVENT_LOOP=uvloop``), and a fourth process,
  **proxy_asyncio**, is the same proxy on the standard asyncio loop, measured in the same run
  right after it, scenario by scenario;
- **proxy_m3**: a second proxy process with ``MODEL_GRAMMAR=m3`` in front of the same sim, given
  each scenario's reply written in MiniMax-M3's text (``<mm:think>`` tags, the long reply's calls
  in M3's markup) and checked to decode to the same text and calls: the proxy's CPU per backend
  chunk on M3 beside M2. ``--targets`` runs a subset (e.g. ``proxy,proxy_m3``; ``--rev`` of a
  revision from before M3: leave ``proxy_m3`` out).

The load generator runs in this process on plain asyncio protocols (keep-alive HTTP/1.1, one
connection per worker): on the hot path it only timestamps each network read and looks for the
end of the response. Chunk framing, SSE events and JSON are taken apart after each scenario, and
every response is checked (direct and relay: the content equals the planned raw text; proxy: the
translated text, and for the long reply the assembled tool calls, equal what the sim planned).
The same load goes to the three targets in turn, scenario by scenario: straight to the sim
("direct"), through the relay, through the proxy.

Scenarios (each worker runs its requests back to back; each request is a ~200-token reply of
reasoning then text): 1, 64 and 256 concurrent streams at full speed and at 100 tokens/s per
stream (10 ms between tokens). At 100 tokens/s the 64 and 256 stream runs are staggered: worker i
starts i/N of a request's duration late, so arrivals and token phases are spread evenly, and only
each worker's middle request (which runs entirely at full concurrency) is measured. A second 256
stream run starts everything at once, so every stream's tokens are due at the same instant, as a
batching backend emits them. Then one long stream (the sim's "long parallel" tools reply: ~2,300
tokens of reasoning, text and three tool calls with ~2,500-character code arguments) at full
speed, and 1,000 idle open streams (the sim holds the first token back), measured on fresh relay
and proxy processes.

Figures per target and scenario:
- total time per request (mean, p50); time to first token (first event carrying text, reasoning
  or a tool call; p50, p99); gap between consecutive such events within a stream (p50, p99);
- added latency per chunk: for each event, its arrival time (from its request's start) minus the
  median arrival time, in the direct run of the same scenario, of the backend token it needed
  last (the proxy's output is mapped back to raw-text positions exactly); p50 and p99;
- chunks/s: events carrying tokens, received by the client per second of wall time (staggered
  runs: over the window in which every worker was busy), and backend tokens/s;
- chunks per request as the client saw them, against the backend's (nothing held back);
- CPU seconds per 1,000 backend chunks of each server process (on-CPU time from
  ``/proc/<pid>/task/*/schedstat``, nanosecond resolution), of the sim and of this client, and
  the CPU the rest of the machine used meanwhile (a shared machine shows up there).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import dataclasses
import datetime as _dt
import gc
import io
import itertools
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import msgspec  # noqa: E402
from aiohttp import web  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "RESULTS.md"
PLOT_PATH = BENCH_DIR / "proxy_overhead.png"
BEGIN_MARKER, END_MARKER = common.markers("proxy")
PYTHON = sys.executable
TOKEN_CHARS = 4
TARGETS = ("direct", "relay", "floor", "proxy", "messages", "responses")
# "messages" and "responses" are the same proxy process answering POST /v1/messages and
# POST /v1/responses for the same backend reply.
PATHS = {"messages": "/v1/messages", "responses": "/v1/responses"}
BACKLOG = 2048  # the listen backlog of the floor; the proxy's own (proxy/__main__.py) is the same
ASYNCIO = "proxy_asyncio"  # the proxy on the standard loop (--loops)
# A second proxy process (MODEL_GRAMMAR=m3) streaming each reply written in MiniMax-M3's text.
M3 = "proxy_m3"
M3_OPEN, M3_CLOSE = "<mm:think>", "</mm:think>"
HEADERS = {"content-type": "application/json", "accept": "text/event-stream"}
CHILD_ENV: dict[str, str] = {}  # extra environment for the sim and proxy processes (--rev)


# ---------------------------------------------------------------------------- the relay


def serve_relay(host: str, port: int, upstream: str) -> None:
    """The pass-through floor: forward the body, copy the response bytes, parse nothing."""

    async def startup(app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        app["session"] = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def cleanup(app: web.Application) -> None:
        await app["session"].close()

    async def relay(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(upstream + request.path, data=body, headers=HEADERS) as resp:
            response = web.StreamResponse(
                status=resp.status,
                headers={
                    "content-type": resp.headers.get("content-type", "application/json"),
                    "cache-control": "no-cache",
                },
            )
            await response.prepare(request)
            async for data in resp.content.iter_any():
                await response.write(data)
            await response.write_eof()
            return response

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_startup.append(startup)
    app.on_cleanup.append(cleanup)
    app.router.add_post("/v1/chat/completions", relay)
    app.router.add_get("/health", health)
    web.run_app(app, host=host, port=port, access_log=None, handler_cancellation=True, print=None)


def serve_floor(host: str, port: int, upstream: str) -> None:
    """The floor of the proxy's stack: Starlette on hypercorn, the backend read with aiohttp,
    its bytes passed through unchanged. Same loop (uvloop where installed), listen backlog,
    keep-alive and garbage-collector settings as the proxy, so what the proxy costs above
    this is its own work. Every path forwards the (chat-completions) body to the backend."""
    import gc as _gc
    import importlib.util

    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    held: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        held["session"] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        yield
        await held["session"].close()

    async def passthrough(request: Request) -> Response:
        body = await request.body()
        url = upstream + "/v1/chat/completions"
        resp = await held["session"].post(url, data=body, headers=HEADERS)

        async def chunks() -> Any:
            try:
                async for data in resp.content.iter_any():
                    yield data
            finally:
                resp.close()

        media = resp.headers.get("content-type", "application/json")
        return StreamingResponse(chunks(), resp.status, {"cache-control": "no-cache"}, media)

    async def health(request: Request) -> Response:
        return Response(b"ok")

    routes = [Route(p, passthrough, methods=["POST"]) for p in
              ("/v1/chat/completions", *PATHS.values())]  # fmt: skip
    app = Starlette(routes=[*routes, Route("/health", health)], lifespan=lifespan)
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.backlog = BACKLOG
    config.keep_alive_timeout = 75
    config.accesslog = None
    _gc.freeze()
    _gc.set_threshold(50_000, 20, 100)
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        uvloop.run(serve(app, config))  # type: ignore[arg-type]
    else:
        asyncio.run(serve(app, config))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- processes


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def cpu(self) -> float:
        """On-CPU seconds of all the process's threads (schedstat, ns resolution)."""
        total = 0
        task_dir = Path(f"/proc/{self.proc.pid}/task")
        for task in task_dir.iterdir():
            with contextlib.suppress(OSError):
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def spawn(name: str, argv: list[str], env: dict[str, str], workdir: Path, port: int) -> Server:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **CHILD_ENV, **env},
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Server(name, proc, f"http://127.0.0.1:{port}", log)


async def wait_ready(server: Server, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(server.url + "/health") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    tail = server.log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{server.name} did not start:\n{tail}")


def start_sim(workdir: Path) -> Server:
    port = common.free_port()
    argv = [PYTHON, "-m", "proxy", "sim", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--token-chars", str(TOKEN_CHARS), "--tokens-per-second", "0"]
    argv += ["--max-model-len", "1000000"]  # the big agent requests fit
    return spawn("sim", argv, {}, workdir, port)


def start_relay(workdir: Path, upstream: str) -> Server:
    port = common.free_port()
    argv = [PYTHON, str(Path(__file__).resolve()), "--serve-relay", "--port", str(port)]
    argv += ["--upstream", upstream]
    return spawn("relay", argv, {}, workdir, port)


def start_floor(workdir: Path, upstream: str) -> Server:
    port = common.free_port()
    argv = [PYTHON, str(Path(__file__).resolve()), "--serve-floor", "--port", str(port)]
    argv += ["--upstream", upstream]
    return spawn("floor", argv, {}, workdir, port)


def start_proxy(
    workdir: Path, upstream: str, loop: str = "auto", name: str = "proxy", grammar: str = "auto"
) -> Server:
    port = common.free_port()
    # A scratch working directory: no developer .env is read.
    env = {"TABBY_URL": upstream, "HOST": "127.0.0.1", "PORT": str(port), "EVENT_LOOP": loop,
           "MODEL_GRAMMAR": grammar}  # fmt: skip
    return spawn(name, [PYTHON, "-m", "proxy"], env, workdir, port)


def is_proxy(target: str) -> bool:
    return target.startswith("proxy")


# ---------------------------------------------------------------------------- workloads

_REASONING = (
    "The user wants a short comparison of two caching strategies for a web service. "
    "Write-through keeps the cache and the store in step, at the price of a slower write; "
    "write-back is faster but can lose data on a crash unless the queue is durable. "
    "I should mention invalidation, since that is where most bugs live, and give one "
    "concrete number: a 5-minute TTL on a 95 % hit rate still sends 1 in 20 reads through. "
    "Edge cases: Unicode keys such as naïve café or 東京 must be normalised first. "
    "I will keep it to two short paragraphs and a closing recommendation."
)
_ANSWER = (
    "**Write-through** updates the cache and the database together: reads are always fresh, "
    "writes are slower. **Write-back** acknowledges at the cache and flushes later: faster, "
    "but a crash can lose the tail unless the queue is durable.\n\n"
    "For most services, start with write-through and a short TTL."
)


@dataclass
class Workload:
    key: str
    label: str
    concurrency: int
    per_worker: int
    rate: float  # tokens/s per stream; 0 = full speed
    body: bytes
    raw: str  # the raw text the sim streams
    backend_chunks: int  # token chunks per request
    long: bool = False
    responses_body: bytes = b""  # the same request on the Responses API
    messages_body: bytes = b""  # and on the Messages API
    m3_raw: str = ""  # the same reply written in MiniMax-M3's text (target proxy_m3)
    m3_body: bytes = b""
    planned_calls: list[dict[str, Any]] = field(default_factory=list)
    # Staggered: worker i starts i/concurrency of one request's duration late, so arrivals and
    # token phases spread evenly (a steady state); only the middle requests of each worker, which
    # run entirely at full concurrency, are measured. Otherwise all start at once, in phase.
    staggered: bool = False

    @property
    def spread(self) -> float:
        return self.backend_chunks / self.rate if self.staggered and self.rate else 0.0

    @property
    def measured(self) -> range:
        return range(1, self.per_worker - 1) if self.spread else range(self.per_worker)


def script_body(
    raw: str, rate: float, note: str = "Benchmark stream.", api: str = "chat", tools: Any = None
) -> bytes:
    """A request on ``api`` (chat, messages or responses) whose reply is ``raw``."""
    script = json.dumps({"raw": raw, "chunks": []}, ensure_ascii=False)
    text = f"{note} SIM_RATE:{rate:g} SIM_SCRIPT:{script}"
    body: dict[str, Any] = {"model": "MiniMax-M2", "stream": True}
    if tools:
        body["tools"] = tools
    if api == "responses":
        body["input"] = text
    else:
        body["messages"] = [{"role": "user", "content": text}]
    if api == "messages":
        body["max_tokens"] = 4096
    return json.dumps(body, ensure_ascii=False).encode()


def script_workload(
    key: str,
    label: str,
    concurrency: int,
    per_worker: int,
    rate: float,
    staggered: bool = False,
    short: bool = False,
) -> Workload:
    """A reasoning-then-text reply: ~200 tokens (``short``: ~60, for --quick)."""
    if short:
        raw = _REASONING[:160] + "\n</think>\n\n" + _ANSWER[:80]
    else:
        raw = _REASONING + "\n</think>\n\n" + _ANSWER
    chunks = -(-len(raw) // TOKEN_CHARS)
    body = script_body(raw, rate)
    # M3 (adaptive, the model chose to think): the same reasoning and text in M3's tags.
    reasoning, _, answer = raw.partition("\n</think>\n\n")
    m3_raw = M3_OPEN + reasoning + M3_CLOSE + answer
    return Workload(
        key, label, concurrency, per_worker, rate, body, raw, chunks, staggered=staggered,
        responses_body=script_body(raw, rate, api="responses"),
        messages_body=script_body(raw, rate, api="messages"),
        m3_raw=m3_raw, m3_body=script_body(m3_raw, rate),
    )  # fmt: skip


def long_workload(per_worker: int) -> Workload:
    from proxy.sim import plan_reply

    tool = {
        "type": "function",
        "function": {
            "name": "write_file",
            "description": "Write a file",
            "parameters": {
                "type": "object",
                "required": ["path", "content"],
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            },
        },
    }
    body = {
        "model": "MiniMax-M2",
        "stream": True,
        "tools": [tool],
        "messages": [{"role": "user", "content": "Write the long parallel card renderers."}],
    }
    raw, calls = plan_reply(body)
    chunks = -(-len(raw) // TOKEN_CHARS)
    label = f"long tools reply, 1 stream, full speed ({chunks} tokens, {len(calls)} calls)"
    w = Workload("long", label, 1, per_worker, 0.0, json.dumps(body).encode(), raw, chunks, True)
    w.planned_calls = calls
    as_responses = {"model": "MiniMax-M2", "stream": True, "input": body["messages"][0]["content"],
                    "tools": [{"type": "function", **tool["function"]}]}  # fmt: skip
    w.responses_body = json.dumps(as_responses).encode()
    as_messages = {"model": "MiniMax-M2", "stream": True, "max_tokens": 32000,
                   "messages": body["messages"],
                   "tools": [{"name": "write_file", "description": "Write a file",
                              "input_schema": tool["function"]["parameters"]}]}  # fmt: skip
    w.messages_body = json.dumps(as_messages).encode()
    from proxy.sim import m3
    from proxy.sim.replies import plan_turn

    w.m3_raw = m3.render(plan_turn(body), "adaptive", "none")[0]
    w.m3_body = script_body(w.m3_raw, 0, body["messages"][0]["content"], tools=[tool])
    return w


def workloads(quick: bool) -> list[Workload]:
    """The scenarios; keys stay the same in --quick (smaller counts, labels say which)."""
    c64, c256 = (8, 32) if quick else (64, 256)

    def n(full: int, small: int) -> int:
        return small if quick else full

    return [
        script_workload("c1_full", "1 stream, full speed", 1, n(300, 20), 0, short=quick),
        script_workload("c1_paced", "1 stream, 100 tok/s", 1, n(3, 1), 100, short=quick),
        script_workload("c64_full", f"{c64} streams, full speed", c64, n(20, 2), 0, short=quick),
        script_workload(
            "c64_paced", f"{c64} streams, 100 tok/s", c64, 3, 100, staggered=True, short=quick
        ),
        script_workload("c256_full", f"{c256} streams, full speed", c256, n(6, 1), 0, short=quick),
        script_workload(
            "c256_paced", f"{c256} streams, 100 tok/s", c256, 3, 100, staggered=True, short=quick
        ),
        script_workload(
            "c256_burst", f"{c256} streams, 100 tok/s, in phase", c256, n(2, 1), 100, short=quick
        ),
        long_workload(n(30, 2)),
    ]


WARMUP = {api: script_body("ok\n</think>\n\nok", 0, "Warm-up.", api)
          for api in ("chat", "messages", "responses")}  # fmt: skip
WARMUP_BODY = WARMUP["chat"]


def for_target(w: Workload, target: str) -> Workload:
    """``w`` as ``target`` receives it: proxy_m3's backend streams the M3 text."""
    if target != M3:
        return w
    return dataclasses.replace(w, raw=w.m3_raw, backend_chunks=-(-len(w.m3_raw) // TOKEN_CHARS))


def body_for(target: str, w: Workload) -> bytes:
    if target == M3:
        return w.m3_body
    if target == "responses":
        return w.responses_body
    return w.messages_body if target == "messages" else w.body


# ---------------------------------------------------------------------------- the client


@dataclass
class Sample:
    """One request as the client saw it: start, and each network read with its arrival time."""

    start: float
    end: float  # arrival of the response's last bytes
    status: int
    reads: list[tuple[float, bytes]]
    worker: int = 0
    n: int = 0  # the worker's n-th request


class HttpConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 client connection that only timestamps what it receives.

    No HTTP library on the hot path: each ``data_received`` appends ``(time, bytes)`` and
    checks whether the response is complete (the chunked terminator, or Content-Length).
    Headers, chunk framing and SSE events are taken apart after the load, in :func:`sse_events`.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reads: list[tuple[float, bytes]] = []
        self.done: asyncio.Future[None] | None = None
        self.got_head: asyncio.Future[None] | None = None
        self.head = b""
        self.in_body = False
        self.chunked = False
        self.left = -1  # Content-Length bytes still to come; -1: until the connection closes
        self.tail = b""
        self.status = 0
        self.reusable = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        done = self.done
        if done is None or done.done():
            return
        self.reads.append((time.perf_counter(), data))
        if not self.in_body:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            data = self.head[end + 4 :]
            self._parse_head(self.head[:end])
        if self.chunked:
            tail = self.tail + data
            if tail.endswith(b"\r\n0\r\n\r\n"):
                done.set_result(None)
            self.tail = tail[-7:]
        elif self.left >= 0:
            self.left -= len(data)
            if self.left <= 0:
                done.set_result(None)

    def _parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        fields = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        self.chunked = "chunked" in fields.get("transfer-encoding", "")
        self.left = int(fields.get("content-length", -1))
        self.reusable = fields.get("connection") != "close" and (self.chunked or self.left >= 0)
        self.in_body, self.head, self.tail = True, b"", b"\r\n"  # as if a chunk had just ended
        if self.got_head is not None and not self.got_head.done():
            self.got_head.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        for fut in (self.got_head, self.done):
            if fut is not None and not fut.done():
                if self.in_body and not self.chunked and self.left < 0:
                    fut.set_result(None)  # the body ran to the connection's end
                else:
                    fut.set_exception(ConnectionError("the server closed the connection"))

    def send(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.reads, self.head, self.in_body = [], b"", False
        self.done, self.got_head = loop.create_future(), loop.create_future()
        assert self.transport is not None
        self.transport.write(request)

    def close(self) -> None:
        self.reusable = False
        for fut in (self.got_head, self.done):
            if fut is not None and not fut.done():
                fut.cancel()  # closed on purpose: nobody waits for an error
        if self.transport is not None:
            self.transport.close()


class Target:
    """Where the load goes: keep-alive connections to one server, and the request bytes."""

    def __init__(self, url: str, path: str = "/v1/chat/completions") -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.url, self.host, self.port, self.path = url, host, int(port), path
        self.idle: list[HttpConn] = []

    def request(self, body: bytes) -> bytes:
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def connect(self) -> HttpConn:
        while self.idle:
            conn = self.idle.pop()
            if conn.reusable and conn.transport is not None and not conn.transport.is_closing():
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        _, conn = await asyncio.wait_for(
            loop.create_connection(HttpConn, self.host, self.port), timeout=30
        )
        return conn

    def release(self, conn: HttpConn) -> None:
        if conn.reusable:
            self.idle.append(conn)
        else:
            conn.close()

    async def open(self, n: int) -> None:
        """Have ``n`` idle connections ready (opened in batches: listen backlogs are ~100)."""
        missing = n - len(self.idle)
        for i in range(0, max(missing, 0), 64):
            batch = [self.connect() for _ in range(min(64, missing - i))]
            self.idle += await asyncio.gather(*batch)

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def one_request(target: Target, request: bytes) -> Sample:
    conn = await target.connect()
    try:
        start = time.perf_counter()
        conn.send(request)
        assert conn.done is not None
        await asyncio.wait_for(conn.done, timeout=300)
    except BaseException:
        conn.close()
        raise
    target.release(conn)
    reads = conn.reads
    return Sample(start, reads[-1][0] if reads else time.perf_counter(), conn.status, reads)


async def closed_loop(
    target: Target,
    body: bytes,
    concurrency: int,
    per_worker: int,
    spread: float = 0.0,
) -> tuple[list[Sample], float]:
    """``concurrency`` workers, each sending ``per_worker`` requests back to back."""
    request = target.request(body)

    async def worker(i: int) -> list[Sample]:
        if spread:
            await asyncio.sleep(spread * i / concurrency)
        out = []
        for n in range(per_worker):
            sample = await one_request(target, request)
            sample.worker, sample.n = i, n
            out.append(sample)
        return out

    await target.open(concurrency)
    start = time.perf_counter()
    results = await asyncio.gather(*(worker(i) for i in range(concurrency)))
    wall = time.perf_counter() - start
    return [s for r in results for s in r], wall


# ---------------------------------------------------------------------------- analysis


class _Fn(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _Call(msgspec.Struct):
    index: int = 0
    function: _Fn | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_Call] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


_decode = msgspec.json.Decoder(_Chunk).decode


def sse_events(reads: list[tuple[float, bytes]]) -> Iterator[tuple[float, bytes]]:
    """``(arrival of the read that completed it, data)`` for each ``data:`` event.

    ``reads`` is a whole HTTP response as it arrived: headers, then a chunked or plain body.
    """
    raw = b"".join(data for _, data in reads)
    read_ends = list(itertools.accumulate(len(data) for _, data in reads))
    head_end = raw.find(b"\r\n\r\n")
    chunked = b"chunked" in raw[:head_end].lower()
    pos = head_end + 4
    pieces: list[bytes] = []
    raw_starts: list[int] = []  # where each body piece starts in raw
    body_starts: list[int] = []  # and in the body
    size = 0
    if not chunked:
        pieces, raw_starts, body_starts = [raw[pos:]], [pos], [0]
    while chunked:
        line_end = raw.index(b"\r\n", pos)
        n = int(raw[pos:line_end].split(b";")[0], 16)
        if n == 0:
            break
        pieces.append(raw[line_end + 2 : line_end + 2 + n])
        raw_starts.append(line_end + 2)
        body_starts.append(size)
        size += n
        pos = line_end + 2 + n + 2
    body = b"".join(pieces)
    start = 0
    while (end := body.find(b"\n\n", start)) >= 0:
        event = body[start:end].strip(b"\r\n")
        last = end + 1  # the event's last byte, in the body
        start = end + 2
        if event.startswith(b"event:"):  # the Responses API names its events
            event = event[event.find(b"\ndata:") + 1 :]
        if not event.startswith(b"data:"):
            continue
        piece = bisect.bisect_right(body_starts, last) - 1
        at = raw_starts[piece] + last - body_starts[piece]
        yield reads[bisect.bisect_right(read_ends, at)][0], event[5:].strip()


@dataclass
class Stream:
    start: float
    end: float
    token_times: list[float]  # arrival of each event that carries text, reasoning or a call
    token_ends: list[int]  # output characters delivered up to and including that event
    text: str
    calls: dict[int, list[str]]  # index -> [name, arguments...]
    worker: int = 0
    n: int = 0


_RESPONSES_TEXT = (b"response.reasoning_summary_text.delta", b"response.output_text.delta")
Calls = dict[int, list[str]]


def _chat_event(data: bytes, text: list[str], calls: Calls) -> int:
    """Take one chat-completion chunk apart; the output characters it carried."""
    if data == b"[DONE]":
        return 0
    chunk = _decode(data)
    if not chunk.choices or chunk.choices[0].delta is None:
        return 0
    d = chunk.choices[0].delta
    got = 0
    for piece in (d.reasoning_content, d.content):
        if piece:
            text.append(piece)
            got += len(piece)
    for call in d.tool_calls or ():
        entry = calls.setdefault(call.index, [""])
        if call.function is not None:
            if call.function.name:
                entry[0] = call.function.name
            if call.function.arguments:
                entry.append(call.function.arguments)
                got += len(call.function.arguments)
        got = got or 1  # a call's opening chunk carries its name
    return got


def _responses_event(data: bytes, text: list[str], calls: Calls) -> int:
    """:func:`_chat_event` for a Responses event: every delta event counts."""
    kind = data[9 : data.index(b'"', 9)]  # {"type":"…" comes first
    event = msgspec.json.decode(data)
    if kind in _RESPONSES_TEXT:
        text.append(event["delta"])
        return len(event["delta"])
    if kind == b"response.function_call_arguments.delta":
        calls[len(calls) - 1].append(event["delta"])
        return len(event["delta"])
    if kind == b"response.output_item.added" and event["item"]["type"] == "function_call":
        calls[len(calls)] = [event["item"]["name"]]
        return 1  # a call's item carries its name
    return 0


def _messages_event(data: bytes, text: list[str], calls: Calls) -> int:
    """:func:`_chat_event` for a Messages event: thinking, text and tool input deltas."""
    kind = data[9 : data.index(b'"', 9)]  # {"type":"…" comes first
    if kind == b"content_block_delta":
        delta = msgspec.json.decode(data)["delta"]
        piece = delta.get("thinking") or delta.get("text") or ""
        if delta["type"] == "input_json_delta":
            calls[len(calls) - 1].append(delta["partial_json"])
            return len(delta["partial_json"])
        text.append(piece)
        return len(piece)
    if kind == b"content_block_start":
        block = msgspec.json.decode(data)["content_block"]
        if block["type"] == "tool_use":
            calls[len(calls)] = [block["name"]]
            return 1
    return 0


_EVENTS = {"responses": _responses_event, "messages": _messages_event}


def decode_sample(sample: Sample, target: str = "proxy") -> Stream:
    """The events of one response (the API ``target`` answers), with their times."""
    take = _EVENTS.get(target, _chat_event)
    times: list[float] = []
    ends: list[int] = []
    text: list[str] = []
    calls: Calls = {}
    delivered = 0
    for t, data in sse_events(sample.reads):
        got = take(data, text, calls)
        if got:
            delivered += got
            times.append(t)
            ends.append(delivered)
    joined = "".join(text)
    return Stream(sample.start, sample.end, times, ends, joined, calls, sample.worker, sample.n)


def proxy_text(raw: str, m3: bool = False) -> tuple[str, Any]:
    """What the proxy shows for a reasoning-then-text reply, and a map back to raw positions.

    With thinking passed through (the default) the client gets ``<think>\\n`` + reasoning +
    ``\\n</think>\\n\\n`` + text, each trimmed (``m3``: ``<mm:think>`` tags, and the raw
    text opens its reasoning with ``<mm:think>``). ``raw_end(p)`` is how much of the raw text
    the backend must have sent before the first ``p`` output characters can exist.
    """
    opener, closer = (M3_OPEN, M3_CLOSE) if m3 else ("", "</think>")
    shown_open, shown_close = f"{opener or '<think>'}\n", f"\n{closer}\n\n"
    close = raw.index(closer)
    after = close + len(closer)
    reasoning, rest = raw[len(opener) : close], raw[after:]
    r_body, t_body = reasoning.strip(), rest.strip()
    r0 = len(opener) + len(reasoning) - len(reasoning.lstrip())
    t0 = after + len(rest) - len(rest.lstrip())
    a, b = len(shown_open), len(shown_open) + len(r_body)
    c = b + len(shown_close)

    def raw_end(p: int) -> int:
        if p <= a:
            return r0 + 1
        if p <= b:
            return r0 + p - a
        if p <= c:
            return after
        return t0 + p - c

    return shown_open + r_body + shown_close + t_body, raw_end


def responses_text(raw: str) -> tuple[str, Any]:
    """:func:`proxy_text` for the Responses API: the summary, then the message text."""
    close = raw.index("</think>")
    reasoning, rest = raw[:close], raw[close + 8 :]
    r_body, t_body = reasoning.strip(), rest.strip()
    r0 = len(reasoning) - len(reasoning.lstrip())
    t0 = close + 8 + len(rest) - len(rest.lstrip())

    def raw_end(p: int) -> int:
        return r0 + p if p <= len(r_body) else t0 + p - len(r_body)

    return r_body + t_body, raw_end


def expected_text(target: str, raw: str) -> tuple[str, Any]:
    if is_proxy(target):
        return proxy_text(raw, m3=target == M3)
    if target in PATHS:  # Messages and Responses: the reasoning apart, then the text
        return responses_text(raw)
    return raw, lambda p: p


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Result:
    target: str
    workload: Workload
    wall: float
    streams: list[Stream]
    cpu: dict[str, float]  # process name -> CPU seconds during the measured load
    errors: list[str]
    figures: dict[str, float] = field(default_factory=dict)


def check(w: Workload, target: str, streams: list[Stream]) -> list[str]:
    errors: list[str] = []
    if w.long and (is_proxy(target) or target in PATHS):
        for n, s in enumerate(streams):
            got = [
                {"name": v[0], "arguments": json.loads("".join(v[1:]))}
                for _, v in sorted(s.calls.items())
            ]
            if got != w.planned_calls:
                errors.append(f"{target} request {n}: tool calls differ from the sim's plan")
        return errors[:5]
    want = expected_text(target, w.raw)[0]
    for n, s in enumerate(streams):
        if s.text != want:
            errors.append(
                f"{target} request {n}: text differs ({len(s.text)} vs {len(want)} chars)"
            )
    return errors[:5]


def baseline_curve(w: Workload, direct: list[Stream]) -> list[float]:
    """Median arrival time (from the request's start) of each backend token, in the direct run."""
    per_token: list[list[float]] = [[] for _ in range(w.backend_chunks)]
    for s in direct:
        for t, end in zip(s.token_times, s.token_ends, strict=True):
            k = (end - 1) // TOKEN_CHARS
            if k < w.backend_chunks:
                per_token[k].append(t - s.start)
    return [statistics.median(v) if v else math.nan for v in per_token]


def measured(r: Result) -> list[Stream]:
    return [s for s in r.streams if s.n in r.workload.measured]


def steady_window(streams: list[Stream]) -> tuple[float, float]:
    """From the last worker's first start to the first worker's last end: all workers busy."""
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for s in streams:
        first[s.worker] = min(first.get(s.worker, math.inf), s.start)
        last[s.worker] = max(last.get(s.worker, -math.inf), s.end)
    return max(first.values()), min(last.values())


def analyse(r: Result, base: list[float] | None) -> None:
    w, streams = r.workload, measured(r)
    totals = [(s.end - s.start) * 1e3 for s in streams]
    ttft = [(s.token_times[0] - s.start) * 1e3 for s in streams if s.token_times]
    gaps = [
        (b - a) * 1e3
        for s in streams
        for a, b in zip(s.token_times, s.token_times[1:], strict=False)
    ]
    events = sum(len(s.token_times) for s in streams)
    added: list[float] = []
    if base is not None and not w.long:
        raw_end = expected_text(r.target, w.raw)[1]
        for s in streams:
            for t, end in zip(s.token_times, s.token_ends, strict=True):
                k = min((raw_end(end) - 1) // TOKEN_CHARS, len(base) - 1)
                added.append((t - s.start - base[k]) * 1e3)
    f = r.figures
    if w.spread:  # throughput over the window in which every worker was busy
        lo, hi = steady_window(r.streams)
        got = sum(lo <= t <= hi for s in r.streams for t in s.token_times)
        f["chunks_per_s"] = got / (hi - lo)
        f["tokens_per_s"] = f["chunks_per_s"] * w.backend_chunks / (events / len(streams))
    else:
        f["chunks_per_s"] = events / r.wall
        f["tokens_per_s"] = w.backend_chunks * len(r.streams) / r.wall
    backend = w.backend_chunks * len(r.streams)  # CPU was measured over all requests
    f["requests"] = len(streams)
    f["total_mean"] = statistics.fmean(totals)
    f["total_p50"] = pct(totals, 0.5)
    f["ttft_p50"], f["ttft_p99"] = pct(ttft, 0.5), pct(ttft, 0.99)
    f["gap_p50"], f["gap_p99"] = pct(gaps, 0.5), pct(gaps, 0.99)
    f["added_p50"], f["added_p99"] = pct(added, 0.5), pct(added, 0.99)
    f["chunks_per_req"] = events / len(streams)
    f["backend_per_req"] = w.backend_chunks
    for name, seconds in r.cpu.items():
        f[f"cpu_{name}"] = seconds / backend * 1e3  # CPU s per 1,000 backend chunks


# ---------------------------------------------------------------------------- running


async def warm_up(target: Target, concurrency: int) -> None:
    """Open the client's connections (and the server's to the sim) before timing anything."""
    api = next((api for api, path in PATHS.items() if target.path == path), "chat")
    body = WARMUP[api]
    for _ in range(2):
        samples, _ = await closed_loop(target, body, concurrency, 1)
        bad = [s.status for s in samples if s.status != 200]
        if bad:
            raise RuntimeError(f"warm-up against port {target.port} failed: statuses {bad[:5]}")


async def run_one(name: str, target: Target, w: Workload, servers: dict[str, Server]) -> Result:
    await warm_up(target, w.concurrency)
    gc.collect()
    gc.disable()  # no client pauses in the timed part; the reads are few big objects
    try:
        before = {n: s.cpu() for n, s in servers.items()}
        client0, busy0 = time.process_time(), common.machine_busy()
        body = body_for(name, w)
        samples, wall = await closed_loop(target, body, w.concurrency, w.per_worker, w.spread)
        client, busy = time.process_time() - client0, common.machine_busy() - busy0
        after = {n: s.cpu() for n, s in servers.items()}
    finally:
        gc.enable()
    cpu = {n: after[n] - before[n] for n in servers}
    cpu["client"] = client
    # Everything else the machine did meanwhile (other processes, kernel threads), in cores.
    other = max(busy - sum(cpu.values()), 0.0) / wall
    errors = [f"{name}: status {s.status}" for s in samples if s.status != 200][:5]
    streams = [decode_sample(s, name) for s in samples]
    errors += check(w, name, streams)
    result = Result(name, w, wall, streams, cpu, errors)
    result.figures["other_cores"] = other
    return result


QUIET_CORES = 0.25  # other load above this marks a timed run as disturbed
RETRY_DEADLINE = [math.inf]  # time.monotonic() after which disturbed runs are not repeated


async def measure(
    name: str, target: Target, w: Workload, servers: dict[str, Server], retries: int
) -> Result:
    """:func:`run_one`, repeated (at most ``retries`` times) while other load disturbs it."""
    best: Result | None = None
    for attempt in range(retries + 1):
        if attempt and time.monotonic() > RETRY_DEADLINE[0]:
            print(f"{w.key:10} {name:6} out of --retry-budget: keeping the disturbed run")
            break
        if retries:
            await common.wait_quiet(20.0, 1.0, interval=0.5, verbose=False)
        r = await run_one(name, target, w, servers)
        r.figures["attempts"] = attempt + 1
        if best is None or r.figures["other_cores"] < best.figures["other_cores"]:
            best = r
        if r.figures["other_cores"] <= QUIET_CORES:
            break
        print(f"{w.key:10} {name:6} disturbed: {r.figures['other_cores']:.2f} cores of other load")
    assert best is not None
    return best


BIG_RATE = 2.0  # big agent requests per second in the mix
BIG_REPLY = "Reading the diff.\n</think>\n\nAll handlers now validate their input."
BIG_ALONE = 10  # big requests sent one at a time, nothing else running


def big_bodies() -> dict[str, bytes]:
    """The ~0.77 MB agent request (600 messages, 24 tools) for each target's API."""
    import agent_request

    script = json.dumps({"raw": BIG_REPLY, "chunks": []})
    tail = f"Go on. SIM_RATE:0 SIM_SCRIPT:{script}"
    by_api = {api: json.dumps(agent_request.agent_body(api, tail)).encode()
              for api in ("chat", "messages", "responses")}  # fmt: skip
    return {t: by_api.get(t, by_api["chat"]) for t in TARGETS}


def mix_workload(quick: bool) -> Workload:
    c64 = 8 if quick else 64
    label = f"{c64} streams @100 tok/s + 0.77 MB agent requests {BIG_RATE:g}/s"
    return script_workload("bigmix", label, c64, 3, 100, staggered=True, short=quick)


def first_byte(sample: Sample) -> float:
    """ms from a request's start to the first bytes of its response."""
    return (sample.reads[0][0] - sample.start) * 1e3 if sample.reads else math.nan


async def big_mix(
    name: str, target: Target, w: Workload, big: bytes, servers: dict[str, Server]
) -> Result:
    """``w``'s streams while big requests arrive ``BIG_RATE`` times a second, on their own
    connections; first, ``BIG_ALONE`` big requests one at a time on an idle server.
    The big requests' figures join the streams' (gap p99 etc.) in the result."""
    bigs = Target(target.url, target.path)
    request = bigs.request(big)
    await warm_up(target, w.concurrency)
    alone = [await one_request(bigs, request) for _ in range(BIG_ALONE)]
    stop = asyncio.Event()

    async def arrivals() -> list[Sample]:
        sent: list[asyncio.Future[Sample]] = []
        while not stop.is_set():
            sent.append(asyncio.ensure_future(one_request(bigs, request)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / BIG_RATE)
        return await asyncio.gather(*sent)

    gc.collect()
    before = {n: s.cpu() for n, s in servers.items()}
    busy0, client0 = common.machine_busy(), time.process_time()
    feeder = asyncio.ensure_future(arrivals())
    samples, wall = await closed_loop(target, body_for(name, w), w.concurrency, w.per_worker,
                                      w.spread)  # fmt: skip
    stop.set()
    mixed = await feeder
    busy = common.machine_busy() - busy0
    cpu = {n: s.cpu() - before[n] for n, s in servers.items()}
    cpu["client"] = time.process_time() - client0
    bigs.close()
    errors = [f"{name}: status {s.status}" for s in samples + alone + mixed if s.status != 200]
    streams = [decode_sample(s, name) for s in samples]
    errors += check(w, name, streams)
    want = expected_text(name, BIG_REPLY)[0]
    errors += [f"{name}: a big request's reply differs" for s in alone + mixed
               if decode_sample(s, name).text != want][:3]  # fmt: skip
    r = Result(name, w, wall, streams, cpu, errors[:5])
    f = r.figures
    f["other_cores"] = max(busy - sum(cpu.values()), 0.0) / wall
    f["big_ttfb_alone"] = pct([first_byte(s) for s in alone], 0.5)
    f["big_ttft_alone"] = pct([(decode_sample(s, name).token_times or [math.nan])[0] - s.start
                               for s in alone], 0.5) * 1e3  # fmt: skip
    f["big_ttfb_mix"] = pct([first_byte(s) for s in mixed], 0.5)
    f["big_ttfb_mix_p99"] = pct([first_byte(s) for s in mixed], 0.99)
    f["big_count"] = len(mixed)
    return r


async def idle_memory(server: Server, n: int, hold: float) -> dict[str, float]:
    """RSS growth of ``server`` with ``n`` open streams whose first token never comes."""
    target = Target(server.url)
    request = target.request(script_body("x\n</think>\n\nidle", 0, "Idle stream. SIM_TTFT:120"))
    samples, _ = await closed_loop(target, WARMUP_BODY, 50, 2)  # first-use allocations
    assert all(s.status == 200 for s in samples)
    target.close()
    await asyncio.sleep(0.5)
    before = server.rss_kib()
    conns: list[HttpConn] = []
    try:
        for i in range(0, n, 100):  # listen backlogs are ~100
            batch = await asyncio.gather(*(target.connect() for _ in range(min(100, n - i))))
            for conn in batch:
                conn.send(request)
            await asyncio.wait_for(asyncio.gather(*(c.got_head for c in batch if c.got_head)), 60)
            conns += batch
        ok = sum(c.status == 200 for c in conns)
        await asyncio.sleep(hold)
        during = server.rss_kib()
    finally:
        for conn in conns:
            conn.close()
    await asyncio.sleep(1.0)
    after = server.rss_kib()
    return {
        "streams": ok,
        "rss_before": before,
        "rss_open": during,
        "rss_after": after,
        "kib_per_stream": (during - before) / max(ok, 1),
    }


def snapshot(rev: str, dest: Path) -> str:
    """Extract ``parser/`` and ``proxy/`` at git revision ``rev`` into ``dest``; its full id."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", rev + "^{commit}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    data = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "parser", "proxy"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return commit


def source_note(commit: str | None) -> str:
    """Where the proxy and the sim came from: ``--rev``'s commit or the working tree."""
    if commit:
        return f"proxy and sim from commit `{commit[:10]}` (`--rev`)"
    return common.source_note("proxy and sim from ")


def report(r: Result) -> None:
    """One line per timed run, as it ends."""
    f, w = r.figures, r.workload
    big = (f" big ttfb alone {f['big_ttfb_alone']:.2f} mix {f['big_ttfb_mix']:.2f}"
           f" ({f['big_count']:.0f} big)") if "big_count" in f else ""  # fmt: skip
    print(
        f"{w.key:10} {r.target:9} wall {r.wall:6.2f}s total {f['total_mean']:8.1f}ms"
        f" ttft p50 {f['ttft_p50']:7.1f} gap p99 {f['gap_p99']:6.2f}"
        f" added p50/p99 {f['added_p50']:6.2f}/{f['added_p99']:6.2f}"
        f" tok/s {f['tokens_per_s']:8.0f} chunks/req {f['chunks_per_req']:6.1f}"
        + "".join(f" cpu_{n} {f['cpu_' + n]:.4f}" for n in r.cpu)
        + f" other {f['other_cores']:.2f} cores"
        + big
        + (f" ERRORS {r.errors}" if r.errors else ""),
        flush=True,
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # children inherit it
    results: list[Result] = []
    idle: dict[str, dict[str, float]] = {}
    servers: list[Server] = []
    if args.wait_quiet:
        await common.wait_quiet(args.wait_quiet, 3.0, interval=0.5)
    RETRY_DEADLINE[0] = time.monotonic() + args.retry_budget
    with tempfile.TemporaryDirectory(prefix="bench_proxy_") as tmp:
        workdir = Path(tmp)
        commit = None
        if args.rev:
            src = workdir / "src"
            commit = snapshot(args.rev, src)
            CHILD_ENV["PYTHONPATH"] = str(src)
            sys.path.insert(0, str(src))  # the sim's reply planner, for the long workload
        loads = workloads(args.quick)
        picked = args.targets.split(",") if args.targets else []
        if args.scenarios:
            loads = [w for w in loads if w.key in args.scenarios.split(",")]
        try:
            sim = start_sim(workdir)
            servers.append(sim)
            await wait_ready(sim)
            relay = start_relay(workdir, sim.url)
            floor = start_floor(workdir, sim.url)
            proxy = start_proxy(workdir, sim.url, "uvloop" if args.loops else "auto")
            servers += [relay, floor, proxy]
            for server in servers[1:]:
                await wait_ready(server)
            targets = {
                "direct": Target(sim.url),
                "relay": Target(relay.url),
                "floor": Target(floor.url),
                "proxy": Target(proxy.url),
                **{api: Target(proxy.url, path) for api, path in PATHS.items()},
            }
            watched = {
                "direct": {"sim": sim},
                "relay": {"sim": sim, "relay": relay},
                "floor": {"sim": sim, "floor": floor},
                **{t: {"sim": sim, "proxy": proxy} for t in ("proxy", *PATHS)},
            }
            more = {M3: ("auto", "m3")} | ({ASYNCIO: ("asyncio", "auto")} if args.loops else {})
            for name, (loop, grammar) in more.items():
                if not picked or name in picked:
                    other = start_proxy(workdir, sim.url, loop, name, grammar)
                    servers.append(other)
                    await wait_ready(other)
                    targets[name] = Target(other.url)
                    watched[name] = {"sim": sim, name: other}
            order = [t for t in (*TARGETS, M3, ASYNCIO) if t in targets]
            order = [t for t in order if not picked or t in picked]
            try:
                for t in order:  # first-use costs (imports, caches) out of the way
                    await closed_loop(targets[t], body_for(t, loads[0]), 4, 5)
                for w in loads:
                    base = None
                    for t in order:
                        r = await measure(t, targets[t], for_target(w, t), watched[t],
                                          args.retries)  # fmt: skip
                        if t == "direct":
                            base = baseline_curve(w, measured(r))
                        # The direct run's token times are of the M2 text, not M3's.
                        analyse(r, None if t == M3 else base)
                        r.streams = []  # the raw reads are not needed any more
                        results.append(r)
                        report(r)
                if not args.scenarios or "bigmix" in args.scenarios.split(","):
                    w, bodies = mix_workload(args.quick), big_bodies()
                    for t in (t for t in order if t in bodies):
                        r = await big_mix(t, targets[t], w, bodies[t], watched[t])
                        analyse(r, None)
                        r.streams = []
                        results.append(r)
                        report(r)

            finally:
                for target in targets.values():
                    target.close()
            if not args.skip_idle:
                for s in servers[1:]:
                    s.stop()
                n = 50 if args.quick else 1000
                for make in (start_relay, start_proxy):
                    fresh = make(workdir, sim.url)
                    servers.append(fresh)
                    await wait_ready(fresh)
                    idle[fresh.name] = await idle_memory(fresh, n, 0.5 if args.quick else 2.0)
                    fresh.stop()
                    print(f"idle {fresh.name}: {idle[fresh.name]}", flush=True)
        finally:
            for s in servers:
                s.stop()
    return {"results": results, "idle": idle, "source": source_note(commit)}


async def profile(args: argparse.Namespace) -> None:
    """Sample the proxy with py-spy under one scenario's load (default: 64 streams, full speed),
    over and over for ``--profile-seconds``; print the top costs per backend chunk."""
    pyspy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(pyspy).exists():
        sys.exit("--profile needs py-spy: .venv/bin/pip install py-spy")
    seconds = args.profile_seconds
    out = Path(args.profile).resolve()
    w = next(w for w in workloads(False) if w.key == args.profile_scenario)
    if args.wait_quiet:
        await common.wait_quiet(args.wait_quiet, 3.0, interval=0.5)
    with tempfile.TemporaryDirectory(prefix="bench_proxy_") as tmp:
        workdir = Path(tmp)
        if args.rev:
            snapshot(args.rev, workdir / "src")
            CHILD_ENV["PYTHONPATH"] = str(workdir / "src")
        servers: list[Server] = []
        spy: subprocess.Popen[bytes] | None = None
        try:
            sim = start_sim(workdir)
            servers.append(sim)
            await wait_ready(sim)
            who = args.profile_target
            proxy = (
                start_floor(workdir, sim.url) if who == "floor" else start_proxy(workdir, sim.url)
            )
            servers.append(proxy)
            await wait_ready(proxy)
            target = Target(proxy.url, PATHS.get(who, "/v1/chat/completions"))
            body = body_for(who, w)
            await warm_up(target, w.concurrency)
            await closed_loop(target, body, w.concurrency, 2)
            argv = [pyspy, "record", "--pid", str(proxy.proc.pid), "--rate", "250", "--format"]
            argv += ["raw", "--duration", str(math.ceil(seconds)), "-o", str(out)]
            spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            await asyncio.sleep(1.0)
            cpu0, chunks = proxy.cpu(), 0
            deadline = time.monotonic() + seconds - 2.0
            while time.monotonic() < deadline:
                samples, _ = await closed_loop(target, body, w.concurrency, 2, w.spread)
                chunks += len(samples) * w.backend_chunks
            cpu = proxy.cpu() - cpu0
            _, err = spy.communicate(timeout=seconds + 60)
            if spy.returncode:
                sys.exit(f"py-spy failed: {err.decode(errors='replace')[-1000:]}")
            target.close()
        finally:
            if spy is not None and spy.poll() is None:
                spy.kill()
                spy.wait(timeout=5)
            for server in servers:
                server.stop()
    per_chunk = cpu / chunks * 1e6
    who = args.profile_target
    print(f"{who}: {cpu:.2f} CPU s for {chunks} backend chunks = {per_chunk:.2f} µs per chunk")
    print(f"collapsed stacks: {out}")
    print(summarise_profile(out, per_chunk))


_CATEGORIES = (  # (label, pattern on the leaf frame's file), first match wins
    (
        "event loop (asyncio scheduling, epoll)",
        r"asyncio/(base_events|events|tasks|futures)|selectors",
    ),
    (
        "socket reads and writes (asyncio transports, syscalls)",
        r"asyncio/(selector_events|streams)",
    ),
    ("backend HTTP client (aiohttp)", r"aiohttp/|yarl/|multidict/"),
    ("ASGI server (hypercorn, h11)", r"hypercorn/|h11/"),
    ("Starlette", r"starlette/"),
    ("SSE decoding (proxy/sse.py)", r"proxy/sse\.py"),
    ("backend chunk JSON decode + read loop (proxy/upstream.py)", r"proxy/upstream\.py"),
    ("parser (parser/)", r"\(parser/"),
    ("turn + shaping (proxy/turn.py, shape.py)", r"proxy/(turn|shape)\.py"),
    ("writers (proxy/chat, messages, responses writer.py)", r"proxy/\w+/writer\.py"),
    ("metrics, traces, logs (proxy/metrics.py, trace.py, logs.py)", r"proxy/(metrics|trace|logs)"),
    ("driver and routes (proxy/service.py, app.py, streaming.py, ...)", r"\(proxy/"),
    ("stdlib logging", r"logging/"),
)


def summarise_profile(path: Path, per_chunk: float, top: int = 20) -> str:
    """Self time by component and by function from py-spy's collapsed stacks, µs per chunk."""
    self_: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        frames = [re.sub(r"\(/.*/(site-packages|lib/python3\.\d+|src)/", "(", f) for f in frames]
        self_[frames[-1]] = self_.get(frames[-1], 0) + n
        for f in set(frames):
            if "(proxy/" in f or "(parser/" in f:
                incl[f] = incl.get(f, 0) + n
    by_category: dict[str, int] = {}
    for f, n in self_.items():
        label = next((c for c, pat in _CATEGORIES if re.search(pat, f)), "other")
        by_category[label] = by_category.get(label, 0) + n

    def row(n: int, name: str) -> str:
        return f"  {n / total * per_chunk:6.2f} µs {n / total:6.1%}  {name}"

    out = [f"{total} samples; µs per backend chunk (share of the proxy's CPU samples)"]
    out += ["", "self time by component:"]
    out += [row(n, c) for c, n in sorted(by_category.items(), key=lambda kv: -kv[1])]
    out += ["", "self time by function:"]
    out += [row(n, f) for f, n in sorted(self_.items(), key=lambda kv: -kv[1])[:top]]
    out += ["", "inclusive time, proxy and parser functions:"]
    out += [row(n, f) for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(out)


# ---------------------------------------------------------------------------- reporting


def _get(results: list[Result], key: str, target: str) -> dict[str, float] | None:
    for r in results:
        if r.workload.key == key and r.target == target:
            return r.figures
    return None


API_TARGETS = ("proxy", "messages", "responses")
API_NAMES = {"proxy": "chat", "messages": "Messages", "responses": "Responses"}


def _floor_rows(results: list[Result], api: str) -> list[tuple[str, str, str, bool]]:
    """Issue 18's targets for one API, each against the floor measured in the same run."""
    rows: list[tuple[str, str, str, bool]] = []
    name = API_NAMES[api]
    for key, how in (("c256_paced", "staggered"), ("c256_burst", "in phase")):
        fl, px = _get(results, key, "floor"), _get(results, key, api)
        if not (fl and px):
            continue
        ratio = px["cpu_proxy"] / fl["cpu_floor"]
        rows.append((f"{name}, 256 streams @100 tok/s {how}: CPU per backend chunk vs floor",
                     f"{ratio:.2f}x ({px['cpu_proxy'] * 1e3:.1f} vs "
                     f"{fl['cpu_floor'] * 1e3:.1f} µs)", "<= 1.2x", ratio <= 1.2))  # fmt: skip
        d = px["gap_p99"] - fl["gap_p99"]
        rows.append((f"{name}, 256 streams @100 tok/s {how}: gap p99 vs floor",
                     f"{d:+.2f} ms ({px['gap_p99']:.2f} vs {fl['gap_p99']:.2f})",
                     "<= +10 ms", d <= 10))  # fmt: skip
        d = px["ttft_p50"] - fl["ttft_p50"]
        rows.append((f"{name}, 256 streams @100 tok/s {how}: first chunk p50 vs floor",
                     f"{d:+.2f} ms ({px['ttft_p50']:.2f} vs {fl['ttft_p50']:.2f})",
                     "<= +10 ms", d <= 10))  # fmt: skip
    fl, px = _get(results, "c64_full", "floor"), _get(results, "c64_full", api)
    if fl and px:
        share = px["tokens_per_s"] / fl["tokens_per_s"]
        rows.append((f"{name}, 64 streams full speed: tokens/s vs floor",
                     f"{share:.2f}x ({px['tokens_per_s']:.0f} vs {fl['tokens_per_s']:.0f})",
                     ">= 0.75x", share >= 0.75))  # fmt: skip
    fl, px = _get(results, "bigmix", "floor"), _get(results, "bigmix", api)
    if fl and px:
        d = px["big_ttfb_alone"] - fl["big_ttfb_alone"]
        rows.append((f"{name}: 0.77 MB agent request, time to first byte vs floor (p50, alone)",
                     f"{d:+.2f} ms ({px['big_ttfb_alone']:.2f} vs {fl['big_ttfb_alone']:.2f})",
                     "<= +3 ms", d <= 3))  # fmt: skip
        d = px["gap_p99"] - fl["gap_p99"]
        rows.append((f"{name}: 64 streams' gap p99 while 0.77 MB requests arrive "
                     f"{BIG_RATE:g}/s, vs floor",
                     f"{d:+.2f} ms ({px['gap_p99']:.2f} vs {fl['gap_p99']:.2f})",
                     "<= +5 ms", d <= 5))  # fmt: skip
    return rows


def targets(
    results: list[Result], idle: dict[str, dict[str, float]]
) -> list[tuple[str, str, str, bool]]:
    """(target, measured, threshold, met) rows."""
    rows = [row for api in API_TARGETS for row in _floor_rows(results, api)]
    for api in API_TARGETS:
        ratios = [
            r.figures["chunks_per_req"] / r.figures["backend_per_req"]
            for r in results
            if r.target == api
        ]
        if ratios:
            lo, hi = min(ratios), max(ratios)
            rows.append((f"nothing held back: {API_NAMES[api]} chunks per request / backend "
                         "chunks", f"{lo:.2f} to {hi:.2f}", "0.9 to 1.1",
                         lo >= 0.9 and hi <= 1.1))  # fmt: skip
    ratios = [
        m3["cpu_" + M3] / px["cpu_proxy"] for _, (px, m3) in _scenarios(results, ("proxy", M3))
    ]
    if ratios:
        rows.append(("MiniMax-M3: proxy CPU per backend chunk vs MiniMax-M2 (worst scenario)",
                     f"{max(ratios):.2f}x (median {statistics.median(ratios):.2f}x)", "<= 1.15x",
                     max(ratios) <= 1.15))  # fmt: skip
    if "proxy" in idle:
        m = idle["proxy"]
        rows.append((f"{m['streams']:.0f} idle open streams: proxy memory per stream",
                     f"{m['kib_per_stream']:.1f} KiB", "<= 64 KiB",
                     m["kib_per_stream"] <= 64))  # fmt: skip
    return rows


def _scenarios(
    results: list[Result], names: Sequence[str]
) -> Iterator[tuple[str, list[dict[str, float]]]]:
    """(label, figures of each of ``names``) for every scenario measured on all of them."""
    for key in dict.fromkeys(r.workload.key for r in results):
        figures = [_get(results, key, t) for t in names]
        if all(figures):
            label = next(r.workload.label for r in results if r.workload.key == key)
            yield label, [f for f in figures if f]


def _fmt(x: float, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(out: dict[str, Any], command: str, elapsed: float) -> str:
    results: list[Result] = out["results"]
    idle = out["idle"]
    cpu_model = common.cpu_model()
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN_MARKER,
        "## Proxy (end to end)",
        "",
        f"Machine: {cpu_model}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}. Date: {now}. "
        f"Run time {elapsed:.0f} s.",
        "",
        f"Command: `{command}`; {out['source']}.",
        "",
        "Targets: **direct** = the simulated backend, **relay** = a minimal aiohttp pass-through "
        "(no parsing), **floor** = Starlette on hypercorn passing the backend's bytes through "
        "(aiohttp upstream; the proxy's loop, backlog, keep-alive and gc settings): what any "
        "proxy on this stack costs at the least, **proxy** = this project (one hypercorn worker, "
        "default settings: thinking passed through as `<think>` text, "
        + (
            "pinned to uvloop; **proxy_asyncio** = the same on the standard asyncio loop). "
            if any(r.target == ASYNCIO for r in results)
            else "uvloop where installed). "
        )
        + "**messages** and **responses** = the same proxy process answering the same backend "
        "reply on `POST /v1/messages` (thinking blocks) and `POST /v1/responses` (reasoning as "
        "summary deltas). "
        "Sim, target and load generator share the 2 cores. "
        "Each request is a ~200-token reasoning-then-text reply (4 characters a token); the "
        "long one is the sim's `long parallel` tools reply. At 100 tok/s, 64 and 256 streams are "
        "*staggered* (start times and token phases spread evenly; each worker's middle request, "
        "run entirely at full concurrency, is measured); *in phase* starts all 256 at once, so "
        "every stream's next token is due at the same instant, as a batching backend emits "
        "them. A timed run that other processes disturbed (over 0.25 cores of other load) is "
        "repeated, up to `--retries` times, and the least disturbed kept. The load generator "
        "only timestamps network reads; everything is decoded and checked afterwards.",
        "",
        "### Targets",
        "",
        "| target | measured | threshold | met |",
        "|---|---|---|---|",
    ]
    for name, measured, threshold, met in targets(results, idle):
        lines.append(f"| {name} | {measured} | {threshold} | {'met' if met else '**not met**'} |")
    lines += [
        "",
        "### Latency and throughput",
        "",
        "Times in ms. *added*: each event's arrival minus the direct run's median arrival of the "
        "backend token it needed (the proxy's output mapped back to raw positions). *chunks/s*: "
        "token-carrying events the client received per second; *tok/s*: backend chunks carried "
        "per second. *chunks/req*: events with text, reasoning or a call per request, against "
        "the backend's token chunks.",
        "",
        "| scenario | target | req | total mean | total p50 | TTFT p50 | TTFT p99 | gap p50 "
        "| gap p99 | added p50 | added p99 | chunks/s | tok/s | chunks/req (backend) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        f = r.figures
        lines.append(
            f"| {r.workload.label} | {r.target} | {f['requests']:.0f} | {_fmt(f['total_mean'])} "
            f"| {_fmt(f['total_p50'])} | {_fmt(f['ttft_p50'], 2)} | {_fmt(f['ttft_p99'], 2)} "
            f"| {_fmt(f['gap_p50'], 2)} | {_fmt(f['gap_p99'], 2)} | {_fmt(f['added_p50'], 2)} "
            f"| {_fmt(f['added_p99'], 2)} | {f['chunks_per_s']:.0f} | {f['tokens_per_s']:.0f} "
            f"| {f['chunks_per_req']:.0f} ({f['backend_per_req']:.0f}) |"
        )
    lines += [
        "",
        "### CPU per 1,000 backend chunks (seconds)",
        "",
        "On-CPU time of each process during the timed load (`/proc/<pid>/task/*/schedstat`), "
        "divided by the backend token chunks carried. *sim* is the backend's own cost in the "
        "same run, *client* this load generator's.",
        "",
        "| scenario | relay | floor | chat | Messages | Responses | chat / floor "
        "| Messages / floor | Responses / floor | sim (direct) | client (direct / floor / chat) "
        "| other load, cores (direct / floor / chat) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    names = ("direct", "relay", "floor", *API_TARGETS)
    for label, (d, rl, fl, px, ms, rs) in _scenarios(results, names):
        base = fl["cpu_floor"]
        lines.append(
            f"| {label} | {rl['cpu_relay']:.4f} | {base:.4f} | {px['cpu_proxy']:.4f} "
            f"| {ms['cpu_proxy']:.4f} | {rs['cpu_proxy']:.4f} | {px['cpu_proxy'] / base:.2f}x "
            f"| {ms['cpu_proxy'] / base:.2f}x | {rs['cpu_proxy'] / base:.2f}x "
            f"| {d['cpu_sim']:.4f} "
            f"| {d['cpu_client']:.4f} / {fl['cpu_client']:.4f} / {px['cpu_client']:.4f} "
            f"| {d['other_cores']:.2f} / {fl['other_cores']:.2f} / {px['other_cores']:.2f} |"
        )
    others = [r.figures["other_cores"] for r in results]
    if others:
        lines += [
            "",
            "*other load*: CPU the rest of the machine used during each timed run (`/proc/stat` "
            "minus the processes above; includes kernel threads), mean "
            f"{statistics.fmean(others):.2f} cores, max {max(others):.2f}."
            + (
                " **The machine was not quiet: figures are disturbed.**"
                if max(others) > 0.3
                else ""
            ),
        ]
    if idle:
        lines += [
            "",
            "### Idle open streams (memory)",
            "",
            "Fresh server process, warmed with 100 short requests; then N streams whose first "
            "token the sim holds back (`SIM_TTFT:120`), all open at once; VmRSS in KiB.",
            "",
            "| server | open streams | RSS before | RSS with streams open | after closing "
            "| KiB per stream |",
            "|---|--:|--:|--:|--:|--:|",
        ]
        for name, m in idle.items():
            lines.append(
                f"| {name} | {m['streams']:.0f} | {m['rss_before']:.0f} | {m['rss_open']:.0f} "
                f"| {m['rss_after']:.0f} | {m['kib_per_stream']:.1f} |"
            )
    lines += big_table(results)
    lines += loops_table(results)
    lines += m3_table(results)
    errors = [e for r in results for e in r.errors]
    lines += ["", "Correctness: " + ("every response matched the sim's plan." if not errors
              else "**mismatches:** " + "; ".join(errors[:10]))]  # fmt: skip
    lines += ["", f"![proxy overhead]({PLOT_PATH.name})", "", END_MARKER]
    return "\n".join(lines) + "\n"


def big_table(results: list[Result]) -> list[str]:
    """The big agent requests: alone, and in the mix with running streams."""
    rows = [r for r in results if "big_count" in r.figures]
    if not rows:
        return []
    lines = [
        "",
        "### Big agent requests among running streams",
        "",
        f"A ~0.77 MB agent request shaped like Claude Code's late in a session (600 messages, 24 "
        f"tools; `benchmarks/agent_request.py`, in each API's shape; the floor and the relay "
        f"forward the chat-completions one), answered with a short reply. *alone*: "
        f"{BIG_ALONE} sent one at a time to an idle server, time to the response's first byte "
        f"(p50). *mix*: {rows[0].workload.label}: the streams run as in the staggered 64-stream "
        f"scenario while a big request arrives every {1 / BIG_RATE:g} s on its own connection; "
        "*gap p99* is the running streams' (measured requests only), *without* the same in the "
        "64-stream scenario above.",
        "",
        "| target | first byte alone p50 ms | first token alone p50 ms | first byte in mix p50 "
        "/ p99 ms | big requests in mix | gap p99 in mix ms | gap p99 without ms |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        f = r.figures
        without = _get(results, "c64_paced", r.target) or {}
        lines.append(
            f"| {r.target} | {_fmt(f['big_ttfb_alone'], 2)} | {_fmt(f['big_ttft_alone'], 2)} "
            f"| {_fmt(f['big_ttfb_mix'], 2)} / {_fmt(f['big_ttfb_mix_p99'], 2)} "
            f"| {f['big_count']:.0f} | {_fmt(f['gap_p99'], 2)} "
            f"| {_fmt(without.get('gap_p99', math.nan), 2)} |"
        )
    return lines


def loops_table(results: list[Result]) -> list[str]:
    """The proxy on uvloop against the proxy on asyncio, scenario by scenario (``--loops``)."""
    if not any(r.target == ASYNCIO for r in results):
        return []
    lines = [
        "",
        "### Event loop: uvloop against asyncio",
        "",
        "The same proxy and settings, measured in the same run one after the other. Total time "
        "is the mean per request, as a ratio to the relay's; CPU in µs per backend chunk.",
        "",
        "| scenario | total vs relay: uvloop | asyncio | gap p99 ms: uvloop | asyncio "
        "| CPU µs/chunk: uvloop | asyncio |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for label, (rl, uv, aio) in _scenarios(results, ("relay", "proxy", ASYNCIO)):
        lines.append(
            f"| {label} | {uv['total_mean'] / rl['total_mean']:.3f}x "
            f"| {aio['total_mean'] / rl['total_mean']:.3f}x | {_fmt(uv['gap_p99'], 2)} "
            f"| {_fmt(aio['gap_p99'], 2)} | {uv['cpu_proxy'] * 1e3:.1f} "
            f"| {aio['cpu_' + ASYNCIO] * 1e3:.1f} |"
        )
    return lines


def m3_table(results: list[Result]) -> list[str]:
    """The proxy's CPU per backend chunk on MiniMax-M3 text beside MiniMax-M2's, per scenario."""
    rows = list(_scenarios(results, ("proxy", M3)))
    if not rows:
        return []
    lines = [
        "",
        "### MiniMax-M3 beside MiniMax-M2",
        "",
        f"**{M3}**: a second proxy process (`MODEL_GRAMMAR=m3`) in front of the same sim, "
        "streaming each scenario's reply written in M3's text (`<mm:think>` tags; the long "
        "reply's calls in M3's markup), checked to decode to the same text and calls. CPU "
        "seconds per 1,000 backend chunks of each proxy process.",
        "",
        "| scenario | proxy (M2) | proxy_m3 | M3 / M2 | other load, cores (M2 / M3) |",
        "|---|--:|--:|--:|--:|",
    ]
    for label, (px, m3) in rows:
        lines.append(
            f"| {label} | {px['cpu_proxy']:.4f} | {m3['cpu_' + M3]:.4f} "
            f"| {m3['cpu_' + M3] / px['cpu_proxy']:.2f}x "
            f"| {px['other_cores']:.2f} / {m3['other_cores']:.2f} |"
        )
    return lines


def plot(results: list[Result], path: Path) -> None:
    """CPU per backend chunk (relay, proxy on both APIs) and p99 gap (all targets) by scenario.

    Hatched bars: runs that other processes disturbed (over ``QUIET_CORES`` of other load).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(r.workload.key for r in results))
    labels = [k.replace("_", "\n") for k in keys]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    xs = list(range(len(keys)))

    def bars(ax: Any, targets: Sequence[str], metric: Any, scale: float) -> None:
        width = 0.8 / len(targets)
        for i, target in enumerate(targets):
            figs = [_get(results, k, target) or {} for k in keys]
            vals = [f.get(metric(target), math.nan) * scale for f in figs]
            hatch = ["//" if f.get("other_cores", 0) > QUIET_CORES else "" for f in figs]
            at = [x + (i - (len(targets) - 1) / 2) * width for x in xs]
            drawn = ax.bar(at, vals, width, label=target, color=f"C{TARGETS.index(target)}")
            for bar, h in zip(drawn, hatch, strict=True):
                bar.set_hatch(h)
        ax.set_xticks(xs, labels)
        ax.legend()

    bars(
        ax1,
        ("relay", "proxy", "responses"),
        lambda t: "cpu_relay" if t == "relay" else "cpu_proxy",
        1e3,
    )
    ax1.set_ylabel("server CPU µs per backend chunk")
    ax1.set_title("CPU per backend chunk")
    bars(ax2, TARGETS, lambda t: "gap_p99", 1.0)
    ax2.set_ylabel("ms")
    ax2.set_yscale("symlog", linthresh=1)
    ax2.set_title("p99 gap between token chunks (client side)")
    fig.suptitle(
        "minimax-m2-proxy vs a pass-through relay vs the bare sim (hatched: disturbed run)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sse(raw: str) -> list[bytes]:
    """``raw`` as a raw backend streams it: one SSE chunk per token, then the finish."""
    head = b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m",'
    out = [head + b'"choices":[{"index":0,"delta":{"content":' + msgspec.json.encode(
        raw[i : i + TOKEN_CHARS]) + b'},"finish_reason":null}]}\n\n'
        for i in range(0, len(raw), TOKEN_CHARS)]  # fmt: skip
    out.append(head + b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    return [*out, b"data: [DONE]\n\n"]


def _pipeline_cpu(reads: list[bytes], tools: Any, grammar: str, starts: bool) -> float:
    """CPU seconds for one response through the proxy's steps, one backend chunk per read:
    the SSE reader, the turn (parser), the shaper and the chat-completions stream writer."""
    from proxy.chat.writer import OpenAIStream
    from proxy.grammar import by_name
    from proxy.shape import Shaper
    from proxy.turn import Turn
    from proxy.upstream import ChunkReader

    g = by_name(grammar)
    t0 = time.process_time()
    reader, turn = ChunkReader(), Turn(tools, starts, grammar=g)
    shaper = Shaper(think_as_text=True, shown=(g.shown_open, g.shown_close))
    writer = OpenAIStream("chatcmpl-x", 0, "m", True)
    for data in reads:
        writer.ops(shaper.feed(turn.feed(reader.feed(data))))
    writer.ops(shaper.feed(turn.close()) + shaper.close())
    writer.end(turn, shaper.calls)
    return time.process_time() - t0


def _m3_cases() -> list[tuple[str, Any, str, str]]:
    """(label, tools, M2 raw, M3 raw): the 200-token reply and the long tools reply, each
    written in both grammars (M3 in thinking mode adaptive, the model choosing to think)."""
    cases = []
    for w in workloads(quick=False):
        if w.key == "c1_full":
            cases.append(("1 stream, full speed (~200-token reasoning then text)", None, w.raw,
                          w.m3_raw))  # fmt: skip
        elif w.key == "long":
            tools = json.loads(w.body)["tools"]
            cases.append(("long tools reply (3 calls)", tools, w.raw, w.m3_raw))
    return cases


def pipeline_m3(quick: bool) -> list[str]:
    """The proxy's CPU per backend chunk on MiniMax-M3 beside MiniMax-M2, in this one
    process: the same replies in both grammars, alternated round by round, so machine load
    hits both alike. Reports the median over rounds of each reply's M3 / M2 ratio."""
    rounds, reps = (5, 3) if quick else (41, 20)
    lines = ["| reply | backend chunks M2 / M3 | M2 µs per chunk | M3 µs per chunk | M3 / M2 |",
             "|---|--:|--:|--:|--:|"]  # fmt: skip
    for label, tools, raw, m3_raw in _m3_cases():
        reads = {"m2": _sse(raw), "m3": _sse(m3_raw)}
        starts = {"m2": True, "m3": False}
        per_chunk: dict[str, list[float]] = {"m2": [], "m3": []}
        for n in range(rounds):
            for g in ("m2", "m3") if n % 2 else ("m3", "m2"):
                cpu = sum(_pipeline_cpu(reads[g], tools, g, starts[g]) for _ in range(reps))
                per_chunk[g].append(cpu / reps / (len(reads[g]) - 2) * 1e6)
        ratios = [b / a for a, b in zip(per_chunk["m2"], per_chunk["m3"], strict=True)]
        m2, m3 = statistics.median(per_chunk["m2"]), statistics.median(per_chunk["m3"])
        lines.append(f"| {label} | {len(reads['m2']) - 2} / {len(reads['m3']) - 2} "
                     f"| {m2:.2f} | {m3:.2f} | {statistics.median(ratios):.3f}x "
                     f"(rounds {min(ratios):.2f} to {max(ratios):.2f}) |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts, a few seconds; no files")
    ap.add_argument("--write", action="store_true", help="write RESULTS.md and the PNG in --quick")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--scenarios", help="comma-separated subset, e.g. c64_full,long")
    ap.add_argument(
        "--targets",
        help=f"comma-separated subset of {','.join([*TARGETS, M3])}, e.g. proxy,proxy_m3",
    )
    ap.add_argument("--rev", help="run the proxy and sim of this git revision (e.g. HEAD)")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="first wait up to S seconds for the rest of the machine to go idle",
    )
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="instead: py-spy the proxy under the 64-stream full-speed load, write "
        "collapsed stacks to FILE and print the top costs per chunk",
    )
    ap.add_argument("--profile-seconds", type=float, default=15.0, metavar="S", help="(15)")
    ap.add_argument("--profile-scenario", default="c64_full", metavar="KEY", help="(c64_full)")
    ap.add_argument(
        "--profile-target",
        default="proxy",
        choices=("proxy", "messages", "responses", "floor"),
        help="what --profile samples: the proxy on chat completions (default), Messages or "
        "Responses, or the floor",
    )
    ap.add_argument(
        "--retries",
        type=int,
        default=None,
        metavar="N",
        help="measure a run again (up to N times) when other processes disturbed it; "
        "default 2, 0 with --quick",
    )
    ap.add_argument(
        "--retry-budget",
        type=float,
        default=240.0,
        metavar="S",
        help="no more repeats once the run has taken S seconds (240)",
    )
    ap.add_argument("--skip-idle", action="store_true", help="skip the idle-streams memory test")
    ap.add_argument(
        "--pipeline-m3",
        action="store_true",
        help="only the proxy's steps in this process, MiniMax-M3 beside M2 (CPU per chunk); prints",
    )
    ap.add_argument(
        "--loops",
        action="store_true",
        help="run the proxy on uvloop and, as a fourth target, on asyncio, side by side",
    )
    ap.add_argument("--serve-relay", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--upstream", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.retries is None:
        args.retries = 0 if args.quick else 2
    if args.serve_relay:
        serve_relay("127.0.0.1", args.port, args.upstream)
        return
    if args.serve_floor:
        serve_floor("127.0.0.1", args.port, args.upstream)
        return
    if args.profile:
        asyncio.run(profile(args))
        return
    if args.pipeline_m3:
        print("\n".join(pipeline_m3(args.quick)))
        return
    command = " ".join([".venv/bin/python", "benchmarks/bench_proxy.py", *sys.argv[1:]])
    t0 = time.perf_counter()
    out = asyncio.run(run(args))
    elapsed = time.perf_counter() - t0
    section = markdown(out, command, elapsed)
    print(section)
    if (
        (not args.quick or args.write)
        and not args.no_write
        and not (args.scenarios or args.targets)
    ):
        common.write_section(RESULTS_PATH, "proxy", section, framed=True)
        plot(out["results"], PLOT_PATH)
        print(f"wrote {RESULTS_PATH} and {PLOT_PATH}")


if __name__ == "__main__":
    main()
