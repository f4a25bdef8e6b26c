"""Routing benchmark: how much of each prompt the replicas' prefix caches serve, with the
proxy's routing key and without it.

Run from the repository root (``smg`` must be installed: the test extra brings it)::

    .venv/bin/python benchmarks/bench_routing.py           # full run: RESULTS.md
    .venv/bin/python benchmarks/bench_routing.py --quick   # smoke run, writes nothing

Every server is its own process on loopback: simulated MiniMax-M2 replicas (``python -m
proxy.sim``, each with its own prefix cache, bounded by ``--cache-blocks``), SGLang's Model
Gateway (``smg launch``) in front of them, and one proxy (``python -m proxy``, default
settings) in front of that. The load generator (this process) replays agent-shaped
conversations through the proxy: a long system prompt and a dozen tools shared by all, then
turns that append (a task, the model's tool call, the tool's result, the model's answer, the
next instruction ...). Non-streamed chat completions; ``usage.prompt_tokens_details.
cached_tokens`` of each answer is what the replica's cache served.

Cases, each on fresh replicas (empty caches), the same conversations in the same order:
- ideal: one replica, no cache limit, no router: every turn finds the previous turn's prompt;
- key: 4 replicas, ``--policy consistent_hashing``, the proxy's routing key (the default);
- round robin: 4 replicas, ``--policy round_robin``, no key;
- smg cache_aware: 4 replicas, smg's default policy (its own approximate prefix tree), no key;
- no key, consistent_hashing: what smg hashes without a routing-key header (it does not know
  the conversation either).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import common
import httpx

ROOT = common.ROOT
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fleet import Replica, Router, smg_binary  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
_WORDS = ("repo", "function", "module", "test", "config", "schema", "index", "handler")


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(_WORDS) + str(rng.randrange(1000)))
    return " ".join(words)


def agent_context() -> tuple[str, list[dict[str, Any]]]:
    """The system prompt (~3,000 tokens) and tools (~1,500 tokens) every conversation shares."""
    rng = random.Random(7)
    system = "You are a coding agent. " + _text(rng, 12_000)
    tools = []
    for n in range(12):
        props = {f"arg{k}": {"type": "string", "description": _text(rng, 120)} for k in range(3)}
        schema = {"type": "object", "properties": props, "required": ["arg0"]}
        fn = {"name": f"tool_{n}", "description": _text(rng, 200), "parameters": schema}
        tools.append({"type": "function", "function": fn})
    return system, tools


CONTEXT = agent_context()


@dataclass
class Tally:
    prompt: int = 0
    cached: int = 0
    requests: int = 0
    failed: int = 0


async def conversation(
    http: aiohttp.ClientSession, url: str, n: int, turns: int, tally: Tally
) -> None:
    """One agent session: a task, then tool results and instructions, each turn appended."""
    rng = random.Random(n)
    system, tools = CONTEXT
    task = f"Task {n}: " + _text(rng, 800)
    messages: list[Any] = [{"role": "system", "content": system}, {"role": "user", "content": task}]
    for turn in range(turns):
        body = {"model": "minimax-m2", "messages": messages, "tools": tools}
        async with http.post(url + "/v1/chat/completions", json=body) as resp:
            got = await resp.json()
        if resp.status != 200:
            tally.failed += 1
            return
        usage = got["usage"]
        tally.requests += 1
        tally.prompt += usage["prompt_tokens"]
        tally.cached += (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        message = got["choices"][0]["message"]
        messages.append({k: v for k, v in message.items() if v is not None})
        if message.get("tool_calls"):
            for call in message["tool_calls"]:
                result = f"output of {call['function']['name']}: " + _text(rng, 1_600)
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        else:
            messages.append({"role": "user", "content": f"Next step {turn}: " + _text(rng, 300)})


async def replay(url: str, conversations: int, turns: int, concurrency: int) -> Tally:
    tally = Tally()
    queue = list(range(conversations))
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def worker() -> None:
            while queue:
                await conversation(http, url, queue.pop(0), turns, tally)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


def start_proxy(upstream: str, header: str, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``python -m proxy`` on a free port, in a scratch directory (no developer .env)."""
    port = common.free_port()
    env = {**os.environ, "TABBY_URL": upstream, "HOST": "127.0.0.1", "PORT": str(port),
           "PYTHONPATH": str(ROOT), "LOG_LEVEL": "warning",
           "BACKEND_ROUTING_HEADER": header}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "proxy"], env=env, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the proxy did not start")


@dataclass
class Case:
    name: str
    replicas: int
    policy: str | None  # None: no router, the proxy talks to the one replica
    header: str  # BACKEND_ROUTING_HEADER ("": no routing key)
    cache_blocks: int | None = None  # None: the run's --cache-blocks


