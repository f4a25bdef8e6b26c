"""aider (no tools) makes an edit through the proxy, headless, on chat completions and Messages.

aider has no tool loop: an edit is text in its edit format, so the simulated model is scripted
(``SIM_SCRIPT``) to write one. aider exits 0 even when the API call failed, so its output is
checked too. Two settings it needs: a model settings file with ``use_temperature: 1.0`` (aider
sends temperature 0, which MiniMax-M2 does not take: the proxy answers 400), and a model-price
cache in the temporary HOME so it does not fetch one from the internet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agents.conftest import venv_bin
from tests.agents.harness import Stack, leftovers, run_cli

SETTINGS = """\
- name: {name}
  edit_format: whole
  use_temperature: 1.0
"""
ERRORS = ("litellm.", "Error:", "Exception", "BadRequest")
PROVIDERS = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}


def endpoint(stack: Stack, provider: str) -> list[str]:
    if provider == "openai":
        return ["--openai-api-base", f"{stack.proxy.url}/v1", "--openai-api-key", "agents"]
    return ["--set-env", f"ANTHROPIC_API_BASE={stack.proxy.url}", "--anthropic-api-key", "agents"]


def home_files(stack: Stack, name: str) -> Path:
    """aider's model-price cache (so it fetches none) and its model settings file."""
    caches = stack.home / ".aider" / "caches"
    caches.mkdir(parents=True)
    price = {"max_input_tokens": 196608, "max_output_tokens": 32768, "mode": "chat",
             "litellm_provider": name.split("/")[0], "input_cost_per_token": 0,
             "output_cost_per_token": 0}  # fmt: skip
    (caches / "model_prices_and_context_window.json").write_text(json.dumps({name: price}))
    settings = stack.home / "aider.model.settings.yml"
    settings.write_text(SETTINGS.format(name=name))
    return settings


@pytest.mark.parametrize("route", PROVIDERS)
def test_aider_edit(make_stack: Callable[..., Stack], clients: Path, route: str) -> None:
    stack = make_stack()
    name = f"{PROVIDERS[route]}/{stack.model}"
    settings = home_files(stack, name)
    (stack.work / "hello.txt").write_text("old\n")
    thinking = f"I will write {stack.token} into hello.txt."
    raw = f"{thinking}\n</think>\n\nhello.txt\n```\n{stack.token}\n```\n"
    message = f"Write the token into hello.txt. SIM_SCRIPT:{json.dumps({'raw': raw})}"
    argv = [
        venv_bin(clients, "aider", "aider"), "--model", name, "--model-settings-file",
        str(settings), *endpoint(stack, PROVIDERS[route]), "--no-git", "--no-check-update",
        "--no-analytics", "--no-show-model-warnings", "--no-show-release-notes", "--yes-always",
        "--no-pretty", "--message", message, "hello.txt",
    ]  # fmt: skip
    run = run_cli(stack, argv, {})
    assert run.code == 0, run.report()
    assert not [e for e in ERRORS if e in run.stdout + run.stderr], run.report()
    assert "Applied edit to hello.txt" in run.stdout, run.report()
    assert (stack.work / "hello.txt").read_text().strip() == stack.token
    assert thinking in run.stdout, "the thinking did not reach aider"  # shown as THINKING
    assert [(s["route"], s["status"]) for s in stack.served] == [(route, 200)]
    assert not leftovers(stack.home)
