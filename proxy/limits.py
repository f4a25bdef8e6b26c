"""Per-key limits: requests at once, requests per minute, tokens per minute.

``LIMITS_BACKEND=memory`` counts in this process. ``LIMITS_BACKEND=redis``
counts in Redis, so every worker and replica on one ``REDIS_URL`` shares each
key's limits. One Lua script admits a request in one round trip: it prunes the
key's sorted set of in-flight request ids (scored by lease expiry, Redis
``TIME`` as the clock, so replicas' clocks do not matter), counts it against
``max_concurrent``, checks the ``rpm``/``tpm`` fixed-window counters, and adds
the id. The id is removed when the request ends, however it ends; while it runs
one loop per process renews all its leases, so the slots of a killed worker
free themselves within ``LIMIT_LEASE_SECONDS``. Tokens (from usage) are added
when the request ends, in the same round trip as the removal.

Redis unreachable: ``LIMITS_ON_REDIS_ERROR=reject`` answers 503;
``local`` counts in the process with each limit divided by
``LIMIT_LOCAL_SHARE`` (rounded up), never the whole limit per process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import metrics
from .errors import ProxyError

__all__ = ["Counts", "KeyLimits", "Lease", "LocalLimits", "local_lease", "refusal"]


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """One key's limits (None: no limit of that kind)."""

    max_concurrent: int | None = None
    rpm: int | None = None
    tpm: int | None = None

    def shared(self, share: int) -> KeyLimits:
        """Each limit divided over ``share`` processes, rounded up."""

        def part(n: int | None) -> int | None:
            return None if n is None else math.ceil(n / share)

        return KeyLimits(part(self.max_concurrent), part(self.rpm), part(self.tpm))


class Lease:
    """A request's admission; :meth:`release` (idempotent) when the request ends.

    ``tokens`` is set once the request has a backend turn: it is read at release,
    to count the request's tokens against ``tpm``.
    """

    __slots__ = ("_end", "tokens")

    def __init__(self, end: Callable[[int], None] | None = None) -> None:
        self._end = end
        self.tokens: Callable[[], int] | None = None

    def release(self) -> None:
        end, self._end = self._end, None
        if end is not None:
            end(self.tokens() if self.tokens is not None else 0)


def refusal(name: str, limits: KeyLimits, reason: str, retry: int) -> ProxyError:
    if reason == "concurrency":
        what = f"already has {limits.max_concurrent} requests in flight"
    elif reason == "rpm":
        what = f"has made {limits.rpm} requests this minute"
    else:
        what = f"has used {limits.tpm} tokens this minute"
    metrics.LIMITED.labels(name, reason).inc()
    return ProxyError(
        429,
        f"the key {name!r} {what}, its limit",
        code="rate_limit_exceeded",
        retry_after=str(max(retry, 1)),
    )


class Counts:
    """In-process counts: in flight now, and this minute's requests and tokens."""

    def __init__(self) -> None:
        self.active: dict[str, int] = {}
        self._windows: dict[tuple[str, str], list[int]] = {}  # (name, kind) -> [minute, n]

    def admit(self, name: str, limits: KeyLimits) -> tuple[str, int] | None:
        """Take a slot; or the reason it is refused and seconds to wait."""
        now = time.time()
        left = 60 - int(now) % 60
        if limits.tpm and self._used(name, "tokens", now) >= limits.tpm:
            return "tpm", left
        if limits.rpm and self._used(name, "requests", now) >= limits.rpm:
            return "rpm", left
        active = self.active.get(name, 0)
        if limits.max_concurrent and active >= limits.max_concurrent:
            return "concurrency", 1
        self.active[name] = active + 1
        if limits.rpm:
            self._add(name, "requests", now, 1)
        return None

    def end(self, name: str, tokens: int) -> None:
        self.active[name] -= 1
        if tokens:
            self._add(name, "tokens", time.time(), tokens)

    def _used(self, name: str, kind: str, now: float) -> int:
        window = self._windows.get((name, kind))
        return window[1] if window and window[0] == int(now // 60) else 0

    def _add(self, name: str, kind: str, now: float, n: int) -> None:
        minute = int(now // 60)
        window = self._windows.setdefault((name, kind), [minute, 0])
        if window[0] != minute:
            window[:] = [minute, 0]
        window[1] += n


class LocalLimits:
    """Limits counted in this process (``LIMITS_BACKEND=memory``)."""

    def __init__(self, limits_of: Callable[[str], KeyLimits | None]) -> None:
        self._limits_of = limits_of
        self._counts = Counts()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def in_flight(self, name: str) -> int:
        return self._counts.active.get(name, 0)

    async def acquire(self, name: str) -> Lease:
        """Admit one request of key ``name``.

        Raises:
            ProxyError: 429 with Retry-After when the key is at one of its limits.
        """
        limits = self._limits_of(name)
        if limits is None:
            return Lease()
        return local_lease(self._counts, name, limits)


def local_lease(counts: Counts, name: str, limits: KeyLimits) -> Lease:
    refused = counts.admit(name, limits)
    if refused is not None:
        raise refusal(name, limits, *refused)
    return Lease(lambda tokens: counts.end(name, tokens))