CASES = [
    Case("ideal: one replica, unlimited cache", 1, None, "", 0),
    Case("routing key, smg consistent_hashing", 4, "consistent_hashing", "X-SMG-Routing-Key"),
    Case("no key, smg round_robin", 4, "round_robin", ""),
    Case("no key, smg cache_aware (its default)", 4, "cache_aware", ""),
    Case("no key, smg consistent_hashing", 4, "consistent_hashing", ""),
]


@dataclass
class Outcome:
    case: Case
    tally: Tally
    shares: list[int]  # requests per replica
    seconds: float

    @property
    def ratio(self) -> float:
        return self.tally.cached / self.tally.prompt if self.tally.prompt else 0.0


async def run_case(case: Case, binary: str, args: argparse.Namespace, workdir: Path) -> Outcome:
    blocks = args.cache_blocks if case.cache_blocks is None else case.cache_blocks
    replicas = [Replica("--cache-blocks", str(blocks), "--log-limit", "100000")
                for _ in range(case.replicas)]  # fmt: skip
    router = proxy = None
    try:
        upstream = replicas[0].url
        if case.policy is not None:
            router = Router(binary, [r.url for r in replicas], case.policy)
            upstream = router.url
        proxy, url = start_proxy(upstream, case.header, workdir)
        started = time.monotonic()
        tally = await replay(url, args.conversations, args.turns, args.concurrency)
        seconds = time.monotonic() - started
        shares = [len(r.requests()) for r in replicas]
    finally:
        if proxy is not None:
            proxy.kill()
            proxy.wait(10)
        if router is not None:
            router.stop()
        for replica in replicas:
            replica.kill()
    return Outcome(case, tally, shares, seconds)


def report(outcomes: list[Outcome], args: argparse.Namespace, command: str) -> str:
    ideal = outcomes[0].ratio
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    m = common.machine()
    lines = [
        "## Routing: prefix-cache hits with the routing key",
        "",
        f"Measured {when} with `{command}` ({common.source_note()}; {m['cpu']}, "
        f"{m['cores']} cores, {m['python']}).",
        "",
        f"{args.conversations} agent conversations x {args.turns} turns, {args.concurrency} at "
        "a time, through the proxy and smg to 4 simulated replicas, each with its own prefix "
        f"cache of {args.cache_blocks:,} blocks of 16 tokens (least recently used out first). "
        "Hit ratio: cached prompt tokens / prompt tokens, summed over every request, as the "
        "replicas reported them in `usage`. Prompt tokens computed: those not served from a "
        "cache (prefill work), against the ideal case.",
        "",
        "| case | hit ratio | of ideal | prompt tokens computed, x ideal | requests per replica "
        "| busiest replica | failed |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    base = outcomes[0].tally
    for o in outcomes:
        total = sum(o.shares) or 1
        computed = (o.tally.prompt - o.tally.cached) / max(base.prompt - base.cached, 1)
        lines.append(
            f"| {o.case.name} | {o.ratio:.3f} | {o.ratio / ideal:.3f} | {computed:.2f} | "
            f"{' / '.join(map(str, o.shares))} | {max(o.shares) / total:.0%} | {o.tally.failed} |"
        )
    key = outcomes[1].ratio / ideal
    lines += [
        "",
        f"Target: the routing key reaches >= 0.9 of ideal: {key:.3f}, "
        f"{'met' if key >= 0.9 else 'NOT met'}.",
        "",
        "Reading: the hit ratio includes the system prompt and tools all conversations share, "
        "which every replica caches after its first request whatever the routing, so it moves "
        "little; the prompt tokens computed (prefill work) show what the routing changes. With "
        "the key, a replica computes the shared part once and each conversation's history once; "
        "without it, a turn mostly lands on a replica that has not seen the turns before it "
        "(and each replica must hold every conversation). smg's default `cache_aware` finds the "
        "prefixes by itself but piles conversations on one replica; consistent hashing on the "
        "key spreads them as evenly as a hash of 50 keys over 4 replicas does (busiest replica).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conversations", type=int, default=50)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--cache-blocks", type=int, default=8192, help="per replica (16 tokens each)")
    ap.add_argument("--quick", action="store_true", help="10 x 4, print only")
    args = ap.parse_args()
    if args.quick:
        args.conversations, args.turns = 10, 4
    binary = smg_binary()
    if binary is None:
        sys.exit("smg is not installed (pip install smg, or make setup)")
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            outcome = asyncio.run(run_case(case, binary, args, Path(tmp)))
            print(f"{case.name}: hit ratio {outcome.ratio:.3f}, replicas {outcome.shares}, "
                  f"{outcome.seconds:.1f} s", flush=True)  # fmt: skip
            outcomes.append(outcome)
    command = ".venv/bin/python benchmarks/bench_routing.py " + " ".join(sys.argv[1:])
    text = report(outcomes, args, command.strip())
    print(text)
    if not args.quick:
        common.write_section(RESULTS, "routing", text)


if __name__ == "__main__":
    main()
