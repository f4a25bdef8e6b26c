"""Cline's CLI runs a run_commands round trip through the proxy, headless.

Its CLI takes a base URL only for OpenAI-compatible providers: ``openai`` (chat completions) and
``openai-native`` (Responses). Every run has its own ``--data-dir`` (else Cline keeps state, and a
hub daemon, under ~/.cline). On Responses, Cline replays the assistant turn without its reasoning
(the AI SDK skips reasoning parts it did not mint), so that run uses the proxy's session repair,
which puts the thinking back by tool-call id (README, "Sessions").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agents.conftest import npm_bin
from tests.agents.harness import Stack, check_round_trip, run_cli

PROVIDERS = {"/v1/chat/completions": "openai", "/v1/responses": "openai-native"}
REPAIR = {
    "SESSION_STORE_ENABLED": "true",
    "SESSION_STORE_BACKEND": "memory",
    "REQUIRE_SESSION_FOR_REPAIR": "false",
}


@pytest.mark.parametrize("route", PROVIDERS)
def test_cline_round_trip(make_stack: Callable[..., Stack], clients: Path, route: str) -> None:
    stack = make_stack(**(REPAIR if route == "/v1/responses" else {}))
    cline, data = npm_bin(clients, "cline"), str(stack.home / "cline-data")
    auth = [cline, "auth", "-p", PROVIDERS[route], "-k", "agents", "-m", stack.model,
            "-b", f"{stack.proxy.url}/v1", "--data-dir", data]  # fmt: skip
    configured = run_cli(stack, auth, {})
    assert configured.code == 0, configured.report()
    run = run_cli(stack, [cline, "--data-dir", data, stack.prompt], {})
    check_round_trip(stack, run, route)
