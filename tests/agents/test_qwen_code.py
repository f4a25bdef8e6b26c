"""qwen-code runs a run_shell_command round trip through the proxy, headless, on all three APIs.

One install speaks chat completions (``--auth-type openai``), Responses (``openai-responses``)
and Anthropic Messages (``anthropic``), each configured by environment variables.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agents.conftest import npm_bin
from tests.agents.harness import Stack, check_round_trip, run_cli

AUTH = {
    "/v1/chat/completions": "openai",
    "/v1/responses": "openai-responses",
    "/v1/messages": "anthropic",
}
SETTINGS = {
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
}


@pytest.mark.parametrize("route", AUTH)
def test_qwen_code_round_trip(make_stack: Callable[..., Stack], clients: Path, route: str) -> None:
    stack = make_stack()
    (stack.home / ".qwen").mkdir()
    (stack.home / ".qwen" / "settings.json").write_text(json.dumps(SETTINGS))
    env = {
        "OPENAI_BASE_URL": f"{stack.proxy.url}/v1",
        "OPENAI_API_KEY": "agents",
        "OPENAI_MODEL": stack.model,
        "ANTHROPIC_BASE_URL": stack.proxy.url,
        "ANTHROPIC_API_KEY": "agents",
        "ANTHROPIC_MODEL": stack.model,
    }
    argv = [npm_bin(clients, "qwen-code"), "--auth-type", AUTH[route], "-m", stack.model,
            "--yolo", stack.prompt]  # fmt: skip
    check_round_trip(stack, run_cli(stack, argv, env), route)
