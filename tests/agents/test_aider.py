"""aider (chat completions, no tools) makes an edit through the proxy, headless.

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

from tests.agents.conftest import venv_bin
from tests.agents.harness import Stack, leftovers, run_cli

SETTINGS = """\
- name: openai/{model}
  edit_format: whole
  use_temperature: 1.0
"""
ERRORS = ("litellm.", "Error:", "Exception", "BadRequest")


def test_aider_edit(make_stack: Callable[..., Stack], clients: Path) -> None:
    stack = make_stack()
    name = f"openai/{stack.model}"
    caches = stack.home / ".aider" / "caches"
    caches.mkdir(parents=True)
    price = {"max_input_tokens": 196608, "max_output_tokens": 32768, "litellm_provider": "openai",
             "mode": "chat", "input_cost_per_token": 0, "output_cost_per_token": 0}  # fmt: skip
    (caches / "model_prices_and_context_window.json").write_text(json.dumps({name: price}))
    settings = stack.home / "aider.model.settings.yml"
    settings.write_text(SETTINGS.format(model=stack.model))
    (stack.work / "hello.txt").write_text("old\n")
    thinking = f"I will write {stack.token} into hello.txt."
    raw = f"{thinking}\n</think>\n\nhello.txt\n```\n{stack.token}\n```\n"
    message = f"Write the token into hello.txt. SIM_SCRIPT:{json.dumps({'raw': raw})}"
    argv = [
        venv_bin(clients, "aider", "aider"), "--model", name, "--model-settings-file",
        str(settings), "--openai-api-base", f"{stack.proxy.url}/v1", "--openai-api-key",
        "agents", "--no-git", "--no-check-update", "--no-analytics", "--no-show-model-warnings",
        "--no-show-release-notes", "--yes-always", "--no-pretty", "--message", message,
        "hello.txt",
    ]  # fmt: skip
    run = run_cli(stack, argv, {})
    assert run.code == 0, run.report()
    assert not [e for e in ERRORS if e in run.stdout + run.stderr], run.report()
    assert "Applied edit to hello.txt" in run.stdout, run.report()
    assert (stack.work / "hello.txt").read_text().strip() == stack.token
    assert thinking in run.stdout, "the thinking did not reach aider"  # shown as THINKING
    assert [s["route"] for s in stack.served] == ["/v1/chat/completions"]
    assert not leftovers(stack.home)
