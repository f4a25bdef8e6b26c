"""Shared-limits benchmark: the latency a key's limits add to a request, Redis on loopback.

Run from the repository root (Redis must answer at ``--redis-url``)::

    .venv/bin/python benchmarks/bench_limits.py            # full run (~1 min): RESULTS.md
    .venv/bin/python benchmarks/bench_limits.py --quick    # smoke run, writes nothing

It drives the proxy's own limiters in this process, the code a request runs: a key with all
three limits (``max_concurrent``, ``rpm``, ``tpm``, set high enough never to refuse), admitted
and released over and over. Per case it times:

- **admit** (on the request's path, before the backend is asked): ``LIMITS_BACKEND=memory``
  against ``redis`` (one ``EVALSHA`` of the admission script);
- **release** (off the path, after the response: one pipeline that removes the request id and
  adds its tokens), awaited here only to time it.

Cases run in interleaved rounds, so noise from the rest of the shared machine falls on each
alike, one request at a time and 16 at once. Keys are written under a prefix of the run's own
and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import common
import redis

sys.path.insert(0, str(common.ROOT))

from proxy.config import Settings
from proxy.limits import KeyLimits, Lease, LocalLimits
from proxy.shared_limits import RedisLimits

LIMITS = KeyLimits(max_concurrent=1_000_000, rpm=1_000_000_000, tpm=1_000_000_000)
TOKENS = 1234  # per request, counted against tpm


class _Ping:
    """The floor of any Redis-backed check: one PING round trip on the same client library."""

    def __init__(self, redis_url: str) -> None:
        import redis.asyncio

        self.client = redis.asyncio.Redis.from_url(redis_url)

    async def acquire(self, name: str) -> Lease:
        await self.client.ping()
        return Lease()


def _limiters(redis_url: str, prefix: str) -> tuple[LocalLimits, RedisLimits]:
    env = {"REDIS_URL": redis_url, "LIMITS_BACKEND": "redis", "LIMITS_REDIS_PREFIX": prefix}
    settings = Settings.from_env(env, env_file=None)
    return LocalLimits(lambda name: LIMITS), RedisLimits(settings, lambda name: LIMITS)


async def _one(limits: Any, admit: list[float], free: list[float]) -> None:
    t0 = time.perf_counter()
    lease = await limits.acquire("bench")
    t1 = time.perf_counter()
    lease.tokens = lambda: TOKENS
    lease.release()
    if isinstance(limits, RedisLimits):
        await limits.settle()
    admit.append(t1 - t0)
    free.append(time.perf_counter() - t1)


async def _case(limits: Any, n: int, at_once: int) -> tuple[list, list]:
    admit: list[float] = []
    free: list[float] = []
    for _ in range(n // at_once):
        await asyncio.gather(*(_one(limits, admit, free) for _ in range(at_once)))
    return admit, free


def _ms(values: list[float], q: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.3f}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"bench-limits-{uuid.uuid4().hex[:10]}"
    memory, shared = _limiters(args.redis_url, prefix)
    ping = _Ping(args.redis_url)
    await shared.start()
    results: dict[tuple[str, int], tuple[list[float], list[float]]] = {}
    try:
        await _case(shared, 320, 16)  # warm: connections open, the script loaded
        await _case(ping, 320, 16)
        for _ in range(args.rounds):
            for at_once in (1, 16):
                for name, limits in (("memory", memory), ("redis", shared), ("PING only", ping)):
                    admit, free = await _case(limits, args.requests, at_once)
                    got = results.setdefault((name, at_once), ([], []))
                    got[0].extend(admit)
                    got[1].extend(free)
    finally:
        await shared.stop()
        await ping.client.aclose()
        client = redis.Redis.from_url(args.redis_url)
        for key in client.scan_iter(match=prefix + ":*"):
            client.delete(key)
        client.close()
    return results


def report(results: dict[Any, Any], args: argparse.Namespace, command: str) -> str:
    m = common.machine()
    lines = [
        "## Shared limits (Redis on loopback)",
        "",
        f"Measured on {m['cpu']} ({m['cores']} cores, shared with other work), {m['python']}, "
        f"{common.source_note()}; Redis at `{args.redis_url}`. Command: `{command}`.",
        "",
        f"A key with `max_concurrent`, `rpm` and `tpm`; {args.rounds} interleaved rounds of "
        f"{args.requests} requests per case. **admit** is on the request's path (before the "
        "backend is asked); **release** (remove the id, add the tokens: one pipeline) runs after "
        "the response, off its path, and is awaited here only to time it. `PING only` is the "
        "floor of any check in Redis: one `PING` round trip per request with the same client "
        "library (redis-py asyncio). Admissions asked for in one event-loop turn share one "
        "pipeline. Milliseconds.",
        "",
        "| limits | at once | admit p50 | admit p99 | release p50 | release p99 |",
        "|---|---|---|---|---|---|",
    ]
    for (name, at_once), (admit, free) in sorted(
        results.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        release = ("-", "-") if name != "redis" else (_ms(free, 0.5), _ms(free, 0.99))
        lines.append(
            f"| `{name}` | {at_once} | {_ms(admit, 0.5)} | {_ms(admit, 0.99)} | "
            f"{release[0]} | {release[1]} |"
        )
    added = [
        statistics.quantiles(results[("redis", n)][0], n=100)[98]
        - statistics.quantiles(results[("memory", n)][0], n=100)[98]
        for n in (1, 16)
    ]
    lines += [
        "",
        f"Added by Redis at p99 (redis admit p99 - memory admit p99): {added[0] * 1000:.3f} ms "
        f"one at a time, {added[1] * 1000:.3f} ms at 16 at once (target: under 1 ms).",
        "",
        f"Load average during the run: {os.getloadavg()[0]:.1f} on {m['cores']} cores. On a busy "
        "machine the p99 column is mostly time the processes (this one and Redis) spend waiting "
        "for a core; at 16 at once it is also the queue of one client process's event loop. "
        "Compare each row with `PING only`, the same wait for one bare round trip. The p50 is "
        "the cost itself.",
        "",
        "A key with no limits never reaches Redis (no cost). The lease renewal is one pipeline "
        "per process every `LIMIT_LEASE_SECONDS / 3` for all its requests in flight.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="a smoke run; writes nothing")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.requests = 1, 160
    command = "python benchmarks/bench_limits.py" + (" --quick" if args.quick else "")
    text = report(asyncio.run(run(args)), args, command)
    print(text)
    if not args.quick:
        common.write_section(Path(common.ROOT / "benchmarks" / "RESULTS.md"), "limits", text)


if __name__ == "__main__":
    main()
