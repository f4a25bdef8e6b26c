"""Per-key limits shared through Redis by real proxy processes, and what happens without Redis.

Proxies run as real subprocesses (``python -m proxy``, one of them with ``--workers 2``) on the
shared Redis, each test under a key prefix of its own; the simulated backend's ``endless`` fault
keeps a stream in flight until its client leaves, so "in flight" is never a matter of timing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis

from proxy.sim import SimServer
from tests.servers import ProxyServer, free_port
from tests.test_operations import Spawned, metric
from tests.test_sessions import REDIS_URL, need_redis

LEASE = "2"  # seconds: short, so a killed worker's slots free themselves quickly
ENDLESS = "SIM_FAULT:endless"
KEYS = (
    "two sk-two-0123456789 max_concurrent=2\n"
    "four sk-four-0123456789 max_concurrent=4\n"
    "rpm sk-rpm-0123456789 rpm=3\n"
    "tpm sk-tpm-0123456789 tpm=1\n"
    "free sk-free-0123456789\n"
)


def chat(text: str, stream: bool = False) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], "stream": stream}


def anthropic(text: str, stream: bool = False) -> dict[str, Any]:
    return {**chat(text, stream), "max_tokens": 100}


PATHS = {"/v1/chat/completions": chat, "/v1/messages": anthropic}


def auth(name: str) -> dict[str, str]:
    return {"authorization": f"Bearer sk-{name}-0123456789"}


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text(KEYS)
    return path


@pytest.fixture
def prefix() -> Iterator[str]:
    need_redis()
    name = f"test-limits-{uuid.uuid4().hex[:12]}"
    yield name
    r = redis.Redis.from_url(REDIS_URL)
    for key in r.scan_iter(match=name + ":*"):
        r.delete(key)
    r.close()


@pytest.fixture
def fleet(sim: SimServer, keys_file: Path, prefix: str) -> Iterator[Any]:
    """Starts proxy processes sharing the limits of ``keys_file`` under ``prefix``."""
    started: list[Spawned] = []

    def start(*args: str, **env: str) -> Spawned:
        shared = {"AUTH_KEYS_FILE": str(keys_file), "LIMITS_BACKEND": "redis"}
        shared |= {
            "REDIS_URL": REDIS_URL,
            "LIMITS_REDIS_PREFIX": prefix,
            "LIMIT_LEASE_SECONDS": LEASE,
        }
        started.append(Spawned(sim.url, *args, **shared, **env))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


class Holder:
    """Opens streams that stay in flight until :meth:`let_go`; records every answer's status."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.refusals: list[tuple[str, dict[str, str], Any]] = []  # path, headers, body
        self.release = asyncio.Event()

    async def open(
        self, http: aiohttp.ClientSession, targets: list[tuple[str, str]], key: str
    ) -> list[asyncio.Task[None]]:
        """One attempt per (url, path) at once; returns once each has its status."""
        tasks = [asyncio.create_task(self.attempt(http, url, path, key)) for url, path in targets]
        async with asyncio.timeout(60):
            while len(self.statuses) < len(targets):
                await asyncio.sleep(0.05)
        return tasks

    async def attempt(self, http: aiohttp.ClientSession, url: str, path: str, key: str) -> None:
        body = PATHS[path](ENDLESS, stream=True)
        try:
            async with http.post(url + path, json=body, headers=auth(key)) as r:
                if r.status == 200:
                    await r.content.readany()  # streaming: its slot is taken
                    self.statuses.append(200)
                    await self.release.wait()
                    return
                self.refusals.append((path, dict(r.headers), await r.json()))
                self.statuses.append(r.status)
        except aiohttp.ClientError:
            self.statuses.append(0)  # the proxy was killed under it


def check_refusal(path: str, headers: dict[str, str], body: Any, status: int = 429) -> None:
    wait = {k.lower(): v for k, v in headers.items()}["retry-after"]
    assert wait.isdigit() and 1 <= int(wait) <= 60
    if path == "/v1/messages":
        kind = "rate_limit_error" if status == 429 else "overloaded_error"
        assert body["type"] == "error" and body["error"]["type"] == kind, body
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        code = "rate_limit_exceeded" if status == 429 else "limits_unavailable"
        assert body["error"]["code"] == code, body


