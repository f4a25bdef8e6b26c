"""What every API needs to read a request: checks, images, and the history MiniMax-M2 expects.

A check failing is a 400 naming the field, never a 500: clients do not
retry a 400, and the message says what to change.

Images and documents (BACKEND_IMAGES) are handled here for every API, wherever
they stand (user turns, tool results): MiniMax-M2 reads text only, and a 400 for
an image in the history would break every later request of the session (Claude
Code's Read tool returns a screenshot as an image block in a tool result). With
``text`` each one becomes a short note in its place; with ``pass`` images go to
a multimodal backend as OpenAI ``image_url`` parts; ``auto`` (the default) is
``pass`` for MiniMax-M3 models, which read images, and ``text`` for M2 (the
request's settings arrive resolved: :func:`proxy.grammar.per_grammar_settings`).
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from . import metrics
from .config import ConfigError, Settings
from .errors import ProxyError
from .grammar import M2, Grammar

__all__ = [
    "DROPPED",
    "FORWARDED",
    "MANAGED",
    "REFUSED",
    "Plan",
    "backend_body",
    "bad",
    "base64_size",
    "call_order",
    "check_forward_names",
    "check_temperature",
    "data_url",
    "echoed_model",
    "forward_options",
    "image_note",
    "image_part",
    "media_note_part",
    "offered_tools",
    "parts_content",
    "plain_tool_choice",
    "positive_int",
    "presented_key",
    "stream_and_model",
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
    extra: Any = None  # what one dialect alone needs to answer (Responses: its echo fields)
    grammar: Grammar = M2  # the protocol the backend model writes (proxy.grammar)
    starts_in_think: bool | None = None  # M3: from the thinking mode; None: STARTS_IN_THINK
    route: str | None = None  # the routing key sent to the backend (see proxy.routing)


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


def stream_and_model(body: Mapping[str, Any]) -> tuple[bool, str | None]:
    """``stream`` and ``model`` as both OpenAI APIs read them.

    Raises:
        ProxyError: 400 for a ``stream`` that is not a boolean or a ``model`` not a string.
    """
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("stream must be a boolean", "stream")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise bad("model must be a string", "model")
    return stream, model


def echoed_model(model: str | None, settings: Settings) -> str:
    """The model name an answer carries: the client's, else the first alias."""
    return model or (settings.model_aliases[0] if settings.model_aliases else "minimax-m2")


def positive_int(body: Mapping[str, Any], name: str) -> int | None:
    v = body.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise bad(f"{name} must be a positive integer, got {_enc(v).decode()}", name)
    return v


def think_content(reasoning: str | None, text: str) -> str:
    """The assistant content MiniMax-M2's template splits reasoning out of again
    (:meth:`proxy.grammar.Grammar.history` for either grammar)."""
    return M2.history(reasoning, text)


def plain_tool_choice(choice: Any) -> tuple[bool, str | None, int | None] | None:
    """(required, named tool, max calls) for the string forms of ``tool_choice`` that
    both OpenAI APIs share; None for any other value."""
    if choice is None or choice == "auto":
        return False, None, None
    if choice == "none":
        return False, None, 0
    if choice == "required":
        return True, None, None
    return None


def offered_tools(
    tools: list[dict[str, Any]] | None, choice: tuple[bool, str | None, int | None], parallel: Any
) -> tuple[list[dict[str, Any]] | None, str | None, int | None]:
    """The tools the model is offered after ``tool_choice`` (``choice``: required, named tool,
    most calls) and ``parallel_tool_calls``, the system hint, and the most calls allowed."""
    required, named, max_calls = choice
    if parallel is False:
        max_calls = 1 if max_calls is None else max_calls
    if named and tools:
        tools = [t for t in tools if t["function"]["name"] == named] or tools
    if max_calls == 0:
        tools = None
    return tools, tool_hint(required, named) if tools else None, max_calls


def tool_hint(required: bool, name: str | None) -> str | None:
    """MiniMax-M2 has no forced tool choice; a system hint is the closest honest thing."""
    if name:
        return f"You must respond by calling the tool `{name}`."
    if required:
        return "You must respond by calling one or more of the available tools."
    return None


def call_order(history: list[dict[str, Any]]) -> dict[str, int]:
    """Call id -> position in the last assistant turn: the MiniMax-M2 template matches
    tool results to calls by position only, so results go back in call order."""
    for msg in reversed(history):
        if msg["role"] == "assistant":
            calls = msg.get("tool_calls") or []
            return {c["id"]: n for n, c in enumerate(calls)}
    return {}


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{round(n / 1024)} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def image_note(media_type: str | None, size_bytes: int | None, kind: str = "image") -> str:
    """The text an image (or document: ``kind``) becomes for a text-only backend.

    ``image_note("image/png", 49152)`` is ``[image omitted: image/png, 48 KB; this model
    reads text only]``; what is unknown is left out.
    """
    details = [d for d in (media_type, None if size_bytes is None else _size(size_bytes)) if d]
    where = f": {', '.join(details)}" if details else ""
    return f"[{kind} omitted{where}; this model reads text only]"


def base64_size(data: str) -> int:
    """The decoded size of base64 text, without decoding it."""
    return len(data) * 3 // 4 - data[-2:].count("=")


def data_url(url: str) -> tuple[str | None, int | None]:
    """(media type, decoded size) of a ``data:`` URL; of another URL, the type its name implies."""
    if not url.startswith("data:"):
        return mimetypes.guess_type(url.split("?", 1)[0])[0], None
    head, _, data = url[5:].partition(",")
    media_type = head.split(";", 1)[0] or None
    if head.endswith(";base64"):
        return media_type, base64_size(data)
    return media_type, len(data)


def media_note_part(
    media_type: str | None, size_bytes: int | None, kind: str = "image"
) -> dict[str, Any]:
    """An image or document the backend will not get: a text part in its place, logged
    and counted."""
    note = image_note(media_type, size_bytes, kind)
    log.info("%s replaced by a text note: %s", kind, note)
    metrics.count_media(kind, "note")
    return {"type": "text", "text": note}


def image_part(
    part: Mapping[str, Any], settings: Settings, where: str = "image_url"
) -> dict[str, Any]:
    """An OpenAI ``image_url`` part as the backend gets it: the part itself with
    BACKEND_IMAGES=pass (or auto for M3), else :func:`media_note_part`.

    Raises:
        ProxyError: 400 when the part has no URL (``where`` names it).
    """
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str) or not url:
        raise bad(f"{where}: an image_url part needs image_url.url, a URL or data: URL")
    if settings.backend_images == "pass":
        metrics.count_media("image", "pass")
        return {
            "type": "image_url",
            "image_url": dict(image) if isinstance(image, Mapping) else {"url": url},
        }
    return media_note_part(*data_url(url))


def parts_content(parts: list[dict[str, Any]], sep: str) -> str | list[dict[str, Any]]:
    """Text parts joined into one string (what the template reads best), or the parts
    as they are when an image is among them."""
    if all(p["type"] == "text" for p in parts):
        return sep.join(p["text"] for p in parts)
    return parts
