"""Settings: environment over .env over defaults; bad values stop startup with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from proxy.config import ConfigError, Settings


def test_defaults_match_the_design() -> None:
    s = Settings.from_env({}, env_file=None)
    assert (s.host, s.port, s.backend_url) == ("0.0.0.0", 8001, "http://localhost:8000")
    assert s.backend_timeout == 300 and s.backend_connect_timeout == 10
    assert s.backend_idle_timeout == 300  # follows TABBY_TIMEOUT unless set
    assert s.model_aliases == ("minimax-m2", "MiniMax-M2")
    assert s.auth_api_key is None and s.backend_model is None
    assert s.starts_in_think and s.thinking_passthrough and s.reasoning_split
    assert s.tool_translation and s.anthropic_thinking_blocks
    assert not s.session_store_enabled and s.session_store_backend == "sqlite"
    assert s.session_ttl_seconds == 3600 and s.max_messages_per_session == 8
    assert s.require_session_for_repair and s.require_tool_link_validation
    assert s.max_request_bytes == 16 * 1024 * 1024
    assert s.cors_origins == ()
    assert s.thinking_signature_secret  # generated when unset


def test_env_file_and_environment(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nexport TABBY_URL='http://10.0.0.5:5000/'\nPORT=9000\nMODEL_ALIASES=a, b\n"
        'AUTH_API_KEY="k"\nTABBY_TIMEOUT=60\n'
    )
    s = Settings.from_env({"PORT": "9100"}, env_file=env_file)
    assert s.backend_url == "http://10.0.0.5:5000"  # trailing slash dropped
    assert s.port == 9100  # the environment wins over .env
    assert s.model_aliases == ("a", "b") and s.auth_api_key == "k"
    assert s.model_alias_targets == ()
    mapped = Settings.from_env({"MODEL_ALIASES": "a, fast = MiniMax-M2.5"}, env_file=None)
    assert mapped.model_aliases == ("a", "fast")
    assert mapped.model_alias_targets == (("fast", "MiniMax-M2.5"),)
    assert s.backend_idle_timeout == 60


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"TABBY_URL": "localhost:8000"}, "TABBY_URL"),
        ({"TABBY_TIMEOUT": "0"}, "TABBY_TIMEOUT"),
        ({"STARTS_IN_THINK": "maybe"}, "STARTS_IN_THINK"),
        ({"SESSION_STORE_BACKEND": "postgres"}, "SESSION_STORE_BACKEND"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"MAX_REQUEST_BYTES": "10"}, "MAX_REQUEST_BYTES"),
        ({"MODEL_ALIASES": "fast="}, "MODEL_ALIASES"),
        ({"MODEL_ALIASES": "=MiniMax-M2"}, "MODEL_ALIASES"),
        ({"EVENT_LOOP": "trio"}, "EVENT_LOOP"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{needle}="):
        Settings.from_env(env, env_file=None)


def test_bad_env_file_line(tmp_path: Path) -> None:
    bad = tmp_path / ".env"
    bad.write_text("PORT=1\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r":2: expected KEY=VALUE$"):
        Settings.from_env({}, env_file=bad)


def test_server_refuses_to_start_on_bad_config() -> None:
    env = {**os.environ, "PORT": "not-a-port"}
    out = subprocess.run(
        [sys.executable, "-m", "proxy"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert "configuration error: PORT='not-a-port'" in out.stderr


def test_every_setting_is_documented() -> None:
    root = Path(__file__).resolve().parent.parent
    example = (root / ".env.example").read_text()
    readme = (root / "README.md").read_text()
    for f in fields(Settings):
        env = f.metadata["env"]
        assert f"{env}=" in example, f"{env} missing from .env.example"
        assert f"`{env}`" in readme, f"{env} missing from the README"


def test_backend_tool_choice_and_images() -> None:
    s = Settings.from_env({}, env_file=None)
    assert (s.backend_tool_choice, s.backend_images) == ("auto-detect", "auto")
    s = Settings.from_env({"BACKEND_TOOL_CHOICE": "None", "BACKEND_IMAGES": "pass"}, env_file=None)
    assert (s.backend_tool_choice, s.backend_images) == ("none", "pass")
    with pytest.raises(ConfigError, match=r"^BACKEND_TOOL_CHOICE='auto': expected one of"):
        Settings.from_env({"BACKEND_TOOL_CHOICE": "auto"}, env_file=None)