async def served(url: str, key: str, tries: int = 200) -> int:
    """Ask until the key is served (its slots or window freed); the status last seen."""
    status = 0
    async with aiohttp.ClientSession() as http:
        for _ in range(tries):
            async with http.post(
                url + "/v1/chat/completions", json=chat("hi"), headers=auth(key)
            ) as r:
                status = r.status
                if status == 200:
                    return status
            await asyncio.sleep(0.1)
    return status


async def test_two_processes_and_two_workers_hold_a_key_to_two_streams(fleet: Any) -> None:
    one = fleet()
    two = fleet("--workers", "2")
    holder = Holder()
    async with aiohttp.ClientSession() as http:
        targets = [(p.url, path) for p in (one, two) for path in PATHS] * 5
        attempts = await holder.open(http, targets, "two")
        assert sorted(holder.statuses) == [200] * 2 + [429] * 18
        for path, headers, body in holder.refusals:
            check_refusal(path, headers, body)
        assert {path for path, _, _ in holder.refusals} == set(PATHS)
        holder.release.set()
        await asyncio.gather(*attempts)
    # The streams have ended, however their clients left: the slots are free on both.
    assert await served(one.url, "two") == 200
    assert await served(two.url, "two") == 200
    text = httpx.get(two.url + "/metrics").text
    assert metric(text, "minimax_proxy_limited_total", key="two", reason="concurrency") > 0


async def test_a_killed_worker_frees_its_slots_within_the_lease(fleet: Any, prefix: str) -> None:
    doomed, other = fleet(), fleet()
    holder = Holder()
    async with aiohttp.ClientSession() as http:
        streams = await holder.open(http, [(doomed.url, "/v1/chat/completions")] * 2, "two")
        assert holder.statuses == [200, 200]
        # Past two leases, the streams still hold their slots: their leases are renewed.
        await asyncio.sleep(2 * float(LEASE))
        assert await served(other.url, "two", tries=1) == 429
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(10)
        r = redis.Redis.from_url(REDIS_URL)
        now_ms = int(r.time()[0]) * 1000 + int(r.time()[1]) // 1000
        held = r.zrange(f"{prefix}:{{two}}:inflight", 0, -1, withscores=True)
        r.close()
        assert len(held) == 2  # nobody removed them: the worker died holding them
        assert all(expiry <= now_ms + float(LEASE) * 1000 for _, expiry in held)
        assert await served(other.url, "two") == 200  # freed by expiry alone
        holder.release.set()
        await asyncio.gather(*streams)


def _minute_start() -> None:
    """Wait, if needed, so that a few requests fall in one clock minute of Redis."""
    r = redis.Redis.from_url(REDIS_URL)
    second = int(r.time()[0]) % 60
    r.close()
    if second > 45:
        time.sleep(61 - second)


def test_rpm_and_tpm_hold_across_processes(fleet: Any, prefix: str) -> None:
    one, two = fleet(), fleet()
    _minute_start()
    urls = [one.url, two.url, one.url]
    for url in urls:  # rpm=3: three requests, whichever process serves them
        r = httpx.post(url + "/v1/chat/completions", json=chat("hi"), headers=auth("rpm"))
        assert r.status_code == 200, r.text
    for url, path in ((two.url, "/v1/messages"), (one.url, "/v1/chat/completions")):
        r = httpx.post(url + path, json=PATHS[path]("hi"), headers=auth("rpm"))
        assert r.status_code == 429
        check_refusal(path, dict(r.headers), r.json())
        assert "requests this minute" in r.text
    # tpm=1: the first request is admitted; the tokens it used close the minute for the key.
    r = httpx.post(one.url + "/v1/chat/completions", json=chat("hi"), headers=auth("tpm"))
    assert r.status_code == 200
    used = r.json()["usage"]["total_tokens"]
    counter = redis.Redis.from_url(REDIS_URL)
    for _ in range(200):  # the tokens are added after the response, off its path
        if counter.hget(f"{prefix}:{{tpm}}:tokens", "n") is not None:
            break
        time.sleep(0.05)
    assert int(counter.hget(f"{prefix}:{{tpm}}:tokens", "n") or 0) == used
    counter.close()
    r = httpx.post(two.url + "/v1/messages", json=anthropic("hi"), headers=auth("tpm"))
    assert r.status_code == 429 and "tokens this minute" in r.text
    check_refusal("/v1/messages", dict(r.headers), r.json())
    # A key with no limits is never refused.
    for url in urls:
        assert (
            httpx.post(
                url + "/v1/chat/completions", json=chat("hi"), headers=auth("free")
            ).status_code
            == 200
        )


