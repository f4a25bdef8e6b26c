"""How long one big request holds the proxy's event loop at a time.

Run from the repository root::

    .venv/bin/python benchmarks/bench_loop_hold.py            # 20 requests per API
    .venv/bin/python benchmarks/bench_loop_hold.py --requests 5

The proxy app runs in this process (hypercorn on uvloop, the settings ``proxy.asgi`` applies),
in front of the simulated backend (its own process). A probe task on the proxy's loop wakes
every 0.5 ms and notes how much CPU the loop's thread used since its last turn: a turn that
took more than that is time during which no other stream could be served. A client process
sends the ~0.77 MB agent request (``agent_request.py``: 600 messages, 24 tools) on each API,
one at a time, 0.2 s apart, first as the proxy serves them (planned in a worker thread), then
with every request planned on the loop (``service.OFF_LOOP_BYTES`` out of reach), for
comparison. Reported: the longest holds, and how many turns held the loop over 2 ms.
Loop-thread CPU, not wall time, so that the other processes of a shared machine do not count:
time the loop waits for the GIL while a worker thread plans is not seen here, which is why
``proxy.asgi`` has the GIL handed back every millisecond.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import agent_request  # noqa: E402

PATHS = {"chat": "/v1/chat/completions", "messages": "/v1/messages", "responses": "/v1/responses"}
TICK = 0.0005
CLIENT = r"""
import asyncio, sys, time
import aiohttp
async def main(url, path, n):
    body = open(path, "rb").read()
    async with aiohttp.ClientSession() as s:
        for _ in range(n):
            async with s.post(url, data=body, headers={"content-type": "application/json"}) as r:
                await r.read()
                assert r.status == 200, r.status
            await asyncio.sleep(0.2)
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def probe(holds: list[float], stop: asyncio.Event) -> None:
    """Loop-thread CPU (ms) of each turn of the loop, one turn every ``TICK`` seconds."""
    while not stop.is_set():
        cpu = time.thread_time()
        await asyncio.sleep(TICK)
        holds.append((time.thread_time() - cpu) * 1e3)


async def measure(url: str, api: str, body: Path, n: int) -> dict[str, Any]:
    holds: list[float] = []
    stop = asyncio.Event()
    task = asyncio.ensure_future(probe(holds, stop))
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, url + PATHS[api], str(body), str(n)
    )
    await client.wait()
    stop.set()
    await task
    if client.returncode:
        raise RuntimeError(f"{api}: the client failed")
    holds.sort()
    return {
        "api": api,
        "turns": len(holds),
        "over_2ms": sum(h > 2.0 for h in holds),
        "max": holds[-1],
        "top": holds[-5:][::-1],
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    import bench_proxy

    with tempfile.TemporaryDirectory(prefix="bench_hold_") as tmp:
        workdir = Path(tmp)
        sim = bench_proxy.start_sim(workdir)
        try:
            await bench_proxy.wait_ready(sim)
            os.environ.update(TABBY_URL=sim.url, LOG_LEVEL="warning")
            from hypercorn.asyncio import serve
            from hypercorn.config import Config

            import proxy.asgi  # the app, with the gc and GIL settings of a served proxy
            import proxy.service

            config = Config()
            port = common.free_port()
            config.bind = [f"127.0.0.1:{port}"]
            config.accesslog = None
            stop = asyncio.Event()
            server = asyncio.ensure_future(
                serve(proxy.asgi.app, config, shutdown_trigger=stop.wait)
            )  # type: ignore[arg-type]
            await asyncio.sleep(1.0)
            script = json.dumps({"raw": "Done.\n</think>\n\nDone.", "chunks": []})
            out = []
            threshold = proxy.service.OFF_LOOP_BYTES
            for api in args.apis.split(","):
                body = workdir / f"{api}.json"
                data = agent_request.agent_body(api, f"Go on. SIM_SCRIPT:{script}")
                body.write_bytes(json.dumps(data).encode())
                for where, size in (("worker thread", threshold), ("on the loop", 1 << 60)):
                    # Where big requests are planned: as served, then all on the loop.
                    proxy.service.OFF_LOOP_BYTES = size
                    row = await measure(f"http://127.0.0.1:{port}", api, body, args.requests)
                    out.append({**row, "planned": where})
                    print(out[-1], flush=True)
            stop.set()
            await server
        finally:
            sim.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20, help="big requests per API (20)")
    ap.add_argument("--apis", default="chat,messages,responses")
    args = ap.parse_args()
    import uvloop

    rows = uvloop.run(run(args))
    print()
    print("| API | planned | big requests | loop turns | turns over 2 ms | longest holds, ms |")
    print("|---|---|--:|--:|--:|---|")
    for r in rows:
        top = ", ".join(f"{h:.2f}" for h in r["top"])
        print(
            f"| {r['api']} | {r['planned']} | {args.requests} | {r['turns']} | {r['over_2ms']} "
            f"| {top} |"
        )


if __name__ == "__main__":
    main()
