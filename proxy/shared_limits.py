"""Per-key limits shared by every worker and replica through Redis (``LIMITS_BACKEND=redis``).

See :mod:`proxy.limits` for what is counted. Round trips: one ``EVALSHA`` to
admit a request (the admissions asked for in one turn of the event loop share
one pipeline, so a burst of requests costs one round trip); one pipeline when
it ends (remove its id, add its tokens), sent in the background, off the
response's path; one pipeline every third of ``LIMIT_LEASE_SECONDS`` per
process to renew the leases of all its requests in flight, however many.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as redis
from redis.exceptions import NoScriptError

from . import metrics
from .config import Settings
from .errors import ProxyError
from .limits import Counts, KeyLimits, Lease, local_lease, refusal

__all__ = ["RedisLimits"]

log = logging.getLogger("proxy")
_TIMEOUT = 1.0  # seconds: a hung Redis must not hold requests for long
_RETRY_DOWN = 1.0  # seconds between tries of a Redis that failed (503 or local meanwhile)
_WINDOW_KEEP = 120  # seconds a minute's counter is kept
_ERRORS = (redis.RedisError, OSError, TimeoutError)


class RedisLimits:
    """Limits counted in Redis; on a Redis failure, 503 or local counts."""

    def __init__(self, settings: Settings, limits_of: Callable[[str], KeyLimits | None]) -> None:
        self._limits_of = limits_of
        self._redis = redis.Redis.from_url(
            settings.redis_url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT
        )
        self._prefix = settings.limits_redis_prefix
        self._lease_ms = int(settings.limit_lease_seconds * 1000)
        self._reject = settings.limits_on_redis_error == "reject"
        self._share = settings.limit_local_share
        self._admit_sha = hashlib.sha1(_ADMIT.encode()).hexdigest()
        # Admissions asked for in one turn of the event loop go out in one pipeline.
        self._queue: list[tuple[list[str], list[Any], asyncio.Future[Any]]] = []
        self._held: dict[str, dict[str, None]] = {}  # in-flight set -> ids held by this process
        self._local = Counts()  # used only while Redis is down, with LIMITS_ON_REDIS_ERROR=local
        self._down_until = 0.0  # loop time before which Redis is not tried again
        self._down = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renewer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._renewer = asyncio.create_task(self._renew_loop())

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2 * _TIMEOUT)
        await self._redis.aclose()

    async def settle(self) -> None:
        """Wait for the removals and token counts sent in the background so far."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def acquire(self, name: str) -> Lease:
        """Admit one request of key ``name``.

        Raises:
            ProxyError: 429 with Retry-After at one of the key's limits; 503 when Redis
                does not answer and LIMITS_ON_REDIS_ERROR=reject.
        """
        limits = self._limits_of(name)
        if limits is None:
            return Lease()
        loop = asyncio.get_running_loop()
        if loop.time() < self._down_until:
            return self._without_redis(name, limits)
        keys = self._keys(name)
        rid = uuid.uuid4().hex
        counts = [limits.max_concurrent or 0, limits.rpm or 0, limits.tpm or 0]
        try:
            answer = await self._admit(keys, [rid, *counts, self._lease_ms, _WINDOW_KEEP])
        except _ERRORS as exc:
            self._failed(exc)
            return self._without_redis(name, limits)
        self._recovered()
        if not answer[0]:
            raise refusal(name, limits, answer[1].decode(), int(answer[2]))
        held = self._held.setdefault(keys[0], {}) if limits.max_concurrent else None
        if held is not None:
            held[rid] = None
        return Lease(lambda tokens: self._end(keys, rid, limits, tokens))

    async def _admit(self, keys: list[str], args: list[Any]) -> Any:
        """The admission script's answer, sent with the others of this loop turn."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((keys, args, future))
        if len(self._queue) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        self._spawn(self._send(batch))

    async def _send(self, batch: list[tuple[list[str], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            answers = await self._pipeline(batch)
        except _ERRORS as exc:
            answers = [exc] * len(batch)
        for (keys, args, future), answer in zip(batch, answers, strict=True):
            if future.cancelled():  # its request is gone: give back what it was given
                if isinstance(answer, list) and answer[0]:
                    await self._forget(keys[0], args[0])
            elif isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def _pipeline(self, batch: list[tuple[list[str], list[Any], Any]]) -> list[Any]:
        for _ in range(2):
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args, _future in batch:
                    pipe.evalsha(self._admit_sha, len(keys), *keys, *args)
                answers: list[Any] = await pipe.execute(raise_on_error=False)
            if not any(isinstance(a, NoScriptError) for a in answers):
                break
            await self._redis.script_load(_ADMIT)  # a new or flushed Redis: load, send again
        return answers

    async def _forget(self, key: str, rid: str) -> None:
        with contextlib.suppress(*_ERRORS):
            await self._redis.zrem(key, rid)

    def _keys(self, name: str) -> list[str]:
        # One hash tag per key name: a Redis Cluster keeps a key's counters together.
        base = f"{self._prefix}:{{{name}}}"
        return [base + ":inflight", base + ":requests", base + ":tokens"]

    def _end(self, keys: list[str], rid: str, limits: KeyLimits, tokens: int) -> None:
        held = self._held.get(keys[0])
        if held is not None:
            held.pop(rid, None)
            if not held:
                del self._held[keys[0]]
        if limits.max_concurrent or (limits.tpm and tokens):
            self._spawn(self._release(keys, rid, limits, tokens))

    async def _release(self, keys: list[str], rid: str, limits: KeyLimits, tokens: int) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if limits.max_concurrent:
                    pipe.zrem(keys[0], rid)
                if limits.tpm and tokens:
                    # EVAL, not EVALSHA: a pipeline would first ask whether the script is loaded.
                    pipe.eval(_TOKENS, 1, keys[2], tokens, _WINDOW_KEEP)
                await pipe.execute()
        except _ERRORS as exc:
            self._failed(exc)  # the slot frees itself when its lease runs out

    def _without_redis(self, name: str, limits: KeyLimits) -> Lease:
        if self._reject:
            metrics.LIMITED.labels(name, "redis_down").inc()
            raise ProxyError(
                503,
                "the limits store (Redis) is unreachable; try again shortly",
                code="limits_unavailable",
                retry_after="1",
            )
        return local_lease(self._local, name, limits.shared(self._share))

    def _failed(self, exc: BaseException) -> None:
        self._down_until = asyncio.get_running_loop().time() + _RETRY_DOWN
        if not self._down:
            self._down = True
            metrics.LIMITS_REDIS_DOWN.set(1)
            how = "503 for limited keys" if self._reject else f"local limits (1/{self._share})"
            log.error("limits: Redis is unreachable (%s); %s until it is back", exc, how)

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            metrics.LIMITS_REDIS_DOWN.set(0)
            log.warning("limits: Redis is back; limits are shared again")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            if not self._held:
                continue
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, ids in self._held.items():
                        pipe.eval(_RENEW, 1, key, self._lease_ms, *ids)
                    await pipe.execute()
            except _ERRORS as exc:
                self._failed(exc)


# KEYS: in-flight set, requests window, tokens window.
# ARGV: request id, max_concurrent, rpm, tpm (0: none), lease in ms.
# Returns {1} when admitted, else {0, reason, seconds to wait}.
_ADMIT = """
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local minute = math.floor(sec / 60)
local left = 60 - sec % 60
local maxc, rpm, tpm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local function used(key)
  local w = redis.call('HMGET', key, 'w', 'n')
  if tonumber(w[1]) == minute then return tonumber(w[2]) or 0 end
  return 0
end
if tpm > 0 and used(KEYS[3]) >= tpm then return {0, 'tpm', left} end
local requests = 0
if rpm > 0 then
  requests = used(KEYS[2])
  if requests >= rpm then return {0, 'rpm', left} end
end
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  if redis.call('ZCARD', KEYS[1]) >= maxc then return {0, 'concurrency', 1} end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
if rpm > 0 then
  redis.call('HSET', KEYS[2], 'w', minute, 'n', requests + 1)
  redis.call('EXPIRE', KEYS[2], ARGV[6])
end
return {1}
"""

# KEYS: in-flight set. ARGV: lease in ms, then the ids this process holds there.
_RENEW = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""

# KEYS: tokens window. ARGV: tokens, seconds to keep.
_TOKENS = """
local minute = math.floor(tonumber(redis.call('TIME')[1]) / 60)
local w = redis.call('HMGET', KEYS[1], 'w', 'n')
local n = tonumber(ARGV[1])
if tonumber(w[1]) == minute then n = n + (tonumber(w[2]) or 0) end
redis.call('HSET', KEYS[1], 'w', minute, 'n', n)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return n
"""
