"""Prometheus metrics, and the per-request tracker that feeds them and the access log.

With ``--workers N`` the server sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start, and ``/metrics`` aggregates every worker's values.
"""

from __future__ import annotations

import logging
import math
import os
from bisect import bisect_left
from time import perf_counter
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = ["Tracker", "count_media", "render", "set_tool_choice"]

log = logging.getLogger("proxy.access")

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_GAPS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 15, 60)

# ``key`` is the name of the caller's API key (from the keys file: bounded), "-" without auth.
REQUESTS = Counter(
    "minimax_proxy_requests_total", "Requests served",
    ["route", "dialect", "stream", "status", "key"],
)  # fmt: skip
DURATION = Histogram(
    "minimax_proxy_request_duration_seconds", "Whole request time", ["dialect", "stream", "key"],
    buckets=_LATENCY,
)  # fmt: skip
TTFT = Histogram(
    "minimax_proxy_time_to_first_token_seconds", "Request start to first output", ["dialect"],
    buckets=_LATENCY,
)  # fmt: skip
GAP = Histogram(
    "minimax_proxy_inter_chunk_seconds", "Time between streamed chunks", ["dialect"],
    buckets=_GAPS,
)  # fmt: skip
TOKENS = Counter("minimax_proxy_tokens_total", "Tokens by kind", ["type", "key"])
TOOL_CALLS = Counter("minimax_proxy_tool_calls_total", "Tool calls returned", ["dialect"])
FALLBACKS = Counter(
    "minimax_proxy_parse_fallbacks_total", "Malformed tool-call markup returned as content"
)
REPAIRS = Counter("minimax_proxy_session_repairs_total", "Session repairs made")
STORE_ERRORS = Counter("minimax_proxy_session_store_errors_total", "Session store failures")
BACKEND_ERRORS = Counter("minimax_proxy_backend_errors_total", "Backend failures", ["kind"])
# 1 for the tool_choice this process sends with tools (BACKEND_TOOL_CHOICE), 0 for the other.
TOOL_CHOICE = Gauge(
    "minimax_proxy_backend_tool_choice", "tool_choice sent to the backend with tools",
    ["mode"], multiprocess_mode="max",
)  # fmt: skip
MEDIA = Counter(
    "minimax_proxy_media_total", "Images and documents in requests, and how they were sent",
    ["kind", "sent_as"],
)  # fmt: skip
LIMITED = Counter(
    "minimax_proxy_limited_total", "Requests refused by a key's limits",
    ["key", "reason"],  # concurrency, rpm, tpm, redis_down
)  # fmt: skip
# 1 while the Redis that holds shared limits does not answer (LIMITS_BACKEND=redis).
LIMITS_REDIS_DOWN = Gauge(
    "minimax_proxy_limits_redis_down", "Redis for shared limits unreachable",
    multiprocess_mode="livemax",
)  # fmt: skip
IN_FLIGHT = Gauge(
    "minimax_proxy_in_flight_streams", "Streams being served", multiprocess_mode="livesum"
)


# The children of the labelled metrics, by metric and label values: ``labels()`` costs
# ~1 µs (it checks and converts every value, under a lock), several times a request.
# Every label is bounded (routes, dialects, statuses, and key names from the keys
# file), so this holds no more than the registry itself already does.
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *labels: object) -> Any:
    """``metric.labels(*labels)``, made once."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def set_tool_choice(mode: str) -> None:
    for m in ("omit", "none"):
        TOOL_CHOICE.labels(m).set(1 if m == mode else 0)


def count_media(kind: str, sent_as: str) -> None:
    """One image or document in a request: ``sent_as`` is ``note`` or ``pass``."""
    MEDIA.labels(kind, sent_as).inc()


def render() -> tuple[bytes, str]:
    """The exposition text: this process's metrics, or every worker's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


_TOKEN_FIELDS = (
    ("prompt", "prompt_tokens"),
    ("cached", "cached_tokens"),
    ("completion", "completion_tokens"),
    ("reasoning", "reasoning_tokens"),
)


