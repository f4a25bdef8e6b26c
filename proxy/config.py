"""Settings from the environment and an optional ``.env`` file.

The names are those of the original proxy, so existing deployments move over
unchanged. A bad value stops the process at startup with a message that names
the variable, never on the first request.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "Settings", "read_env_file"]


class ConfigError(ValueError):
    """A setting has a value the proxy cannot run with."""


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _bool(value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("expected true or false")


def _int(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        n = int(value.strip())
        if n < lo or (hi is not None and n > hi):
            raise ValueError(f"expected an integer from {lo}" + (f" to {hi}" if hi else ""))
        return n

    return parse


def _positive_float(value: str) -> float:
    x = float(value.strip())
    if not x > 0:
        raise ValueError("expected a number above 0")
    return x


def _url(value: str) -> str:
    url = value.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL")
    return url


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        v = value.strip().lower()
        if v not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return v

    return parse


def _list(value: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in value.split(",") if x.strip())


def _alias_entries(value: str) -> tuple[tuple[str, str], ...]:
    """``name`` or ``name=backend-model`` entries; a plain name has the target ''."""
    entries = []
    for item in _list(value):
        name, sep, target = (part.strip() for part in item.partition("="))
        if not name or (sep and not target):
            raise ValueError(f"expected name or name=backend-model, got {item!r}")
        entries.append((name, target))
    return tuple(entries)


def _alias_names(value: str) -> tuple[str, ...]:
    return tuple(name for name, _ in _alias_entries(value))


def _alias_targets(value: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, target) for name, target in _alias_entries(value) if target)


def _str(value: str) -> str:
    return value.strip()


def _optional(value: str) -> str | None:
    return value.strip() or None


_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _header_name(value: str) -> str | None:
    """An HTTP header name, or None when empty (no header)."""
    name = value.strip()
    if name and not set(name) <= _TOKEN:
        raise ValueError("expected an HTTP header name (letters, digits, '-'), or empty for none")
    return name or None


def _opt(parse: Callable[[str], Any], env: str, help: str = "") -> Any:
    return field(metadata={"parse": parse, "env": env, "help": help})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of the proxy; build with :meth:`from_env` or directly in tests."""

    host: str = _opt(_str, "HOST")
    port: int = _opt(_int(0, 65535), "PORT")
    backend_url: str = _opt(_url, "TABBY_URL")
    backend_api_key: str | None = _opt(_optional, "BACKEND_API_KEY")
    backend_timeout: float = _opt(_positive_float, "TABBY_TIMEOUT")
    backend_connect_timeout: float = _opt(_positive_float, "BACKEND_CONNECT_TIMEOUT")
    backend_idle_timeout: float | None = _opt(_positive_float, "BACKEND_IDLE_TIMEOUT")
    backend_model: str | None = _opt(_optional, "BACKEND_MODEL")
    backend_tool_choice: str = _opt(_choice("auto-detect", "none", "omit"), "BACKEND_TOOL_CHOICE")
    backend_images: str = _opt(_choice("text", "pass"), "BACKEND_IMAGES")
    backend_routing_header: str | None = _opt(_header_name, "BACKEND_ROUTING_HEADER")
    model_aliases: tuple[str, ...] = _opt(_alias_names, "MODEL_ALIASES")
    # The same variable, its ``alias=backend-model`` entries.
    model_alias_targets: tuple[tuple[str, str], ...] = _opt(_alias_targets, "MODEL_ALIASES")
    model_refresh_seconds: float = _opt(_positive_float, "MODEL_REFRESH_SECONDS")
    forward_options: tuple[str, ...] = _opt(_list, "FORWARD_OPTIONS")
    auth_api_key: str | None = _opt(_optional, "AUTH_API_KEY")
    auth_keys_file: str | None = _opt(_optional, "AUTH_KEYS_FILE")
    starts_in_think: bool = _opt(_bool, "STARTS_IN_THINK")
    thinking_passthrough: bool = _opt(_bool, "ENABLE_THINKING_PASSTHROUGH")
    reasoning_split: bool = _opt(_bool, "ENABLE_REASONING_SPLIT")
    tool_translation: bool = _opt(_bool, "ENABLE_TOOL_TRANSLATION")
    anthropic_thinking_blocks: bool = _opt(_bool, "ENABLE_ANTHROPIC_THINKING_BLOCKS")
    thinking_signature_secret: str | None = _opt(_optional, "THINKING_SIGNATURE_SECRET")
    session_store_enabled: bool = _opt(_bool, "SESSION_STORE_ENABLED")
    session_store_backend: str = _opt(_choice("memory", "sqlite", "redis"), "SESSION_STORE_BACKEND")
    session_store_path: str = _opt(_str, "SESSION_STORE_PATH")
    redis_url: str = _opt(_str, "REDIS_URL")
    limits_backend: str = _opt(_choice("memory", "redis"), "LIMITS_BACKEND")
    limit_lease_seconds: float = _opt(_positive_float, "LIMIT_LEASE_SECONDS")
    limits_on_redis_error: str = _opt(_choice("reject", "local"), "LIMITS_ON_REDIS_ERROR")
    limit_local_share: int = _opt(_int(1), "LIMIT_LOCAL_SHARE")
    limits_redis_prefix: str = _opt(_str, "LIMITS_REDIS_PREFIX")
    session_ttl_seconds: int = _opt(_int(1), "SESSION_TTL_SECONDS")
    max_messages_per_session: int = _opt(_int(1), "MAX_MESSAGES_PER_SESSION")
    require_session_for_repair: bool = _opt(_bool, "REQUIRE_SESSION_FOR_REPAIR")
    require_tool_link_validation: bool = _opt(_bool, "REQUIRE_TOOL_LINK_VALIDATION")
    max_request_bytes: int = _opt(_int(1024), "MAX_REQUEST_BYTES")
    ping_interval: float = _opt(_positive_float, "PING_INTERVAL_SECONDS")
    log_level: str = _opt(_choice("debug", "info", "warning", "error"), "LOG_LEVEL")
    log_format: str = _opt(_choice("text", "json"), "LOG_FORMAT")
    log_raw_responses: bool = _opt(_bool, "LOG_RAW_RESPONSES")
    streaming_debug: bool = _opt(_bool, "ENABLE_STREAMING_DEBUG")
    streaming_debug_path: str = _opt(_str, "STREAMING_DEBUG_PATH")
    cors_origins: tuple[str, ...] = _opt(_list, "CORS_ORIGINS")
    responses_reasoning: str = _opt(_choice("summary", "raw"), "RESPONSES_REASONING")
    responses_ttl_seconds: int = _opt(_int(1), "RESPONSES_TTL_SECONDS")
    responses_store_bytes: int = _opt(_int(0), "RESPONSES_STORE_MAX_BYTES")
    background_lease_seconds: float = _opt(_positive_float, "BACKGROUND_LEASE_SECONDS")
    event_loop: str = _opt(_choice("auto", "uvloop", "asyncio"), "EVENT_LOOP")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
    ) -> Settings:
        """Read the settings: ``environ`` (default ``os.environ``) wins over ``env_file``.

        Raises:
            ConfigError: naming the first variable whose value is unusable.
        """
        values = dict(_DEFAULTS)
        if env_file is not None and Path(env_file).is_file():
            values.update(read_env_file(Path(env_file)))
        values.update(os.environ if environ is None else environ)
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            env = f.metadata["env"]
            raw = values.get(env)
            if raw is None:
                continue
            try:
                kwargs[f.name] = f.metadata["parse"](raw)
            except ValueError as exc:
                raise ConfigError(f"{env}={raw!r}: {exc}") from None
        if "backend_idle_timeout" not in kwargs:
            kwargs["backend_idle_timeout"] = kwargs["backend_timeout"]
        if not kwargs.get("thinking_signature_secret"):
            # One secret per process is enough to recognise our own blocks
            # within a deployment; set it to share across replicas.
            kwargs["thinking_signature_secret"] = secrets.token_hex(32)
        return cls(**kwargs)


