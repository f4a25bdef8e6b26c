"""opencode runs a bash round trip through the proxy, headless, on each of the three APIs.

Its AI SDK provider package picks the API: ``@ai-sdk/openai-compatible`` (chat completions),
``@ai-sdk/anthropic`` (Messages) and ``@ai-sdk/openai`` (Responses), all bundled in the binary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agents.conftest import GENERATIONS, npm_bin
from tests.agents.harness import Stack, check_round_trip, run_cli

PROVIDERS = {
    "/v1/chat/completions": "@ai-sdk/openai-compatible",
    "/v1/messages": "@ai-sdk/anthropic",
    "/v1/responses": "@ai-sdk/openai",
}


def config(stack: Stack, package: str) -> dict[str, object]:
    model = {"name": stack.model, "tool_call": True, "reasoning": True}
    provider = {"npm": package, "name": "minimax-m2-proxy", "models": {stack.model: model},
                "options": {"baseURL": f"{stack.proxy.url}/v1", "apiKey": "agents"}}  # fmt: skip
    return {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "permission": {"*": "allow"},
        "model": f"proxy/{stack.model}",
        "small_model": f"proxy/{stack.model}",
        "provider": {"proxy": provider},
    }


@pytest.mark.parametrize("model", GENERATIONS)
@pytest.mark.parametrize("route", PROVIDERS)
def test_opencode_round_trip(make_stack: Callable[..., Stack], clients: Path, route: str) -> None:
    stack = make_stack()
    path = stack.home / "opencode.json"
    path.write_text(json.dumps(config(stack, PROVIDERS[route])))
    argv = [npm_bin(clients, "opencode"), "run", stack.prompt]
    check_round_trip(stack, run_cli(stack, argv, {"OPENCODE_CONFIG": str(path)}), route)