# GAP's upper bounds as prometheus_client keeps them: ``observe(x)`` counts x in the first
# bucket whose bound is >= x, which is ``bisect_left`` on these.
_GAP_BOUNDS = (*_GAPS, math.inf)
# A long stream's gaps reach GAP at least this often, not only when it ends.
_FOLD_SECONDS = 10.0


class Tracker:
    """Times one request and records it once, whichever way it ends.

    The gaps between chunks are counted here, per bucket, and added to GAP when the
    request is done (or every ``_FOLD_SECONDS``): ``observe()`` per chunk costs ~0.7 µs,
    counting ~0.1 µs. Every chunk comes from a response body whose ``finally`` calls
    ``done()`` (routes._stream_body, responses.background._Job.run).
    """

    __slots__ = (
        "_counts", "_folded", "_gap", "_last", "_sum",
        "dialect", "key", "rid", "route", "start", "stream", "ttft",
    )  # fmt: skip

    def __init__(self, route: str, dialect: str, stream: bool, rid: str, key: str = "-") -> None:
        self.route, self.dialect, self.stream, self.rid = route, dialect, stream, rid
        self.key = key
        self.start = self._folded = perf_counter()
        self.ttft: float | None = None
        self._last = 0.0
        self._gap = _child(GAP, dialect)
        self._counts = [0] * len(_GAP_BOUNDS)  # gaps per bucket, not yet in GAP
        self._sum = 0.0  # their sum
        if stream:
            IN_FLIGHT.inc()

    def chunk(self) -> None:
        now = perf_counter()
        if self.ttft is None:
            self.ttft = now - self.start
            _child(TTFT, self.dialect).observe(self.ttft)
        else:
            gap = now - self._last
            self._counts[bisect_left(_GAP_BOUNDS, gap)] += 1
            self._sum += gap
            if now - self._folded >= _FOLD_SECONDS:
                self._fold(now)
        self._last = now

    def _fold(self, now: float) -> None:
        """Adds the gaps counted so far to GAP, as ``observe()`` of each would have.

        This uses the child's ``_buckets`` (per bucket, not cumulative) and ``_sum``:
        prometheus_client has no public way to add counts. tests/test_metrics.py checks
        the result against ``observe()``, in one process and in multiprocess mode.
        """
        self._folded = now
        counts = self._counts
        if not any(counts):
            return
        child = self._gap
        for bucket, n in zip(child._buckets, counts, strict=True):
            if n:
                bucket.inc(n)
        child._sum.inc(self._sum)
        self._counts = [0] * len(_GAP_BOUNDS)
        self._sum = 0.0

    def done(self, status: int, info: dict[str, Any] | None = None) -> None:
        now = perf_counter()
        elapsed = now - self.start
        stream = "true" if self.stream else "false"
        if self.stream:
            IN_FLIGHT.dec()
        self._fold(now)
        _child(REQUESTS, self.route, self.dialect, stream, status, self.key).inc()
        _child(DURATION, self.dialect, stream, self.key).observe(elapsed)
        if info:
            for kind, field in _TOKEN_FIELDS:
                if info.get(field):
                    _child(TOKENS, kind, self.key).inc(info[field])
            if info.get("tool_calls"):
                _child(TOOL_CALLS, self.dialect).inc(info["tool_calls"])
            if info.get("parse_fallbacks"):
                FALLBACKS.inc(info["parse_fallbacks"])
        if log.isEnabledFor(logging.INFO):  # else the line's fields need not be made
            self._log(status, elapsed, info)

    def _log(self, status: int, elapsed: float, info: dict[str, Any] | None) -> None:
        entry: dict[str, Any] = {
            "route": self.route,
            "key": self.key,
            "stream": self.stream,
            "status": status,
            "latency_ms": round(elapsed * 1000, 1),
        }
        if self.ttft is not None:
            entry["ttft_ms"] = round(self.ttft * 1000, 1)
        if info:
            entry.update(info)
        log.info("request done", extra={"fields": entry})