_DEFAULTS: dict[str, str] = {
    "HOST": "0.0.0.0",
    "PORT": "8001",
    "TABBY_URL": "http://localhost:8000",
    "BACKEND_API_KEY": "",
    "TABBY_TIMEOUT": "300",
    "BACKEND_CONNECT_TIMEOUT": "10",
    "BACKEND_MODEL": "",
    "BACKEND_TOOL_CHOICE": "auto-detect",
    "BACKEND_IMAGES": "text",
    "BACKEND_ROUTING_HEADER": "X-SMG-Routing-Key",
    "MODEL_ALIASES": "minimax-m2,MiniMax-M2",
    "MODEL_REFRESH_SECONDS": "300",
    "FORWARD_OPTIONS": "",
    "AUTH_API_KEY": "",
    "AUTH_KEYS_FILE": "",
    "STARTS_IN_THINK": "true",
    "ENABLE_THINKING_PASSTHROUGH": "true",
    "ENABLE_REASONING_SPLIT": "true",
    "ENABLE_TOOL_TRANSLATION": "true",
    "ENABLE_ANTHROPIC_THINKING_BLOCKS": "true",
    "THINKING_SIGNATURE_SECRET": "",
    "SESSION_STORE_ENABLED": "false",
    "SESSION_STORE_BACKEND": "sqlite",
    "SESSION_STORE_PATH": "conversations.db",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "LIMITS_BACKEND": "memory",
    "LIMIT_LEASE_SECONDS": "60",
    "LIMITS_ON_REDIS_ERROR": "reject",
    "LIMIT_LOCAL_SHARE": "2",
    "LIMITS_REDIS_PREFIX": "minimax-m2-proxy:limits",
    "SESSION_TTL_SECONDS": "3600",
    "MAX_MESSAGES_PER_SESSION": "8",
    "REQUIRE_SESSION_FOR_REPAIR": "true",
    "REQUIRE_TOOL_LINK_VALIDATION": "true",
    "MAX_REQUEST_BYTES": "16777216",
    "PING_INTERVAL_SECONDS": "15",
    "LOG_LEVEL": "info",
    "LOG_FORMAT": "text",
    "LOG_RAW_RESPONSES": "false",
    "ENABLE_STREAMING_DEBUG": "false",
    "STREAMING_DEBUG_PATH": "streaming_debug.jsonl",
    "CORS_ORIGINS": "",
    "RESPONSES_REASONING": "summary",
    "RESPONSES_TTL_SECONDS": "3600",
    "RESPONSES_STORE_MAX_BYTES": "67108864",
    "BACKGROUND_LEASE_SECONDS": "30",
    "EVENT_LOOP": "auto",
}


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; ``#`` comments, blank lines, ``export`` and quotes allowed."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values
