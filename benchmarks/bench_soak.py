"""Load and soak: hundreds of concurrent streams for minutes, every character checked.

Run from the repository root::

    .venv/bin/python benchmarks/bench_soak.py              # full: 500 streams, 4 min; writes
                                                           # RESULTS.md (soak) and soak_memory.png
    .venv/bin/python benchmarks/bench_soak.py --quick      # ~20 s smoke run, writes nothing
    .venv/bin/python benchmarks/bench_soak.py --minutes 10 --streams 800 --rate 50

Processes (all on loopback, all stopped at the end, whatever happens):

- the simulated MiniMax-M2 backend (``python -m proxy sim``), pacing every stream at ``--rate``
  backend tokens per second;
- the proxy (``python -m proxy``, one hypercorn worker), the process whose memory is watched;
- ``--workers`` load generators (this file with ``--worker``), each keeping its share of
  ``--streams`` streams open all the time: when one ends, the next starts.

Every stream is a transcript this script knows in advance: the reply is planned with the sim's
own planner (``proxy.sim.plan_reply``: reasoning, text, one tool call, three parallel calls,
~8,000-character code arguments, a long plain answer), cut into random backend tokens of 1-7
characters, and sent as ``SIM_SCRIPT`` so the sim streams exactly that. The client assembles what
the proxy sent and compares it with ``parser.parse(raw, tools)`` shaped as the proxy documents:

- OpenAI, ``reasoning_split``: ``reasoning_content`` (and the ``reasoning_details`` texts) equal
  the parsed reasoning stripped; ``content`` the parsed content stripped; each tool call's
  arguments string equals ``arguments_json``, names and order equal, ids unique; finish reason;
  usage chunk when asked; ``[DONE]`` last;
- OpenAI, thinking passthrough: ``content`` equals
  ``<think>\\n{reasoning}\\n</think>\\n\\n{content}``;
- Anthropic: a thinking block (text = reasoning, a signature), a text block (content), a
  tool_use block per call (``input`` equal to the arguments, the ``input_json_delta`` pieces
  joined equal to ``arguments_json``), ``stop_reason``, ``message_stop`` last.

The parsed tool calls are also compared with the calls the planner meant to make. At the end the
sim's request log (its last ``--log-limit`` requests) must show every backend stream completed.

Figures: streams/s and backend tokens/s, time to first token (first content-bearing event) and
the gap between consecutive content-bearing network reads (p50/p99), achieved per-stream rate,
errors by kind (target zero), and the proxy's RSS sampled every ``--sample`` seconds (target:
flat after the warm-up) with its CPU use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as _dt
import json
import math
import os
import random
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import msgspec  # noqa: E402
import numpy as np  # noqa: E402

import parser  # noqa: E402
from proxy.sim import plan_reply  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "RESULTS.md"
PLOT_PATH = BENCH_DIR / "soak_memory.png"
PYTHON = sys.executable

# ---------------------------------------------------------------------------- transcripts

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "required": ["city"],
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer", "minimum": 1, "maximum": 14},
                    "metric": {"type": "boolean"},
                    "units": {"enum": ["c", "f"]},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "parameters": {
                "type": "object",
                "required": ["content", "path"],
                "properties": {
                    "content": {"type": "string"},
                    "path": {"type": "string"},
                    "mode": {"type": ["integer", "null"]},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer"},
                    "score": {"type": "number", "minimum": 0, "maximum": 1},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "filters": {
                        "type": "object",
                        "properties": {"lang": {"type": "string"}, "year": {"type": "integer"}},
                    },
                },
            },
        },
    },
]
TOPICS = (
    "caching strategies",
    "naïve café in Zürich",
    "東京 train timetables",
    "a JSON parser in C",
    "the </think> tag",
    'quoting "things" \\ properly',
    "rate limits and retries",
    "SQL joins",
)
# kind: (weight, prompt words, tools or None, planned tokens roughly)
# kind: (weight, prompt words, tools, backend tokens at most, roughly)
KINDS: dict[str, tuple[int, str, list[dict[str, Any]] | None, int]] = {
    "plain": (30, "Tell me about", None, 150),
    "plain_long": (6, "Write a long piece about", None, 2500),
    "tool": (28, "Use a tool for", TOOLS, 200),
    "parallel": (18, "In parallel, look up", TOOLS, 320),
    "long_code": (10, "Write a long file about", [TOOLS[1]], 2500),
    "parallel_long": (8, "In parallel write long notes on", TOOLS, 2500),
}
APIS = ("openai_split", "openai_think", "anthropic")


@dataclass
class Job:
    """One stream to run, and what it must produce."""

    api: str
    kind: str
    body: bytes
    path: str
    tokens: int  # backend tokens (SIM_SCRIPT chunks)
    raw: str
    reasoning: str
    content: str
    calls: list[tuple[str, str, Any]]  # (name, arguments_json, arguments)
    include_usage: bool = False
    seq: str = ""


_SIZES = np.random.default_rng(6).integers(1, 8, size=1 << 16)  # backend tokens of 1-7 chars
_ENDS = np.cumsum(_SIZES)


def token_sizes(rng: random.Random, length: int) -> list[int]:
    """Random token sizes (1-7 characters) that add up to ``length``."""
    start = rng.randrange(len(_SIZES) // 2)
    base = int(_ENDS[start - 1]) if start else 0
    n = int(np.searchsorted(_ENDS[start:], base + length)) + 1
    sizes: list[int] = _SIZES[start : start + n].tolist()
    sizes[-1] -= sum(sizes) - length
    return sizes


def make_job(rng: random.Random, seq: str, max_tokens: float = math.inf) -> Job | None:
    """A random job whose reply is at most about ``max_tokens`` long; None if none is."""
    kinds = [k for k, v in KINDS.items() if v[3] <= max_tokens]
    if not kinds:
        return None
    kind = rng.choices(kinds, weights=[KINDS[k][0] for k in kinds])[0]
    _, words, tools, _ = KINDS[kind]
    api = rng.choice(APIS)
    if tools is not None and kind == "tool":
        first = rng.randrange(len(tools))
        tools = tools[first:] + tools[:first]  # the sim calls the first tool
    prompt = f"{words} {rng.choice(TOPICS)} ({seq})"
    plan_body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}]}
    if tools:
        plan_body["tools"] = tools
    raw, planned = plan_reply(plan_body)
    sizes = token_sizes(rng, len(raw))
    result = parser.parse(raw, tools)
    calls = [(c.name, c.arguments_json, c.arguments) for c in result.tool_calls]
    if [(n, a) for n, _, a in calls] != [(c["name"], c["arguments"]) for c in planned]:
        raise AssertionError(f"parser and planner disagree on {seq}: {calls!r} vs {planned!r}")
    text = prompt + " SIM_SCRIPT:" + msgspec.json.encode({"raw": raw, "chunks": sizes}).decode()
    include_usage = False
    if api == "anthropic":
        path = "/v1/messages"
        body: dict[str, Any] = {
            "model": "claude-soak",
            "max_tokens": 16000,
            "stream": True,
            "messages": [{"role": "user", "content": text}],
        }
        if tools:
            body["tools"] = [
                {
                    "name": t["function"]["name"],
                    "description": "soak tool",
                    "input_schema": t["function"]["parameters"],
                }
                for t in tools
            ]
    else:
        path = "/v1/chat/completions"
        include_usage = rng.random() < 0.5
        body = {
            "model": "minimax-m2",
            "stream": True,
            "messages": [{"role": "user", "content": text}],
            "reasoning_split": api == "openai_split",
        }
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = tools
    return Job(
        api,
        kind,
        msgspec.json.encode(body),
        path,
        len(sizes),
        raw,
        (result.reasoning or "").strip(),
        (result.content or "").strip(),
        calls,
        include_usage,
        seq,
    )


# ---------------------------------------------------------------------------- histograms

BINS_PER_DECADE = 50
LOW_EXP = -6  # 1 µs
N_BINS = BINS_PER_DECADE * 9  # up to 1000 s


def bin_of(seconds: float) -> int:
    if seconds <= 0:
        return 0
    b = int((math.log10(seconds) - LOW_EXP) * BINS_PER_DECADE)
    return min(max(b, 0), N_BINS - 1)


def hist_pct(hist: list[int], q: float) -> float:
    """The q-th percentile (0-100) of a log histogram: the upper edge of its bin."""
    total = sum(hist)
    if not total:
        return float("nan")
    need = q / 100 * total
    run = 0
    for i, n in enumerate(hist):
        run += n
        if run >= need:
            return float(10 ** (LOW_EXP + (i + 1) / BINS_PER_DECADE))
    return float(10 ** (LOW_EXP + N_BINS / BINS_PER_DECADE))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


# ---------------------------------------------------------------------------- one stream

_decode = msgspec.json.decode


class Assembled:
    """What one stream assembled to, as the client saw it."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.details: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.usage: Any = None
        self.error: Any = None
        self.done = False
        self.names: list[str] = []  # Anthropic event names, in order
        self.blocks: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.role = False

    def openai(self, data: bytes) -> bool:
        """One OpenAI event's data; True when it carried content."""
        if data == b"[DONE]":
            self.done = True
            return False
        chunk = _decode(data)
        if "error" in chunk:
            self.error = chunk["error"]
            return False
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        carried = False
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("role") == "assistant":
                self.role = True
            if delta.get("content"):
                self.content.append(delta["content"])
                carried = True
            if delta.get("reasoning_content"):
                self.reasoning.append(delta["reasoning_content"])
                carried = True
            for d in delta.get("reasoning_details") or ():
                self.details.append(d["text"])
            for tc in delta.get("tool_calls") or ():
                call = self.calls.setdefault(tc["index"], {"id": None, "name": None, "args": []})
                if tc.get("id"):
                    if call["id"] is not None:
                        raise AssertionError(f"call {tc['index']} started twice")
                    call["id"] = tc["id"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    call["name"] = fn["name"]
                if fn.get("arguments"):
                    call["args"].append(fn["arguments"])
                carried = True
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return carried

    def anthropic(self, name: str, data: bytes) -> bool:
        """One Anthropic event; True when it carried content."""
        event = _decode(data)
        self.names.append(name)
        if name == "content_block_delta":
            block, delta = self.blocks[event["index"]], event["delta"]
            kind = delta["type"]
            if kind == "text_delta":
                block["text"] += delta["text"]
            elif kind == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif kind == "signature_delta":
                block["signature"] = delta["signature"]
            elif kind == "input_json_delta":
                block["_json"].append(delta["partial_json"])
            return kind != "signature_delta"
        if name == "content_block_start":
            if event["index"] != len(self.blocks):
                raise AssertionError(f"block index {event['index']}, expected {len(self.blocks)}")
            self.blocks.append({**event["content_block"], "_json": []})
            return bool(event["content_block"]["type"] == "tool_use")
        if name == "message_delta":
            self.stop_reason = event["delta"]["stop_reason"]
            self.usage = event.get("usage")
        elif name == "message_stop":
            self.done = True
        elif name == "error":
            self.error = event.get("error")
        return False


def check(job: Job, got: Assembled) -> str | None:
    """None when the stream is exactly what the transcript says; else what differs."""
    if got.error is not None:
        return f"error event: {got.error}"
    if not got.done:
        return "stream ended without its terminator"
    want_calls = job.calls
    if job.api == "anthropic":
        names = got.names
        if names[0] != "message_start" or names[-1] != "message_stop":
            return f"event order {names[:2]}..{names[-2:]}"
        blocks = got.blocks
        want: list[tuple[str, Any]] = []
        if job.reasoning:
            want.append(("thinking", job.reasoning))
        if job.content:
            want.append(("text", job.content))
        want += [("tool_use", (n, a)) for n, _, a in want_calls]
        have: list[tuple[str, Any]] = []
        pieces: list[str] = []
        for b in blocks:
            if b["type"] == "thinking":
                if not b.get("signature"):
                    return "thinking block without a signature"
                have.append(("thinking", b["thinking"]))
            elif b["type"] == "text":
                have.append(("text", b["text"]))
            elif b["type"] == "tool_use":
                if not b["id"].startswith("toolu_"):
                    return f"tool_use id {b['id']!r}"
                pieces.append("".join(b["_json"]))
                have.append(("tool_use", (b["name"], _decode(pieces[-1]) if pieces[-1] else {})))
            else:
                return f"unexpected block {b['type']}"
        if have != want:
            return first_difference(want, have)
        if pieces != [j for _, j, _ in want_calls]:
            return first_difference([j for _, j, _ in want_calls], pieces, "input_json_delta")
        if len({b["id"] for b in blocks if b["type"] == "tool_use"}) != len(pieces):
            return "tool_use ids not unique"
        stop = "tool_use" if want_calls else "end_turn"
        if got.stop_reason != stop:
            return f"stop_reason {got.stop_reason} != {stop}"
        if not got.usage or got.usage.get("output_tokens") != job.tokens:
            return f"usage {got.usage} (backend tokens {job.tokens})"
        return None
    if not got.role:
        return "no role chunk"
    content = "".join(got.content)
    if job.api == "openai_split":
        reasoning = "".join(got.reasoning)
        if reasoning != job.reasoning:
            return first_difference(job.reasoning, reasoning, "reasoning")
        if "".join(got.details) != job.reasoning:
            return "reasoning_details differ from reasoning_content"
        want_content = job.content
    else:
        if got.reasoning:
            return "reasoning_content in passthrough mode"
        want_content = (
            f"<think>\n{job.reasoning}\n</think>\n\n{job.content}" if job.reasoning else job.content
        )
    if content != want_content:
        return first_difference(want_content, content, "content")
    calls = [got.calls[i] for i in sorted(got.calls)]
    if sorted(got.calls) != list(range(len(calls))):
        return f"tool call indexes {sorted(got.calls)}"
    have_calls = [(c["name"], "".join(c["args"])) for c in calls]
    if have_calls != [(n, j) for n, j, _ in want_calls]:
        return first_difference([(n, j) for n, j, _ in want_calls], have_calls, "tool calls")
    ids = [c["id"] for c in calls]
    if len(set(ids)) != len(ids) or not all(i and i.startswith("call_") for i in ids):
        return f"tool call ids {ids}"
    finish = "tool_calls" if want_calls else "stop"
    if got.finish != finish:
        return f"finish_reason {got.finish} != {finish}"
    if job.include_usage != (got.usage is not None):
        return f"usage chunk {'missing' if job.include_usage else 'unasked'}"
    if got.usage is not None and got.usage.get("completion_tokens") != job.tokens:
        return f"usage {got.usage} (backend tokens {job.tokens})"
    return None


def first_difference(want: Any, have: Any, what: str = "blocks") -> str:
    if isinstance(want, str) and isinstance(have, str):
        at = next((i for i, (a, b) in enumerate(zip(want, have, strict=False)) if a != b), None)
        at = min(len(want), len(have)) if at is None else at
        return (
            f"{what} differs at {at} (lengths {len(want)}/{len(have)}): "
            f"want {want[max(0, at - 20) : at + 30]!r} got {have[max(0, at - 20) : at + 30]!r}"
        )
    return f"{what} differ: want {str(want)[:200]} got {str(have)[:200]}"


@dataclass
class Stats:
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    by_kind: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    chars: int = 0
    ttft: list[float] = field(default_factory=list)
    gap_hist: list[int] = field(default_factory=lambda: [0] * N_BINS)
    rates: list[float] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    started: int = 0
    in_flight: int = 0
    first_start: float = 0.0
    last_end: float = 0.0
    # seq -> (wall time sent, wall time of the first content), to split TTFT at the sim
    timeline: dict[str, tuple[float, float]] = field(default_factory=dict)

    def fail(self, kind: str, job: Job, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.examples) < 10:
            self.examples.append(
                {
                    "kind": kind,
                    "api": job.api,
                    "reply": job.kind,
                    "detail": detail[:2000],
                    "raw": job.raw[:4000],
                }
            )


async def run_stream(http: aiohttp.ClientSession, url: str, job: Job, stats: Stats) -> None:
    got = Assembled()
    anth = job.api == "anthropic"
    t0 = time.perf_counter()
    wall0 = time.time()
    first = last = None
    tail = b""
    stats.in_flight += 1
    try:
        async with http.post(
            url + job.path, data=job.body, headers={"content-type": "application/json"}
        ) as resp:
            if resp.status != 200:
                text = (await resp.read())[:500].decode(errors="replace")
                stats.fail(f"http {resp.status}", job, text)
                return
            async for data in resp.content.iter_any():
                now = time.perf_counter()
                parts = (tail + data).split(b"\n\n")
                tail = parts.pop()
                carried = False
                for part in parts:
                    if anth:
                        if part.startswith(b"event: "):
                            name, _, rest = part.partition(b"\n")
                            carried |= got.anthropic(name[7:].decode(), rest[6:])
                    elif part.startswith(b"data: "):
                        carried |= got.openai(part[6:])
                if carried:
                    if first is None:
                        first = now
                    else:
                        stats.gap_hist[bin_of(now - last)] += 1  # type: ignore[operator]
                    last = now
    except (aiohttp.ClientError, TimeoutError) as exc:
        stats.fail(f"exception {type(exc).__name__}", job, repr(exc))
        return
    except (AssertionError, KeyError, TypeError, ValueError, msgspec.DecodeError) as exc:
        stats.fail("malformed stream", job, repr(exc))
        return
    finally:
        stats.in_flight -= 1
    end = time.perf_counter()
    problem = check(job, got)
    if problem is not None:
        stats.fail("mismatch" if "error event" not in problem else "error event", job, problem)
        return
    stats.ok += 1
    stats.by_kind[f"{job.api}/{job.kind}"] += 1
    stats.tokens += job.tokens
    stats.chars += len(job.raw)
    stats.durations.append(end - t0)
    if first is not None:
        stats.ttft.append(first - t0)
        stats.timeline[job.seq] = (wall0, wall0 + first - t0)
        if last is not None and last > first and job.tokens > 20:
            stats.rates.append(job.tokens / (last - t0))
    stats.last_end = time.time()


async def worker_main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    stats = Stats()
    deadline = time.monotonic() + args.duration
    stats.first_start = time.time()
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=120)
    seq = 0

    async def slot(n: int) -> None:
        nonlocal seq
        await asyncio.sleep(args.ramp * n / args.streams)
        while True:
            seq += 1
            # Nothing that cannot finish by the deadline at the nominal rate starts.
            job = make_job(rng, f"w{args.seed}-{seq}", (deadline - time.monotonic()) * args.rate)
            if job is None:
                return
            stats.started += 1
            await run_stream(http, args.url, job, stats)

    async def report() -> None:
        t0 = time.monotonic()
        while True:
            await asyncio.sleep(args.progress)
            print(
                f"[worker {args.seed}] {time.monotonic() - t0:5.0f}s ok {stats.ok} errors "
                f"{sum(stats.errors.values())} in flight {stats.in_flight}",
                file=sys.stderr,
                flush=True,
            )

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        reporter = asyncio.create_task(report())
        await asyncio.gather(*(slot(i) for i in range(args.streams)))
        reporter.cancel()
    out = {
        "ok": stats.ok,
        "errors": dict(stats.errors),
        "examples": stats.examples,
        "by_kind": dict(stats.by_kind),
        "tokens": stats.tokens,
        "chars": stats.chars,
        "ttft": stats.ttft,
        "gap_hist": stats.gap_hist,
        "rates": stats.rates,
        "durations": stats.durations,
        "started": stats.started,
        "first_start": stats.first_start,
        "cpu": time.process_time(),
        "timeline": stats.timeline,
        "last_end": stats.last_end,
    }
    Path(args.out).write_text(json.dumps(out))


