"""Codex CLI (Responses API only) runs an exec_command round trip through the proxy, headless.

Its config is the README's: a provider with ``wire_api = "responses"`` and a model catalog entry
(without one Codex treats the model as unknown: no reasoning summaries).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agents.conftest import GENERATIONS, npm_bin
from tests.agents.harness import Stack, check_round_trip, run_cli

CONFIG = """\
model = "{model}"
model_provider = "minimax"
model_catalog_json = "{catalog}"
model_reasoning_summary = "auto"
web_search = "disabled"
check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.minimax]
name = "{model} via minimax-m2-proxy"
base_url = "{url}/v1"
env_key = "MINIMAX_API_KEY"
wire_api = "responses"
"""


def catalog(model: str) -> dict[str, object]:
    return {"models": [{
        "slug": model, "display_name": model, "supports_reasoning_summaries": True,
        "supports_parallel_tool_calls": True, "context_window": 196608,
        "supported_reasoning_levels": [{"effort": "medium", "description": "always thinks"}],
        "shell_type": "default", "visibility": "list", "supported_in_api": True, "priority": 0,
        "support_verbosity": False, "truncation_policy": {"mode": "tokens", "limit": 10000},
        "experimental_supported_tools": [], "default_reasoning_level": "medium",
        "base_instructions": "You are a coding agent running in the Codex CLI. Use the tools "
        "to inspect and change the workspace, then answer briefly.",
    }]}  # fmt: skip


@pytest.mark.parametrize("model", GENERATIONS)
def test_codex_round_trip(make_stack: Callable[..., Stack], clients: Path) -> None:
    stack = make_stack()
    codex_home = stack.home / ".codex"
    codex_home.mkdir()
    (codex_home / "models.json").write_text(json.dumps(catalog(stack.model)))
    (codex_home / "config.toml").write_text(
        CONFIG.format(model=stack.model, url=stack.proxy.url, catalog=codex_home / "models.json")
    )
    env = {"CODEX_HOME": str(codex_home), "MINIMAX_API_KEY": "agents"}
    argv = [npm_bin(clients, "codex"), "exec", "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox", stack.prompt]  # fmt: skip
    check_round_trip(stack, run_cli(stack, argv, env), "/v1/responses")
