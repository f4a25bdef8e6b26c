"""Session-repair benchmark: the cost of repair per request with each store, and Redis-store
throughput with several proxy processes.

Run from the repository root (Redis must answer at ``--redis-url``)::

    .venv/bin/python benchmarks/bench_sessions.py           # full run (~2.5 min): RESULTS.md
    .venv/bin/python benchmarks/bench_sessions.py --quick   # smoke run (~12 s), writes nothing

The full run first waits (``--wait-quiet``, at most 300 s) until no other process keeps the
machine busy, and measures a chunk again (at most 3 times) when other processes used more than
a quarter of a core meanwhile; the report says how often that happened.

Every server is a separate process on a free loopback port, stopped at the end however the run
ends: the simulated MiniMax-M2 backend (``python -m proxy sim``, full speed) and proxies
(``python -m proxy``, one hypercorn worker each, ``REQUIRE_SESSION_FOR_REPAIR=false``, so turns
are found by the tool-call ids the proxy generated, with no session id). The load generator runs
in this process (aiohttp client, non-streamed OpenAI requests).

One conversation is two requests, with ``tools``:
  turn 1: ``[user]``                          -> reasoning + one tool call (the proxy stores it)
  turn 2: the tool result, sent as one of
    complete  ``[user, assistant, tool]``      the history is whole: nothing to repair
    dropped   ``[user, tool]``                 the client dropped the assistant turn: the proxy
                                               finds it by the tool's call id and puts it back
    stripped  ``[user, assistant w/o <think>, tool]``  the proxy restores the thinking
                                            -> a text answer (not stored: no tool calls).

Part 1 (cost per request): four proxies, sessions off / memory / sqlite / redis, the same
conversations at a fixed concurrency. Cases are run in rounds, interleaved, so drift and noise
from the rest of the machine fall on every case alike. Per case: latency of each turn as the
client sees it (p50/p99), requests/s, and on-CPU time per request of the proxy process (utime +
stime of ``/proc/<pid>/stat``, all its threads) and of the Redis server.

Part 2 (several processes, one store): 1, 2 and 4 proxy processes on separate ports sharing one
Redis; conversation j sends turn 1 to process j mod N and turn 2 (dropped assistant turn) to
process (j+1) mod N, so every repair reads a turn another process stored (for N >= 2). The same
with SQLite (one file shared by the processes) for comparison.

Verification, every case:
- every turn-2 response: the sim's ``usage.prompt_tokens`` counts the prompt the backend received;
  it must equal the count of the complete ``[user, assistant+thinking, tool]`` prompt, calibrated
  first through the sessions-off proxy (an unrepaired prompt counts fewer tokens; checked too);
- the proxies' logs: one ``session repair`` line per repaired request;
- a sample: the sim's request log (``GET /_sim/requests``, the last 1,000 requests of each chunk)
  must show every turn-2 request arriving as ``[user, assistant (thinking + the call), tool]``.

Redis keys are scoped by a per-run API key (so a run never touches other keys) and deleted at the
end; they also expire (``SESSION_TTL_SECONDS=900``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import hashlib
import itertools
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import msgspec  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_PATH = BENCH_DIR / "RESULTS.md"

_enc = msgspec.json.Encoder().encode
_dec = msgspec.json.decode
CLK_TCK = os.sysconf("SC_CLK_TCK")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"],
            },
        },
    }
]
N_TEXTS = 32  # distinct user messages; the sim's reply (and prompt size) depends on the text
REPAIR_LINE = b"session repair: put back a missing assistant turn"
RESTORE_LINE = b"session repair: restored the thinking"
STORE_FAIL_LINE = b"session store failed"


def user_text(k: int) -> str:
    return f"What is the weather in city number {k % N_TEXTS} today?"


def tool_text(k: int) -> str:
    return f"sunny, {10 + k % N_TEXTS} degrees, light wind"


def scope_of(api_key: str) -> str:
    """The store scope of an API key (as ``proxy.sessions.scope_for``), to clean up Redis."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:32]