# ---------------------------------------------------------------------------- orchestration


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=log.parent,
            )

    def cpu(self) -> float:
        """On-CPU seconds of all the process's threads."""
        total = 0
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                with contextlib.suppress(OSError):
                    total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


async def wait_ready(url: str, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.proc.poll() is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with s.get(url + "/health") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not start:\n{proc.log.read_text()[-2000:]}")


_SEQ = re.compile(r"\((w\d+-\d+)\) SIM_SCRIPT:")


async def sim_log_check(sim_url: str, timeline: dict[str, list[float]]) -> dict[str, Any]:
    """The sim's own account of its last requests: every stream sent whole and completed.

    With the clients' timeline it also splits the time to first token of those streams into
    client -> proxy -> sim (the request path) and sim -> proxy -> client (the rest).
    """
    async with aiohttp.ClientSession() as s, s.get(sim_url + "/_sim/requests") as r:
        records = await r.json()
    chats = [x for x in records if x["path"] == "/v1/chat/completions"]
    outcomes = Counter(x["outcome"] for x in chats)
    short = sum(1 for x in chats if x["sent_chars"] != len(x["raw"]))
    to_sim: list[float] = []
    from_sim: list[float] = []
    for x in chats:
        m = _SEQ.search(x["body"]["messages"][-1]["content"])
        if m and m[1] in timeline:
            sent, first = timeline[m[1]]
            to_sim.append(x["received_at"] - sent)
            from_sim.append(first - x["received_at"])
    return {
        "records": len(chats),
        "outcomes": dict(outcomes),
        "short": short,
        "to_sim_p50": pct(to_sim, 50),
        "to_sim_p99": pct(to_sim, 99),
        "from_sim_p50": pct(from_sim, 50),
        "from_sim_p99": pct(from_sim, 99),
    }


async def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    if args.wait_quiet:
        await common.wait_quiet(args.wait_quiet)
    procs: list[Proc] = []
    samples: list[tuple[float, float, float, float]] = []  # (t, proxy RSS MiB, proxy cpu, sim cpu)
    with tempfile.TemporaryDirectory(prefix="bench_soak_") as tmp:
        work = Path(tmp)
        try:
            sim_port, proxy_port = common.free_port(), common.free_port()
            sim = Proc(
                "sim",
                [
                    PYTHON,
                    "-m",
                    "proxy",
                    "sim",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(sim_port),
                    "--tokens-per-second",
                    str(args.rate),
                    "--log-limit",
                    str(args.log_limit),
                ],
                {"PYTHONPATH": str(ROOT)},
                work / "sim.log",
            )
            procs.append(sim)
            sim_url = f"http://127.0.0.1:{sim_port}"
            await wait_ready(sim_url, sim)
            env = {
                "PYTHONPATH": str(ROOT),
                "TABBY_URL": sim_url,
                "HOST": "127.0.0.1",
                "PORT": str(proxy_port),
                "LOG_LEVEL": "warning",
            }
            proxy = Proc("proxy", [PYTHON, "-m", "proxy"], env, work / "proxy.log")
            procs.append(proxy)
            proxy_url = f"http://127.0.0.1:{proxy_port}"
            await wait_ready(proxy_url, proxy)
            rss_start = proxy.rss_mib()
            per = [
                args.streams // args.workers + (i < args.streams % args.workers)
                for i in range(args.workers)
            ]
            workers = []
            for i, n in enumerate(per):
                argv = [
                    PYTHON,
                    str(Path(__file__).resolve()),
                    "--worker",
                    "--url",
                    proxy_url,
                    "--streams",
                    str(n),
                    "--duration",
                    str(args.duration),
                    "--rate",
                    str(args.rate),
                    "--seed",
                    str(i),
                    "--ramp",
                    str(args.ramp),
                    "--progress",
                    str(args.progress),
                    "--out",
                    str(work / f"w{i}.json"),
                ]
                w = Proc(f"worker{i}", argv, {"PYTHONPATH": str(ROOT)}, work / f"w{i}.log")
                workers.append(w)
                procs.append(w)
            t0 = time.monotonic()
            wall0 = time.time()
            cpu0 = {p.name: p.cpu() for p in procs}
            busy0 = common.machine_busy()
            printed = 0.0
            while any(w.proc.poll() is None for w in workers):
                await asyncio.sleep(args.sample)
                t = time.monotonic() - t0
                samples.append((t, proxy.rss_mib(), proxy.cpu(), sim.cpu()))
                if t - printed >= args.progress:
                    printed = t
                    lines = [
                        w.log.read_text(errors="replace").strip().splitlines()[-1:] for w in workers
                    ]
                    print(
                        f"{t:6.0f}s proxy RSS {samples[-1][1]:6.1f} MiB | "
                        + " | ".join(x[0].split("] ", 1)[-1] for x in lines if x),
                        flush=True,
                    )
                if proxy.proc.poll() is not None or sim.proc.poll() is not None:
                    raise RuntimeError(
                        "the proxy or the sim died:\n" + proxy.log.read_text()[-3000:]
                    )
            wall = time.monotonic() - t0
            cpu = {p.name: p.cpu() - cpu0[p.name] for p in procs}
            busy = common.machine_busy() - busy0
            for w in workers:
                if w.proc.returncode != 0:
                    raise RuntimeError(f"{w.name} failed:\n{w.log.read_text()[-3000:]}")
            results = [json.loads((work / f"w{i}.json").read_text()) for i in range(len(workers))]
            for i, r in enumerate(results):  # exited: their own account of their CPU time
                cpu[f"worker{i}"] = r["cpu"]
            timeline = {k: v for r in results for k, v in r.pop("timeline").items()}
            sim_log = await sim_log_check(sim_url, timeline)
            await asyncio.sleep(2.0)
            rss_idle = proxy.rss_mib()
            proxy_log = proxy.log.read_text(errors="replace")
        finally:
            for p in reversed(procs):
                p.stop()
    return {
        "results": results,
        "samples": samples,
        "wall": wall,
        "wall0": wall0,
        "cpu": cpu,
        "busy": busy,
        "rss_start": rss_start,
        "rss_idle": rss_idle,
        "sim_log": sim_log,
        "proxy_log_lines": [x for x in proxy_log.splitlines() if x.strip()][-20:],
    }


# ---------------------------------------------------------------------------- report


def fit_slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB per minute."""
    if len(points) < 3:
        return 0.0
    mt = statistics.fmean(t for t, _ in points)
    mm = statistics.fmean(m for _, m in points)
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (m - mm) for t, m in points) / den * 60 if den else 0.0


def summarise(run: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rs = run["results"]
    ok = sum(r["ok"] for r in rs)
    errors: Counter[str] = Counter()
    for r in rs:
        errors.update(r["errors"])
    by_kind: Counter[str] = Counter()
    for r in rs:
        by_kind.update(r["by_kind"])
    ttft = [x for r in rs for x in r["ttft"]]
    rates = [x for r in rs for x in r["rates"]]
    durations = [x for r in rs for x in r["durations"]]
    hist = [sum(col) for col in zip(*(r["gap_hist"] for r in rs), strict=True)]
    wall = run["wall"]
    samples = run["samples"]
    warm = args.warmup
    after = [(t, m) for t, m, *_ in samples if t >= warm]
    slope = fit_slope(after)
    late = fit_slope(after[len(after) // 2 :])  # the second half of the measured window
    rss_warm = after[0][1] if after else float("nan")
    rss_end = after[-1][1] if after else float("nan")
    rss_max = max((m for _, m in after), default=float("nan"))
    rss_min = min((m for _, m in after), default=float("nan"))
    return {
        "ok": ok,
        "errors": dict(errors),
        "n_errors": sum(errors.values()),
        "examples": [e for r in rs for e in r["examples"]][:5],
        "by_kind": dict(sorted(by_kind.items())),
        "started": sum(r["started"] for r in rs),
        "streams_per_s": ok / wall,
        "tokens_per_s": sum(r["tokens"] for r in rs) / wall,
        "chars_per_s": sum(r["chars"] for r in rs) / wall,
        "tokens": sum(r["tokens"] for r in rs),
        "ttft_p50": pct(ttft, 50),
        "ttft_p99": pct(ttft, 99),
        "ttft_max": max(ttft, default=0),
        "gap_p50": hist_pct(hist, 50),
        "gap_p99": hist_pct(hist, 99),
        "gaps": sum(hist),
        "rate_p50": pct(rates, 50),
        "rate_p1": pct(rates, 1),
        "dur_p50": pct(durations, 50),
        "dur_p99": pct(durations, 99),
        "wall": wall,
        "rss_start": run["rss_start"],
        "rss_warm": rss_warm,
        "rss_end": rss_end,
        "rss_max": rss_max,
        "rss_min": rss_min,
        "rss_idle": run["rss_idle"],
        "rss_slope": slope,
        "rss_slope_late": late,
        "cpu": {k: v / wall for k, v in run["cpu"].items()},
        "busy": run["busy"] / wall,
        "sim_log": run["sim_log"],
    }


def print_summary(s: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(f"streams: {s['ok']:,} checked ok, {s['n_errors']} errors {s['errors'] or ''}")
    print(f"  by api/reply kind: {s['by_kind']}")
    print(
        f"throughput: {s['streams_per_s']:.1f} streams/s, {s['tokens_per_s']:,.0f} backend "
        f"tokens/s, {s['chars_per_s']:,.0f} chars/s over {s['wall']:.0f} s"
    )
    print(
        f"TTFT p50 {s['ttft_p50'] * 1e3:.1f} ms, p99 {s['ttft_p99'] * 1e3:.1f} ms, max "
        f"{s['ttft_max'] * 1e3:.0f} ms; inter-chunk p50 {s['gap_p50'] * 1e3:.1f} ms, p99 "
        f"{s['gap_p99'] * 1e3:.1f} ms; per-stream rate p50 {s['rate_p50']:.1f} tok/s "
        f"(p1 {s['rate_p1']:.1f}; nominal {args.rate:g})"
    )
    print(
        f"proxy RSS: start {s['rss_start']:.1f}, after warm-up {s['rss_warm']:.1f}, end "
        f"{s['rss_end']:.1f}, range {s['rss_min']:.1f}-{s['rss_max']:.1f}, idle after "
        f"{s['rss_idle']:.1f} MiB; slope after warm-up {s['rss_slope']:+.2f} MiB/min, over its "
        f"second half {s['rss_slope_late']:+.2f} MiB/min"
    )
    print(
        "CPU (cores): "
        + ", ".join(f"{k} {v:.2f}" for k, v in s["cpu"].items())
        + f"; whole machine {s['busy']:.2f}"
    )
    sl = s["sim_log"]
    print(
        f"sim log: {sl['records']} records, outcomes {sl['outcomes']}, {sl['short']} short; "
        f"TTFT split: request to the sim p50 {sl['to_sim_p50'] * 1e3:.1f} ms p99 "
        f"{sl['to_sim_p99'] * 1e3:.1f} ms, first content back p50 {sl['from_sim_p50'] * 1e3:.1f}"
        f" ms p99 {sl['from_sim_p99'] * 1e3:.1f} ms"
    )
    for e in s["examples"]:
        print(f"  example error: {e['kind']} {e['api']}/{e['reply']}: {e['detail'][:300]}")


def plot(run: dict[str, Any], s: dict[str, Any], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [x[0] for x in run["samples"]]
    rss = [x[1] for x in run["samples"]]
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    ax.plot(t, rss, lw=1.4, color="#1f77b4", label="proxy RSS")
    ax.axvline(
        args.warmup, color="grey", ls="--", lw=1, label=f"end of warm-up ({args.warmup:g} s)"
    )
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax.set_ylim(0, max(rss) * 1.15)
    ax.set_title(
        f"Proxy memory, {args.streams} concurrent streams at {args.rate:g} tok/s "
        f"({s['ok']:,} streams, {s['n_errors']} errors)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(PLOT_PATH)
    plt.close(fig)


def write_results(s: dict[str, Any], args: argparse.Namespace, command: str) -> None:
    m = common.machine()
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    growth = s["rss_end"] - s["rss_warm"]
    flat = abs(s["rss_slope_late"]) <= 1.0
    kinds = ", ".join(f"{k} {v:,}" for k, v in s["by_kind"].items())
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in s["cpu"].items())
    sim = s["sim_log"]
    lines = [
        "## Load and soak",
        "",
        f"Measured {when} with `{command}` ({args.duration / 60:g} min, proxy and sim from "
        f"{common.source_note()}).",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']} |",
        f"| Cores | {m['cores']} logical, shared by the proxy, the sim and the load generators |",
        f"| Python | {m['python']} |",
        f"| OS | {m['os']} |",
        "",
        f"{args.streams} concurrent streams over loopback (kept open all the time, ramped up over "
        f"{args.ramp:g} s), {args.workers} load-generator processes, the sim pacing each stream "
        f"at {args.rate:g} backend tokens/s (tokens of 1-7 characters), one proxy process "
        "(one hypercorn worker).",
        "",
        "### Targets (issue 6)",
        "",
        "| target | measured | required | met |",
        "|---|---:|---|---|",
        f"| Concurrent streams | {args.streams} | >= 500 | {yes(args.streams >= 500)} |",
        f"| Streams checked end to end | {s['ok']:,} | all | {yes(s['n_errors'] == 0)} |",
        f"| Errors (lost, duplicated or wrong characters, error events, HTTP errors) | "
        f"{s['n_errors']} | 0 | {yes(s['n_errors'] == 0)} |",
        f"| Proxy RSS after warm-up ({args.warmup:g} s) -> end | {s['rss_warm']:.1f} -> "
        f"{s['rss_end']:.1f} MiB ({growth:+.1f}); slope {s['rss_slope']:+.2f} MiB/min, over "
        f"the second half {s['rss_slope_late']:+.2f} MiB/min | flat (here: second-half slope "
        f"within ±1 MiB/min) | {yes(flat)} |",
        "",
        "### Figures",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| Streams completed | {s['ok']:,} in {s['wall']:.0f} s = {s['streams_per_s']:.1f} "
        "streams/s |",
        f"| Backend tokens through the proxy | {s['tokens']:,} = {s['tokens_per_s']:,.0f} tokens/s "
        f"({s['chars_per_s']:,.0f} characters/s) |",
        f"| Time to first token p50 / p99 / max | {s['ttft_p50'] * 1e3:.1f} / "
        f"{s['ttft_p99'] * 1e3:.1f} / {s['ttft_max'] * 1e3:.0f} ms |",
        f"| Inter-chunk gap p50 / p99 ({s['gaps']:,} gaps) | {s['gap_p50'] * 1e3:.1f} / "
        f"{s['gap_p99'] * 1e3:.1f} ms |",
        f"| Per-stream rate p50 / p1 (nominal {args.rate:g}) | {s['rate_p50']:.1f} / "
        f"{s['rate_p1']:.1f} tokens/s |",
        f"| Stream duration p50 / p99 | {s['dur_p50']:.2f} / {s['dur_p99']:.2f} s |",
        f"| Proxy RSS: start / min / max / idle after the run | {s['rss_start']:.1f} / "
        f"{s['rss_min']:.1f} / {s['rss_max']:.1f} / {s['rss_idle']:.1f} MiB |",
        f"| CPU, cores (average over the run) | {cpu}; machine {s['busy']:.2f} of {m['cores']} |",
        f"| Sim log (last {sim['records']} backend streams) | outcomes {sim['outcomes']}, "
        f"{sim['short']} sent short |",
        "",
        f"Streams by API and reply kind: {kinds}.",
        "",
        "![proxy RSS over time](soak_memory.png)",
        "",
        "### Method",
        "",
        "- Each stream's reply is planned with the sim's own planner (`proxy.sim.plan_reply`: "
        "reasoning then a plain answer, a long answer with code, one tool call, three parallel "
        "calls, ~8,000-character code arguments, parallel long calls), cut into random 1-7 "
        "character backend tokens and sent as `SIM_SCRIPT`, so the sim streams exactly that. "
        "APIs: OpenAI with `reasoning_split`, OpenAI with thinking passed through in the "
        "content, Anthropic Messages with thinking blocks; half the OpenAI streams ask for "
        "usage.",
        "- Every stream is compared with `parser.parse(raw, tools)` shaped as the proxy "
        "documents: reasoning and content stripped (passthrough: "
        "`<think>\\n{reasoning}\\n</think>\\n\\n{content}`), tool names and order, each call's "
        "streamed argument pieces joined equal to `arguments_json` (Anthropic: `input` and the "
        "`input_json_delta` pieces), unique ids, finish/stop reason, usage equal to the backend "
        "tokens, the terminator last. The parsed calls are also compared with the calls the "
        "planner meant. Any difference, error event, HTTP error or exception counts as an error.",
        "- TTFT: from sending the request to the first network read carrying reasoning, text or "
        "a tool call. Inter-chunk gap: between consecutive such reads of a stream (a log "
        "histogram, 50 bins per decade). Per-stream rate: backend tokens over the stream's "
        "time to its last content. A stream starts only if it can finish before the end at "
        "the nominal rate, so the load is steady until the last seconds.",
        f"- Proxy RSS (`VmRSS`) is sampled every {args.sample:g} s; the slope is a least-squares "
        f"fit over the samples after the warm-up. CPU: on-CPU time from `schedstat`.",
    ]
    common.write_section(RESULTS_PATH, "soak", "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="~20 s smoke run; writes nothing")
    ap.add_argument("--minutes", type=float, help="soak length (default 4)")
    ap.add_argument("--streams", type=int, default=500, help="concurrent streams (default 500)")
    ap.add_argument("--rate", type=float, default=50.0, help="backend tokens/s per stream")
    ap.add_argument("--workers", type=int, default=2, help="load-generator processes")
    ap.add_argument("--sample", type=float, default=2.0, help="RSS sampling interval, s")
    ap.add_argument("--warmup", type=float, help="seconds before memory must be flat")
    ap.add_argument("--log-limit", type=int, default=2000, help="sim request records kept")
    ap.add_argument("--wait-quiet", type=float, default=0, help="wait up to N s for idle CPU")
    ap.add_argument("--write", action="store_true", help="write RESULTS.md/PNG even with --quick")
    ap.add_argument("--no-write", action="store_true", help="write nothing")
    # worker mode (internal)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--ramp", type=float, default=5.0, help=argparse.SUPPRESS)
    ap.add_argument("--progress", type=float, default=15.0, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        asyncio.run(worker_main(args))
        return
    minutes = args.minutes if args.minutes is not None else (20 / 60 if args.quick else 4.0)
    args.duration = minutes * 60
    if args.warmup is None:
        args.warmup = min(60.0, args.duration / 4)
    if args.quick:
        args.progress = 5.0
        args.ramp = 2.0
    print(
        f"soak: {args.streams} streams at {args.rate:g} tok/s for {args.duration:.0f} s, "
        f"{args.workers} load generators",
        flush=True,
    )
    run = asyncio.run(orchestrate(args))
    s = summarise(run, args)
    print_summary(s, args)
    write = (args.write or not args.quick) and not args.no_write
    if write:
        plot(run, s, args)
        command = ".venv/bin/python benchmarks/bench_soak.py " + " ".join(sys.argv[1:])
        write_results(s, args, command.strip())
        print(f"wrote {RESULTS_PATH} (soak section) and {PLOT_PATH}")
    sys.exit(0 if s["n_errors"] == 0 else 1)


if __name__ == "__main__":
    main()