def test_workers_with_limits_in_memory_are_refused_at_startup(keys_file: Path) -> None:
    env = {**os.environ, "AUTH_KEYS_FILE": str(keys_file), "LIMITS_BACKEND": "memory"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    args = [sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(free_port())]
    done = subprocess.run(
        [*args, "--workers", "2"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "LIMITS_BACKEND=redis" in done.stderr and "--workers 2" in done.stderr


class RedisServer:
    """A redis-server of the test's own on a free port, started and stopped at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


def test_redis_down_rejects_then_recovers(
    make_proxy: Any, sim: SimServer, keys_file: Path, own_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.INFO, logger="proxy")
    env = {"AUTH_KEYS_FILE": str(keys_file), "LIMITS_BACKEND": "redis", "REDIS_URL": own_redis.url}
    server: ProxyServer = make_proxy(**env)
    for path in PATHS:
        r = httpx.post(server.url + path, json=PATHS[path]("hi"), headers=auth("two"))
        assert r.status_code == 503, r.text
        check_refusal(path, dict(r.headers), r.json(), status=503)
        assert "Redis" in r.text
    # A key with no limits does not need Redis.
    assert (
        httpx.post(
            server.url + "/v1/chat/completions", json=chat("hi"), headers=auth("free")
        ).status_code
        == 200
    )
    time.sleep(1.2)  # past the pause between tries: Redis is tried, and fails, again
    r = httpx.post(server.url + "/v1/chat/completions", json=chat("hi"), headers=auth("two"))
    assert r.status_code == 503
    assert metric(httpx.get(server.url + "/metrics").text, "minimax_proxy_limits_redis_down") == 1
    down = [rec for rec in caplog.records if "Redis is unreachable" in rec.getMessage()]
    assert len(down) == 1  # once per outage
    own_redis.start()
    assert asyncio.run(served(server.url, "two")) == 200
    assert metric(httpx.get(server.url + "/metrics").text, "minimax_proxy_limits_redis_down") == 0
    assert len([rec for rec in caplog.records if "Redis is back" in rec.getMessage()]) == 1


async def test_redis_down_local_enforces_a_share(
    make_proxy: Any, sim: SimServer, keys_file: Path
) -> None:
    env = {"AUTH_KEYS_FILE": str(keys_file), "LIMITS_BACKEND": "redis"}
    env |= {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "LIMITS_ON_REDIS_ERROR": "local"}
    server: ProxyServer = make_proxy(**env, LIMIT_LOCAL_SHARE="2")
    holder = Holder()
    async with aiohttp.ClientSession() as http:
        attempts = await holder.open(http, [(server.url, "/v1/chat/completions")] * 4, "four")
        # max_concurrent=4 over LIMIT_LOCAL_SHARE=2 processes: 2 here, never the whole 4.
        assert sorted(holder.statuses) == [200, 200, 429, 429]
        holder.release.set()
        await asyncio.gather(*attempts)
    path, headers, body = holder.refusals[0]
    check_refusal(path, headers, body)
    assert "already has 2 requests in flight" in body["error"]["message"]
