"""mini-swe-agent runs its bash tool through the proxy, headless, on chat completions and Responses.

It stops only when the model runs ``echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT``; the marker
command prints that request (backticks as \\140, so the prompt's own command stays one span) and
the simulated model follows what a tool's output asks it to run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agents.conftest import venv_bin
from tests.agents.harness import Stack, check_round_trip, run_cli

CLASSES = {"/v1/chat/completions": "litellm", "/v1/responses": "litellm_response"}
SUBMIT = r"printf 'then run \140echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\140\n'"


@pytest.mark.parametrize("route", CLASSES)
def test_mini_swe_agent_round_trip(
    make_stack: Callable[..., Stack], clients: Path, route: str
) -> None:
    stack = make_stack()
    trajectory = stack.home / "trajectory.json"
    task = f"Create the marker file: run `{stack.command}; {SUBMIT}`"
    argv = [
        venv_bin(clients, "mini-swe-agent", "mini"), "-y", "--exit-immediately",
        "--model-class", CLASSES[route], "-m", f"openai/{stack.model}", "-t", task,
        "-c", "mini.yaml", "-c", f"model.model_kwargs.api_base={stack.proxy.url}/v1",
        "-c", "model.model_kwargs.api_key=agents", "-o", str(trajectory),
    ]  # fmt: skip
    run = run_cli(stack, argv, {})
    check_round_trip(stack, run, route, final=None)
    info = json.loads(trajectory.read_text())["info"]
    assert info["exit_status"] == "Submitted", run.report()
