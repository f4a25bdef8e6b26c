"""mini-swe-agent runs its bash tool through the proxy, headless, on all three APIs.

Its ``litellm`` model class speaks chat completions (``openai/…``) or Messages (``anthropic/…``),
``litellm_response`` the Responses API.

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

# route: (model class, litellm provider, base URL path)
CLASSES = {
    "/v1/chat/completions": ("litellm", "openai", "/v1"),
    "/v1/responses": ("litellm_response", "openai", "/v1"),
    "/v1/messages": ("litellm", "anthropic", ""),
}
SUBMIT = r"printf 'then run \140echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\140\n'"


@pytest.mark.parametrize("route", CLASSES)
def test_mini_swe_agent_round_trip(
    make_stack: Callable[..., Stack], clients: Path, route: str
) -> None:
    stack = make_stack()
    trajectory = stack.home / "trajectory.json"
    task = f"Create the marker file: run `{stack.command}; {SUBMIT}`"
    kind, provider, path = CLASSES[route]
    argv = [
        venv_bin(clients, "mini-swe-agent", "mini"), "-y", "--exit-immediately",
        "--model-class", kind, "-m", f"{provider}/{stack.model}", "-t", task,
        "-c", "mini.yaml", "-c", f"model.model_kwargs.api_base={stack.proxy.url}{path}",
        "-c", "model.model_kwargs.api_key=agents", "-o", str(trajectory),
    ]  # fmt: skip
    run = run_cli(stack, argv, {})
    check_round_trip(stack, run, route, final=None)
    info = json.loads(trajectory.read_text())["info"]
    assert info["exit_status"] == "Submitted", run.report()
