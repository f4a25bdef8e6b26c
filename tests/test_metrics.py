"""The Tracker's gap histogram: counted per request, then added to GAP through
prometheus_client's internals, so checked here against what ``observe()`` gives,
in one process and in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy import metrics

# perf_counter() as the Tracker reads it: at start, then at each chunk. The gaps hit
# bucket bounds exactly (0.0005, 1, 5, 15, 60), fall between them, are 0, and pass the
# last bound; and more than _FOLD_SECONDS go by, so some are added before done().
_CLOCK = [-1.0, 0.0, 0.0005, 0.0005, 1.0, 2.0, 7.0, 22.0, 82.0, 200.0, 200.0]


def _samples(text: str, name: str, dialect: str) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for s in family.samples
        if s.labels.get("dialect") == dialect and not s.name.endswith("_created")
    }


def _tracked(dialect: str) -> tuple[metrics.Tracker, list[float]]:
    """A Tracker that has streamed every chunk of _CLOCK, not done yet; and its gaps."""
    clock = iter(_CLOCK)
    real, metrics.perf_counter = metrics.perf_counter, clock.__next__
    try:
        tracker = metrics.Tracker("/v1/chat/completions", dialect, True, "req_test")
        for _ in _CLOCK[1:]:
            tracker.chunk()
    finally:
        metrics.perf_counter = real
    chunks = _CLOCK[1:]
    return tracker, [b - a for a, b in pairwise(chunks)]


def compare(dialect: str) -> None:
    """GAP for ``dialect`` after a tracked stream equals a histogram fed by ``observe()``."""
    registry = CollectorRegistry()
    reference = Histogram(
        "reference_gap_seconds", "observe() per gap", ["dialect"],
        buckets=metrics._GAPS, registry=registry,
    )  # fmt: skip
    tracker, gaps = _tracked(dialect)
    for gap in gaps:
        reference.labels(dialect).observe(gap)
    tracker.done(200)

    text = metrics.render()[0].decode()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        text += generate_latest(registry).decode()  # else render() read it from its file
    got = _samples(text, "minimax_proxy_inter_chunk_seconds", dialect)
    want = _samples(text, "reference_gap_seconds", dialect)
    assert want and len(got) == len(want) == len(metrics._GAP_BOUNDS) + 2  # + _count, _sum
    for (name, le), value in want.items():
        mine = got[(name.replace("reference_gap_seconds", "minimax_proxy_inter_chunk_seconds"), le)]
        assert abs(mine - value) < 1e-9, (name, le, mine, value)


def test_gap_counts_equal_observe() -> None:
    compare("test-gaps")


def test_gap_counts_equal_observe_in_multiprocess_mode(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": root}
    code = "from tests.test_metrics import compare; compare('test-gaps-mp')"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert any(p.name.startswith("histogram_") for p in tmp_path.iterdir())


def test_long_streams_reach_the_histogram_before_they_end() -> None:
    tracker, gaps = _tracked("test-fold")
    text = metrics.render()[0].decode()
    count = _samples(text, "minimax_proxy_inter_chunk_seconds", "test-fold")
    # Added at the chunk at 200.0, more than _FOLD_SECONDS after the one before: all but
    # the last gap.
    assert count[("minimax_proxy_inter_chunk_seconds_count", "")] == len(gaps) - 1
    tracker.done(200)
    text = metrics.render()[0].decode()
    count = _samples(text, "minimax_proxy_inter_chunk_seconds", "test-fold")
    assert count[("minimax_proxy_inter_chunk_seconds_count", "")] == len(gaps)


def test_done_counts_even_when_info_lines_are_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="proxy.access")
    labels = {"route": "/v1/messages", "dialect": "test-quiet", "stream": "false", "key": "-"}
    before = REGISTRY.get_sample_value("minimax_proxy_requests_total", {**labels, "status": "200"})
    metrics.Tracker("/v1/messages", "test-quiet", False, "req_q").done(200, {"tool_calls": 1})
    after = REGISTRY.get_sample_value("minimax_proxy_requests_total", {**labels, "status": "200"})
    assert (before or 0) + 1 == after
    assert not [r for r in caplog.records if r.getMessage() == "request done"]
    caplog.set_level(logging.INFO, logger="proxy.access")
    metrics.Tracker("/v1/messages", "test-quiet", False, "req_q").done(200, {"tool_calls": 1})
    done = [r for r in caplog.records if r.getMessage() == "request done"]
    assert [r.fields["tool_calls"] for r in done] == [1]  # type: ignore[attr-defined]