# ----------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads, live and exited), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    _log_offset: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def new_log(self) -> bytes:
        """What the process logged since the last call."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            data = f.read()
        cut = data.rfind(b"\n") + 1  # whole lines only
        self._log_offset += cut
        return data[:cut]


class Cluster:
    """Starts servers and always stops them (``with Cluster() as c``)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[Server] = []

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for s in self.servers:
            if s.proc.poll() is None:
                s.proc.terminate()
        deadline = time.monotonic() + 5
        for s in self.servers:
            try:
                s.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                s.proc.kill()
                s.proc.wait(timeout=5)
        self.servers.clear()

    def start(self, name: str, args: list[str], env: dict[str, str], port: int) -> Server:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=self.workdir,  # no stray .env, and a default SQLite path inside the temp dir
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Server(name, proc, port, log_path)
        self.servers.append(server)
        return server

    def wait_ready(self, server: Server, path: str = "/health", timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                tail = server.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{server.name} exited ({server.proc.returncode}):\n{tail}")
            try:
                with urllib.request.urlopen(server.url + path, timeout=1) as r:
                    if r.status == 200:
                        server.new_log()  # skip the startup lines
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{server.name} not ready after {timeout}s")

    def sim(self) -> Server:
        port = common.free_port()
        args = ["-m", "proxy", "sim", "--host", "127.0.0.1", "--port", str(port)]
        server = self.start("sim", [*args, "--log-limit", "1000"], base_env(), port)
        self.wait_ready(server)
        return server

    def proxy(
        self, name: str, sim: Server, store: str | None, sqlite_path: Path, redis_url: str
    ) -> Server:
        port = common.free_port()
        env = base_env()
        env.update(
            HOST="127.0.0.1",
            PORT=str(port),
            TABBY_URL=sim.url,
            SESSION_STORE_ENABLED="true" if store else "false",
            SESSION_STORE_BACKEND=store or "sqlite",
            SESSION_STORE_PATH=str(sqlite_path),
            REDIS_URL=redis_url,
            REQUIRE_SESSION_FOR_REPAIR="false",
            REQUIRE_TOOL_LINK_VALIDATION="true",
            SESSION_TTL_SECONDS="900",
            LOG_LEVEL="info",
            LOG_FORMAT="text",
        )
        return self.start(name, ["-m", "proxy"], env, port)


def base_env() -> dict[str, str]:
    """This environment without anything that configures the proxy."""
    prefixes = (
        "SESSION_",
        "REDIS_",
        "TABBY_",
        "BACKEND_",
        "AUTH_",
        "REQUIRE_",
        "ENABLE_",
        "LOG_",
        "MAX_",
        "HOST",
        "PORT",
        "STARTS_IN_THINK",
        "MODEL_ALIASES",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PYTHONPATH"] = str(ROOT)
    return env


# ----------------------------------------------------------------------------- the load


@dataclass
class Sample:
    lat1: list[float] = field(default_factory=list)  # seconds
    lat2: list[float] = field(default_factory=list)
    wall: float = 0.0
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    verified: int = 0  # turn-2 responses whose prompt size proves the backend saw the full turn
    proxy_cpu: float = 0.0
    redis_cpu: float = 0.0
    sim_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_cpu: float = 0.0  # every process on the machine, ours included
    repair_lines: list[int] = field(default_factory=list)  # per proxy process
    restore_lines: int = 0
    store_failures: int = 0
    log_checked: int = 0
    log_bad: int = 0
    chunk_cpu: list[float] = field(default_factory=list)  # proxy CPU s/request, per chunk

    def add(self, other: Sample) -> None:
        self.lat1 += other.lat1
        self.lat2 += other.lat2
        self.wall += other.wall
        self.requests += other.requests
        self.errors += other.errors
        self.verified += other.verified
        self.proxy_cpu += other.proxy_cpu
        self.redis_cpu += other.redis_cpu
        self.sim_cpu += other.sim_cpu
        self.client_cpu += other.client_cpu
        self.machine_cpu += other.machine_cpu
        if not self.repair_lines:
            self.repair_lines = [0] * len(other.repair_lines)
        self.repair_lines = [
            a + b for a, b in zip(self.repair_lines, other.repair_lines, strict=True)
        ]
        self.restore_lines += other.restore_lines
        self.store_failures += other.store_failures
        self.log_checked += other.log_checked
        self.log_bad += other.log_bad
        self.chunk_cpu.append(other.proxy_cpu / other.requests)

    def others(self) -> float:
        """CPU seconds used by processes not measured here, during this sample."""
        return self.machine_cpu - self.proxy_cpu - self.sim_cpu - self.redis_cpu - self.client_cpu


class Load:
    def __init__(self, http: aiohttp.ClientSession, api_key: str) -> None:
        self.http = http
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {api_key}"}
        self.expected: dict[int, int] = {}  # text index -> prompt tokens of the complete turn 2

    async def post(self, url: str, messages: list[dict[str, Any]]) -> tuple[int, Any]:
        body = _enc({"model": "minimax-m2", "messages": messages, "tools": TOOLS})
        async with self.http.post(
            url + "/v1/chat/completions", data=body, headers=self.headers
        ) as r:
            raw = await r.read()
            return r.status, (_dec(raw) if r.status == 200 else raw[:200])

    async def conversation(
        self, url1: str, url2: str, mode: str, k: int, out: Sample
    ) -> int | None:
        """Two turns; returns turn 2's prompt tokens (None on an error, recorded in ``out``)."""
        user = {"role": "user", "content": user_text(k)}
        t0 = time.perf_counter()
        status, data = await self.post(url1, [user])
        t1 = time.perf_counter()
        if status != 200:
            out.errors.append(f"turn 1: HTTP {status} {data!r}")
            return None
        out.lat1.append(t1 - t0)
        message = data["choices"][0]["message"]
        calls = message.get("tool_calls") or []
        if len(calls) != 1 or "</think>" not in (message.get("content") or ""):
            out.errors.append(f"turn 1: expected thinking and one tool call, got {message!r:.200}")
            return None
        tool = {"role": "tool", "tool_call_id": calls[0]["id"], "content": tool_text(k)}
        if mode == "complete":
            history = [
                user,
                {"role": "assistant", "content": message["content"], "tool_calls": calls},
                tool,
            ]
        elif mode == "stripped":
            answer = message["content"].split("</think>", 1)[1].lstrip()
            history = [user, {"role": "assistant", "content": answer, "tool_calls": calls}, tool]
        else:
            history = [user, tool]
        t2 = time.perf_counter()
        status, data = await self.post(url2, history)
        t3 = time.perf_counter()
        if status != 200:
            out.errors.append(f"turn 2: HTTP {status} {data!r}")
            return None
        out.lat2.append(t3 - t2)
        choice = data["choices"][0]
        if (
            choice["finish_reason"] != "stop"
            or tool_text(k)[:20] not in choice["message"]["content"]
        ):
            out.errors.append(f"turn 2: expected the final answer, got {choice!r:.200}")
            return None
        tokens = int(data["usage"]["prompt_tokens"])
        want = self.expected.get(k % N_TEXTS)
        if want is not None:
            if tokens == want:
                out.verified += 1
            else:
                out.errors.append(f"turn 2 ({mode}): backend prompt {tokens} tokens, want {want}")
        return tokens

    async def calibrate(self, url: str) -> tuple[int, int]:
        """Through a sessions-off proxy: the prompt size of each complete turn 2, and (to show the
        check tells them apart) the smallest gap to the unrepaired forms."""
        scratch = Sample()

        async def sizes(mode: str) -> list[int]:
            found = await asyncio.gather(
                *(self.conversation(url, url, mode, k, scratch) for k in range(N_TEXTS))
            )
            if scratch.errors or None in found:
                raise RuntimeError(f"calibration failed: {scratch.errors[:3]}")
            return [t for t in found if t is not None]

        self.expected = {}  # no check while calibrating
        complete = await sizes("complete")
        gaps = [
            c - t
            for mode in ("dropped", "stripped")
            for c, t in zip(complete, await sizes(mode), strict=True)
        ]
        self.expected = dict(enumerate(complete))
        return min(gaps), max(gaps)

    async def run(
        self, targets: Sequence[str], mode: str, n_conv: int, concurrency: int, k0: int, cross: bool
    ) -> Sample:
        """``n_conv`` conversations by ``concurrency`` workers; conversation j goes to target
        j mod N, and its turn 2 to the next target when ``cross``."""
        out = Sample()
        counter = itertools.count()
        n = len(targets)

        async def worker() -> None:
            while (j := next(counter)) < n_conv:
                p = j % n
                url2 = targets[(p + 1) % n] if cross else targets[p]
                await self.conversation(targets[p], url2, mode, k0 + j, out)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        out.wall = time.perf_counter() - t0
        out.requests = 2 * n_conv
        return out


def check_sim_log(sim: Server) -> tuple[int, int]:
    """(turn-2 requests checked, of which malformed) in the sim's request log."""
    with urllib.request.urlopen(sim.url + "/_sim/requests", timeout=30) as r:
        records = _dec(r.read())
    checked = bad = 0
    for rec in records:
        body = rec.get("body")
        if rec.get("path") != "/v1/chat/completions" or not isinstance(body, dict):
            continue
        msgs = body.get("messages") or []
        if not msgs or msgs[-1].get("role") != "tool":
            continue
        checked += 1
        roles = [m.get("role") for m in msgs]
        ok = roles == ["user", "assistant", "tool"]
        if ok:
            a, t = msgs[1], msgs[2]
            content = a.get("content") or ""
            calls = a.get("tool_calls") or []
            ok = (
                content.startswith("<think>\n")
                and "</think>" in content
                and len(calls) == 1
                and calls[0].get("id") == t.get("tool_call_id")
            )
        bad += not ok
    return checked, bad


def reset_sim_log(sim: Server) -> None:
    req = urllib.request.Request(sim.url + "/_sim/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass


async def measured(
    load: Load,
    sim: Server,
    proxies: Sequence[Server],
    redis_pid: int | None,
    mode: str,
    n_conv: int,
    concurrency: int,
    k0: int,
    cross: bool,
) -> Sample:
    """One chunk of load with CPU, log and sim-log accounting."""
    reset_sim_log(sim)
    for p in proxies:
        p.new_log()
    before = [p.cpu() for p in proxies]
    redis0 = cpu_seconds(redis_pid) if redis_pid else 0.0
    sim0, client0, machine0 = sim.cpu(), time.process_time(), common.machine_busy()
    out = await load.run([p.url for p in proxies], mode, n_conv, concurrency, k0, cross)
    out.machine_cpu = common.machine_busy() - machine0
    out.client_cpu = time.process_time() - client0
    out.sim_cpu = sim.cpu() - sim0
    out.redis_cpu = (cpu_seconds(redis_pid) - redis0) if redis_pid else 0.0
    out.proxy_cpu = sum(p.cpu() - b for p, b in zip(proxies, before, strict=True))
    logs = [p.new_log() for p in proxies]
    out.repair_lines = [log.count(REPAIR_LINE) for log in logs]
    out.restore_lines = sum(log.count(RESTORE_LINE) for log in logs)
    out.store_failures = sum(log.count(STORE_FAIL_LINE) for log in logs)
    out.log_checked, out.log_bad = check_sim_log(sim)
    return out


QUIET_CORES = 0.25  # a chunk during which other processes used more is measured again
MAX_RETRIES = 3


class Guard:
    """Measures a chunk again when other processes disturbed it (bounded)."""

    def __init__(self, wait: float, retries: int) -> None:
        self.wait, self.retries = wait, retries
        self.waited = 0.0  # seconds spent waiting for a quiet machine
        self.retried = 0
        self.disturbed = 0  # chunks kept although disturbed (retries exhausted)

    async def measure(self, *args: Any, **kwargs: Any) -> Sample:
        for attempt in range(self.retries + 1):
            chunk = await measured(*args, **kwargs)
            other = chunk.others() / chunk.wall
            if other <= QUIET_CORES:
                return chunk
            if attempt == self.retries:
                self.disturbed += 1
                return chunk
            self.retried += 1
            print(f"  other processes used {other:.2f} cores: measuring again", flush=True)
            if self.wait:
                t0 = time.monotonic()
                await common.wait_quiet(self.wait, 3.0, indent="  ", give_up="going on")
                self.waited += time.monotonic() - t0
        raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- reporting


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def ms(x: float) -> str:
    return f"{x * 1000:.2f}"


def us_per(x: float, n: int) -> float:
    return x / n * 1e6 if n else float("nan")


def machine() -> dict[str, str]:
    """The machine (:func:`common.machine`), the commit of ``proxy/`` and the load average."""
    try:
        head, dirty = common.git_head(("proxy",), short="--short")
        commit = head + (" (proxy/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {
        **common.machine(platform.processor() or "?", implementation=False),
        "commit": commit,
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


async def redis_info(url: str) -> tuple[int | None, str]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        info = await client.info("server")
        return int(info["process_id"]), str(info["redis_version"])
    finally:
        await client.aclose()


async def redis_cleanup(url: str, scope: str) -> int:
    import redis.asyncio as redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=f"mm2p:*:{scope}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await client.delete(*batch)
                batch.clear()
        if batch:
            deleted += await client.delete(*batch)
    finally:
        await client.aclose()
    return deleted


# ----------------------------------------------------------------------------- the run


@dataclass
class Config:
    conversations: int  # per case (part 1)
    rounds: int
    concurrency: int
    scale_conversations: int  # per process count (part 2)
    scale_concurrency: int
    scale_rounds: int
    serial_conversations: int  # per case, one at a time (part 1)
    warmup: int  # conversations per case before measuring


FULL = Config(
    conversations=2400,
    rounds=6,
    concurrency=16,
    scale_conversations=1800,
    scale_concurrency=32,
    scale_rounds=3,
    serial_conversations=600,
    warmup=64,
)
QUICK = Config(
    conversations=64,
    rounds=1,
    concurrency=16,
    scale_conversations=64,
    scale_concurrency=32,
    scale_rounds=1,
    serial_conversations=10,
    warmup=8,
)

CASES_P1: list[tuple[str, str]] = [
    ("off", "complete"),
    ("memory", "complete"),
    ("memory", "dropped"),
    ("memory", "stripped"),
    ("sqlite", "complete"),
    ("sqlite", "dropped"),
    ("sqlite", "stripped"),
    ("redis", "complete"),
    ("redis", "dropped"),
    ("redis", "stripped"),
]
PROCS_P2 = (1, 2, 4)


async def part1(
    cfg: Config,
    workdir: Path,
    redis_url: str,
    redis_pid: int | None,
    api_key: str,
    guard: Guard,
) -> tuple[dict[tuple[int, str, str], Sample], tuple[int, int]]:
    """Every case at ``cfg.concurrency``, then every case one conversation at a time."""
    results = {(c, *case): Sample() for c in (cfg.concurrency, 1) for case in CASES_P1}
    with Cluster(workdir) as cluster:
        sim = cluster.sim()
        proxies = {
            store: cluster.proxy(
                f"p1-{store}", sim, None if store == "off" else store, workdir / "p1.db", redis_url
            )
            for store in ("off", "memory", "sqlite", "redis")
        }
        for p in proxies.values():
            cluster.wait_ready(p)
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector) as http:
            load = Load(http, api_key)
            gaps = await load.calibrate(proxies["off"].url)
            # Warm-up: every proxy, every mode, once through (connections, imports, SQLite file).
            for store, mode in CASES_P1:
                await load.run(
                    [proxies[store].url], mode, cfg.warmup, cfg.concurrency, 0, cross=False
                )
            k0 = 0
            passes = [(cfg.concurrency, cfg.conversations), (1, cfg.serial_conversations)]
            for conc, n_conv in passes:
                per_round = n_conv // cfg.rounds
                for r in range(cfg.rounds):
                    order = CASES_P1[r % len(CASES_P1) :] + CASES_P1[: r % len(CASES_P1)]
                    if r % 2:
                        order.reverse()
                    for store, mode in order:
                        chunk = await guard.measure(
                            load,
                            sim,
                            [proxies[store]],
                            redis_pid,
                            mode,
                            per_round,
                            conc,
                            k0,
                            cross=False,
                        )
                        k0 += per_round
                        results[(conc, store, mode)].add(chunk)
                        print(
                            f"  part 1 c={conc:<2} round {r + 1}/{cfg.rounds} {store:6} "
                            f"{mode:8} {chunk.requests / chunk.wall:6.0f} req/s, proxy "
                            f"{us_per(chunk.proxy_cpu, chunk.requests):5.0f} us/req, others "
                            f"{100 * chunk.others() / chunk.wall:3.0f}% of a core, "
                            f"errors {len(chunk.errors)}",
                            flush=True,
                        )
    return results, gaps


async def part2(
    cfg: Config,
    workdir: Path,
    redis_url: str,
    redis_pid: int | None,
    api_key: str,
    guard: Guard,
) -> dict[tuple[str, int], Sample]:
    results: dict[tuple[str, int], Sample] = {}
    stores = ("redis", "sqlite")
    with Cluster(workdir) as cluster:
        sim = cluster.sim()
        procs = {
            store: [
                cluster.proxy(f"p2-{store}-{i}", sim, store, workdir / "p2.db", redis_url)
                for i in range(max(PROCS_P2))
            ]
            for store in stores
        }
        for group in procs.values():
            for p in group:
                cluster.wait_ready(p)
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        async with aiohttp.ClientSession(connector=connector) as http:
            load = Load(http, api_key)
            off = cluster.proxy("p2-off", sim, None, workdir / "unused.db", redis_url)
            cluster.wait_ready(off)
            await load.calibrate(off.url)
            for store in stores:
                await load.run(
                    [p.url for p in procs[store]],
                    "dropped",
                    cfg.warmup,
                    cfg.scale_concurrency,
                    0,
                    cross=True,
                )
            cases = [(store, n) for store in stores for n in PROCS_P2]
            per_round = cfg.scale_conversations // cfg.scale_rounds
            k0 = 0
            for r in range(cfg.scale_rounds):
                order = cases[r % len(cases) :] + cases[: r % len(cases)]
                for store, n in order:
                    chunk = await guard.measure(
                        load,
                        sim,
                        procs[store][:n],
                        redis_pid,
                        "dropped",
                        per_round,
                        cfg.scale_concurrency,
                        k0,
                        cross=True,
                    )
                    k0 += per_round
                    results.setdefault((store, n), Sample()).add(chunk)
                    print(
                        f"  part 2 round {r + 1}/{cfg.scale_rounds} {store:6} x{n} "
                        f"{chunk.requests / chunk.wall:7.0f} req/s "
                        f"repaired {sum(chunk.repair_lines)}/{chunk.requests // 2} "
                        f"errors {len(chunk.errors)}",
                        flush=True,
                    )
    return results


def verified_cell(s: Sample, mode: str) -> str:
    n = s.requests // 2
    parts = [f"{s.verified}/{n}"]
    if mode == "dropped":
        parts.append(f"log {sum(s.repair_lines)}")
    elif mode == "stripped":
        parts.append(f"log {s.restore_lines}")
    parts.append(f"sim {s.log_checked - s.log_bad}/{s.log_checked}")
    return ", ".join(parts)


def others_note(samples: Sequence[Sample]) -> str:
    wall = sum(s.wall for s in samples)
    other = sum(s.others() for s in samples)
    return f"{100 * other / wall:.0f}% of one core" if wall else "?"


def report(
    cfg: Config,
    info: dict[str, str],
    command: str,
    p1: dict[tuple[int, str, str], Sample],
    gaps: tuple[int, int],
    p2: dict[tuple[str, int], Sample],
    elapsed: float,
    guard: Guard,
) -> str:
    lines = [
        "## Session repair: cost per request, and several processes on one store",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, {info['os']}, "
        f"Redis {info['redis']}; commit {info['commit']}. Date: {info['date']}. "
        f"Load average at start: {info['load']}. Run time: {elapsed:.0f} s "
        f"(of which {guard.waited:.0f} s waiting for other processes to finish).",
        "",
        f"Command: `{command}`",
        "",
        "Everything on one machine over loopback: the sim (full speed), the proxies (one "
        "hypercorn worker each, `REQUIRE_SESSION_FOR_REPAIR=false`: turns found by tool-call "
        "id, no session id; `LOG_LEVEL=info`, so each repair also logs a line), Redis, and the "
        "load generator (aiohttp, non-streamed OpenAI requests with one tool). A conversation "
        "is turn 1 `[user]` (answer: thinking + one tool call; the proxy stores the turn) and "
        "turn 2 with the tool result, sent `complete` `[user, assistant, tool]` (no repair "
        "needed), `dropped` `[user, tool]` (the proxy finds the turn by call id and puts it "
        "back) or `stripped` (the assistant turn without its `<think>`: the proxy restores "
        "it). CPU: utime+stime from `/proc/<pid>/stat`, per request (both turns averaged). "
        "Cases are interleaved in rounds; Δ is against sessions off. A chunk during which "
        f"other processes used more than {QUIET_CORES} cores is measured again (here: "
        f"{guard.retried} chunks re-measured, {guard.disturbed} kept disturbed).",
        "",
    ]
    conc = cfg.concurrency
    lines += [
        f"### 1a. Cost per request, {conc} concurrent conversations ({cfg.conversations} "
        f"conversations = {2 * cfg.conversations} requests per case, in {cfg.rounds} rounds)",
        "",
        "| store | turn 2 sent | req/s | turn 1 p50 / p99 ms | turn 2 p50 / p99 ms "
        "| proxy CPU µs/req | Δ CPU µs/req: median of rounds [min, max] | Redis CPU µs/req "
        "| backend got the full turn: responses; repair log; sim log |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = p1[(conc, "off", "complete")]
    for store, mode in CASES_P1:
        smp = p1[(conc, store, mode)]
        if store == "off":
            dcpu = "—"
        else:
            deltas = [(a - b) * 1e6 for a, b in zip(smp.chunk_cpu, base.chunk_cpu, strict=True)]
            dcpu = f"{statistics.median(deltas):+.0f} [{min(deltas):+.0f}, {max(deltas):+.0f}]"
        rcpu = f"{us_per(smp.redis_cpu, smp.requests):.0f}" if store == "redis" else "—"
        lines.append(
            f"| {store} | {mode} | {smp.requests / smp.wall:.0f} "
            f"| {ms(pct(smp.lat1, 0.5))} / {ms(pct(smp.lat1, 0.99))} "
            f"| {ms(pct(smp.lat2, 0.5))} / {ms(pct(smp.lat2, 0.99))} "
            f"| {us_per(smp.proxy_cpu, smp.requests):.0f} | {dcpu} | {rcpu} "
            f"| {verified_cell(smp, mode)} |"
        )
    samples = [v for k, v in p1.items() if k[0] == conc]
    lines += [
        "",
        f"Errors: {sum(len(x.errors) for x in samples)}; store failures logged: "
        f"{sum(x.store_failures for x in samples)}; CPU used by other processes on the machine "
        f"meanwhile: {others_note(samples)}. Latency here is mostly queueing: the machine is "
        "CPU-bound (the proxy, the sim and the client share 2 cores), so 1b gives the latency "
        "a request pays.",
        "",
        f"### 1b. Added latency per request, one conversation at a time "
        f"({cfg.serial_conversations} conversations = {2 * cfg.serial_conversations} requests "
        "per case)",
        "",
        "| store | turn 2 sent | turn 1 p50 / p99 ms | turn 2 p50 / p99 ms "
        "| Δ turn 1 p50 / p99 µs | Δ turn 2 p50 / p99 µs "
        "| backend got the full turn: responses; repair log; sim log |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    base = p1[(1, "off", "complete")]
    for store, mode in CASES_P1:
        smp = p1[(1, store, mode)]
        if store == "off":
            d1 = d2 = "—"
        else:
            d1 = " / ".join(
                f"{(pct(smp.lat1, q) - pct(base.lat1, q)) * 1e6:+.0f}" for q in (0.5, 0.99)
            )
            d2 = " / ".join(
                f"{(pct(smp.lat2, q) - pct(base.lat2, q)) * 1e6:+.0f}" for q in (0.5, 0.99)
            )
        lines.append(
            f"| {store} | {mode} | {ms(pct(smp.lat1, 0.5))} / {ms(pct(smp.lat1, 0.99))} "
            f"| {ms(pct(smp.lat2, 0.5))} / {ms(pct(smp.lat2, 0.99))} | {d1} | {d2} "
            f"| {verified_cell(smp, mode)} |"
        )
    samples = [v for k, v in p1.items() if k[0] == 1]
    lines += [
        "",
        f"Errors: {sum(len(x.errors) for x in samples)}; store failures logged: "
        f"{sum(x.store_failures for x in samples)}; CPU used by other processes meanwhile: "
        f"{others_note(samples)}.",
        "",
    ]
    lines += [
        "Verification: turn 2's `usage.prompt_tokens` (the sim counts the prompt it received) "
        "must equal the complete prompt's, calibrated through the sessions-off proxy; the "
        f"unrepaired prompts count {gaps[0]}–{gaps[1]} tokens fewer, so every response checks "
        "its repair. Sim log: the last 1,000 requests of each chunk, every turn 2 must arrive "
        "as `[user, assistant(<think>…</think> + the call), tool]`.",
        "",
        f"### 2. Several proxy processes, one store ({cfg.scale_concurrency} concurrent "
        f"conversations, {cfg.scale_conversations} per row, turn 2 always `dropped`)",
        "",
        "Separate processes on separate ports; conversation j sends turn 1 to process j mod N "
        "and turn 2 to process (j+1) mod N, so with N ≥ 2 every repair reads a turn another "
        "process stored. SQLite for comparison: one file shared by the processes (one host).",
        "",
        "| store | processes | req/s | turn 2 p50 / p99 ms | repaired | repairs per process "
        "(log) | CPU µs/req: proxies / sim / Redis / client | machine busy |",
        "|---|---:|---:|---:|---:|---|---|---:|",
    ]
    cores = os.cpu_count() or 1
    for (store, n), smp in p2.items():
        conv = smp.requests // 2
        rcpu = f"{us_per(smp.redis_cpu, smp.requests):.0f}" if store == "redis" else "—"
        lines.append(
            f"| {store} | {n} | {smp.requests / smp.wall:.0f} "
            f"| {ms(pct(smp.lat2, 0.5))} / {ms(pct(smp.lat2, 0.99))} "
            f"| {100 * smp.verified / conv:.1f}% ({smp.verified}/{conv}) "
            f"| {' / '.join(str(x) for x in smp.repair_lines)} "
            f"| {us_per(smp.proxy_cpu, smp.requests):.0f} / {us_per(smp.sim_cpu, smp.requests):.0f}"
            f" / {rcpu} / {us_per(smp.client_cpu, smp.requests):.0f} "
            f"| {100 * smp.machine_cpu / smp.wall / cores:.0f}% |"
        )
    samples2 = list(p2.values())
    sim_checked = sum(x.log_checked for x in samples2)
    sim_bad = sum(x.log_bad for x in samples2)
    lines += [
        "",
        f"Errors: {sum(len(x.errors) for x in samples2)}; store failures logged: "
        f"{sum(x.store_failures for x in samples2)}; sim log: {sim_checked - sim_bad}/"
        f"{sim_checked} turn-2 requests arrived whole; CPU used by other processes meanwhile: "
        f'{others_note(samples2)}. "Repaired": responses whose prompt size proves the backend '
        f"received the put-back turn. Machine busy: all CPU on the machine / wall / {cores} "
        f"cores. The proxies, the sim, Redis and the client share these {cores} cores, so "
        "throughput here is bounded by the machine, not the store; the proxies' CPU per "
        "request is what carries over to a bigger machine.",
    ]
    return "\n".join(lines) + "\n"


def print_errors(samples: dict[Any, Sample]) -> None:
    for case, s in samples.items():
        for e in s.errors[:3]:
            print(f"  error {case}: {e}", file=sys.stderr)


async def main_async(args: argparse.Namespace) -> int:
    cfg = QUICK if args.quick else FULL
    wait = args.wait_quiet if args.wait_quiet is not None else (0 if args.quick else 300)
    guard = Guard(wait, 0 if args.quick else MAX_RETRIES)
    if wait:
        await common.wait_quiet(wait, 3.0, indent="  ", give_up="going on")
    started = time.perf_counter()
    info = machine()
    info["date"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    redis_pid, info["redis"] = await redis_info(args.redis_url)
    api_key = f"bench-sessions-{uuid.uuid4().hex}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    try:
        print(f"part 1: cost per request ({len(CASES_P1)} cases x {cfg.rounds} rounds)")
        p1, gaps = await part1(cfg, workdir, args.redis_url, redis_pid, api_key, guard)
        print("part 2: several processes")
        p2 = await part2(cfg, workdir, args.redis_url, redis_pid, api_key, guard)
    finally:
        deleted = await redis_cleanup(args.redis_url, scope_of(api_key))
        shutil.rmtree(workdir, ignore_errors=True)
        print(f"cleaned up: {deleted} Redis keys, {workdir}")
    elapsed = time.perf_counter() - started
    command = " ".join(
        shlex.quote(a) for a in [".venv/bin/python", "benchmarks/bench_sessions.py", *sys.argv[1:]]
    )
    section = report(cfg, info, command, p1, gaps, p2, elapsed, guard)
    print()
    print(section)
    print_errors(p1)
    print_errors(p2)
    failed = any(s.errors for s in [*p1.values(), *p2.values()]) or any(
        s.verified != s.requests // 2 for s in p2.values()
    )
    if not args.quick and not args.no_write:
        common.write_section(RESULTS_PATH, "sessions", section, tight=True)
        print(f"wrote {RESULTS_PATH.relative_to(ROOT)}")
    return 1 if failed else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds; writes nothing")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        metavar="SECONDS",
        help="wait up to this long for a quiet machine at the start and before measuring a "
        "disturbed chunk again (default: 300, 0 with --quick)",
    )
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    sys.exit(asyncio.run(main_async(ap.parse_args())))


if __name__ == "__main__":
    main()
