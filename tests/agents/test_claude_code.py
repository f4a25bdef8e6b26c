"""Claude Code (Anthropic Messages) runs a Bash round trip through the proxy, headless."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agents.conftest import GENERATIONS, npm_bin
from tests.agents.harness import Stack, check_round_trip, run_cli


@pytest.mark.parametrize("model", GENERATIONS)
def test_claude_code_round_trip(make_stack: Callable[..., Stack], clients: Path) -> None:
    stack = make_stack()
    m = stack.model
    env = {
        "ANTHROPIC_BASE_URL": stack.proxy.url,
        "ANTHROPIC_AUTH_TOKEN": "agents",
        "ANTHROPIC_MODEL": m,
        "ANTHROPIC_SMALL_FAST_MODEL": m,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": m,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": m,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": m,
        "IS_SANDBOX": "1",  # lets --dangerously-skip-permissions run as root (CI is root)
    }
    argv = [npm_bin(clients, "claude-code"), "-p", stack.prompt, "--dangerously-skip-permissions"]
    check_round_trip(stack, run_cli(stack, argv, env), "/v1/messages")
