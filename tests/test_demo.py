"""``make demo`` runs against the simulated backend in its default and its vllm mode."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("mode", "sent"), [("tabby", "omit"), ("vllm", "none")])
def test_demo_round_trip(mode: str, sent: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "proxy.demo", "--sim-mode", mode],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "round trips complete" in out.stdout
    assert "function_call: get_weather(" in out.stdout  # the Responses API round trip
    assert "second turn (previous_response_id=resp_" in out.stdout
    assert f"tool_choice sent with tools: {sent} (BACKEND_TOOL_CHOICE=auto-detect)" in out.stdout
    assert "tool call: get_weather(" in out.stdout
