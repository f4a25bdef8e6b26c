"""What both APIs need to read a request: checks, and the history MiniMax-M2 expects.

A check failing is a 400 naming the field, never a 500: clients do not
retry a 400, and the message says what to change.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .config import ConfigError, Settings
from .errors import ProxyError

__all__ = [
    "DROPPED",
    "FORWARDED",
    "MANAGED",
    "REFUSED",
    "Plan",
    "backend_body",
    "bad",
    "check_forward_names",
    "check_temperature",
    "forward_options",
    "positive_int",
    "presented_key",
    "think_content",
    "tool_hint",
]

_enc = msgspec.json.Encoder().encode
log = logging.getLogger("proxy")

# Sampling and generation options that vLLM, SGLang and TabbyAPI accept, sent to the
# backend as the client gave them (the backend checks their values). FORWARD_OPTIONS adds
# names. None of them changes the shape of the backend's stream, so parsing is unaffected.
FORWARDED = (
    # OpenAI
    "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "response_format",
    # vLLM and SGLang
    "top_k", "min_p", "repetition_penalty", "length_penalty", "ignore_eos", "min_tokens",
    "stop_token_ids", "include_stop_str_in_output", "bad_words", "allowed_token_ids",
    "truncate_prompt_tokens", "chat_template_kwargs", "priority", "structured_outputs",
    "guided_json", "guided_regex", "guided_choice", "guided_grammar", "guided_decoding_backend",
    "guided_whitespace_pattern", "regex", "ebnf", "no_stop_trim", "lora_path",
    # TabbyAPI
    "typical", "tfs", "top_a", "min_temp", "max_temp", "temp_exponent", "smoothing_factor",
    "temperature_last", "penalty_range", "mirostat_mode", "mirostat_tau", "mirostat_eta",
    "dry_multiplier", "dry_base", "dry_allowed_length", "dry_range", "dry_sequence_breakers",
    "xtc_probability", "xtc_threshold", "banned_strings", "banned_tokens", "allowed_tokens",
    "ban_eos_token", "json_schema", "regex_pattern", "grammar_string", "skew",
)  # fmt: skip
# Set by the proxy itself from the request; never copied as given.
MANAGED = frozenset(
    {"messages", "model", "stream", "stream_options", "tools", "tool_choice",
     "parallel_tool_calls", "temperature", "max_tokens", "max_completion_tokens", "n"}
)  # fmt: skip
# Several sequences per request: the proxy parses one stream into one answer (400).
REFUSED = {"best_of": 1, "use_beam_search": False}
# Would put text that is not the model's answer into the output the parser reads, or
# ask for data no API of the proxy can return: dropped, with a log line unless the value
# is the harmless default (name: (harmless value, why)).
DROPPED: dict[str, tuple[Any, str]] = {
    "echo": (False, "it would put the prompt into the output the parser reads"),
    "add_generation_prompt": (True, "the output must start where the template leaves it"),
    "continue_final_message": (False, "the output must start a turn, not continue one"),
    "chat_template": (None, "the parser relies on the MiniMax-M2 template"),
    "prompt_logprobs": (None, "no API of the proxy returns them"),
}


def check_forward_names(names: Collection[str]) -> None:
    """FORWARD_OPTIONS may not name what the proxy sets, refuses or drops.

    Raises:
        ConfigError: at startup, naming the option.
    """
    for name in names:
        if name in MANAGED or name in REFUSED or name in DROPPED:
            raise ConfigError(
                f"FORWARD_OPTIONS={','.join(names)!r}: {name} is set, refused or dropped "
                "by the proxy and cannot be forwarded"
            )


def forward_options(
    body: Mapping[str, Any],
    backend: dict[str, Any],
    settings: Settings,
    skip: Collection[str] = (),
) -> None:
    """Copy the backend options of ``body`` (or of a literal ``extra_body`` in it) to ``backend``.

    Args:
        skip: names this API maps itself or cannot return (Anthropic: ``stop``, logprobs).

    Raises:
        ProxyError: 400 for an option that asks for several sequences.
    """
    extra = body.get("extra_body")
    sources = (body, extra) if isinstance(extra, dict) else (body,)
    for source in sources:
        for name, allowed in REFUSED.items():
            value = source.get(name)
            if value is not None and value != allowed:
                raise bad(
                    f"{name} is not supported: the proxy returns one sequence per request", name
                )
        for name, (harmless, why) in DROPPED.items():
            value = source.get(name)
            if value is not None and value != harmless:
                log.info("dropped the option %s: %s", name, why)
    for names in (FORWARDED, settings.forward_options):
        for name in names:
            if name in skip:
                continue
            for source in sources:
                value = source.get(name)
                if value is not None:
                    backend.setdefault(name, value)
                    break


@dataclass(slots=True)
class Plan:
    """One request, read: what to send to the backend and how to answer."""

    backend_body: dict[str, Any]
    stream: bool
    model: str  # echoed to the client
    tools: list[Any] | None  # typed by the parser
    split: bool  # reasoning in its own fields (OpenAI) or blocks (Anthropic)
    max_calls: int | None
    include_usage: bool = False
    thinking: bool = True  # Anthropic: emit thinking blocks
    stop_sequences: tuple[str, ...] = ()
    foreign_thinking: int = 0  # Anthropic thinking blocks this proxy did not sign


def backend_body(
    messages: list[dict[str, Any]],
    model: str | None,
    temperature: float | None,
    max_tokens: int | None,
    tools: list[Any] | None,
) -> dict[str, Any]:
    """The backend request both APIs start from: always streamed, always with usage."""
    body: dict[str, Any] = {
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if model:
        body["model"] = model
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if tools:
        body["tools"] = tools
    return body


def presented_key(headers: Mapping[str, str]) -> str:
    """The API key a client sent: ``x-api-key``, else ``Authorization: Bearer``, else ''."""
    key = headers.get("x-api-key") or ""
    bearer = headers.get("authorization") or ""
    if not key and bearer[:7].lower() == "bearer ":
        key = bearer[7:].strip()
    return key


def bad(message: str, param: str | None = None) -> ProxyError:
    return ProxyError(400, message, param=param)


def check_temperature(body: Mapping[str, Any]) -> float | None:
    t = body.get("temperature")
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
        raise bad(
            f"temperature must be a number in (0, 1] for MiniMax-M2, got {_enc(t).decode()}",
            "temperature",
        )
    return float(t)


def positive_int(body: Mapping[str, Any], name: str) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise bad(f"{name} must be a positive integer, got {_enc(v).decode()}", name)
    return v


def think_content(reasoning: str | None, text: str) -> str:
    """The assistant content MiniMax-M2's template splits reasoning out of again."""
    if "</think>" in text:
        head = text.split("</think>", 1)[0]
        return text if "<think>" in head else "<think>\n" + text
    reasoning = (reasoning or "").strip()
    if not reasoning:
        return text
    return f"<think>\n{reasoning}\n</think>\n\n{text.lstrip()}"


def tool_hint(required: bool, name: str | None) -> str | None:
    """MiniMax-M2 has no forced tool choice; a system hint is the closest honest thing."""
    if name:
        return f"You must respond by calling the tool `{name}`."
    if required:
        return "You must respond by calling one or more of the available tools."
    return None
