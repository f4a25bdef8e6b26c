"""The rules that differ between the two MiniMax protocols, in one place.

MiniMax-M2 (and M2.1, M2.5, M2.7) writes ``<think>`` and ``<minimax:tool_call>``;
MiniMax-M3 writes ``<mm:think>`` and ``]<]minimax[>[<tool_call>`` blocks, has three
thinking modes, and keeps thinking on every assistant turn of the history
(``../shared/reference/minimax-m3.md``). This module decides, per request:

- which grammar the backend model writes (``MODEL_GRAMMAR``: ``auto`` reads the
  model name the request goes to, or the ``root`` the backend reports for it);
- for M3, the ``thinking_mode`` sent in ``chat_template_kwargs`` and so where the
  parser starts (inside reasoning only for ``enabled``);
- how an assistant turn's thinking goes back to the backend in the history, and
  how it is shown inside OpenAI content when it passes through.

The API readers, the session store and the service ask this module; none of them
tests the grammar's name itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import Settings
from .errors import ProxyError

__all__ = [
    "M2",
    "M3",
    "THINKING_MODES",
    "Grammar",
    "apply_thinking_mode",
    "by_name",
    "choose",
    "names_m3",
    "per_grammar_settings",
    "rules",
    "thinking_mode",
]

THINKING_MODES = ("enabled", "disabled", "adaptive")
# MiniMax-M3, minimax-m3, MiniMaxAI/MiniMax-M3, MiniMax-M3-NVFP4, /models/MiniMax-M3: the
# last path segment starts with the name (a digit after it would be another model).
_M3_NAME = re.compile(r"(?:^|/)minimax-m3(?![0-9])[^/]*$", re.IGNORECASE)
# reasoning_effort / reasoning.effort -> thinking_mode; any other (higher) effort: enabled.
_EFFORT = {"none": "disabled", "minimal": "disabled", "low": "adaptive"}


def names_m3(name: Any) -> bool:
    """Whether a model name (or a checkpoint path) names a MiniMax-M3 model."""
    return isinstance(name, str) and _M3_NAME.search(name.strip()) is not None


@dataclass(frozen=True, slots=True)
class Grammar:
    """One protocol's service rules.

    Attributes:
        name: ``m2`` or ``m3``, the parser's ``grammar`` argument.
        opener, closer: the reasoning tags the model writes and the template reads back.
        shown_open, shown_close: reasoning passed through in OpenAI content looks like
            ``shown_open + reasoning + shown_close + text``.
        every_turn: the template keeps thinking on every assistant turn (M3), not only in
            the current tool loop (M2), so session repair restores it everywhere.
    """

    name: str
    opener: str
    closer: str
    shown_open: str
    shown_close: str
    every_turn: bool

    def history(self, reasoning: str | None, text: str) -> str:
        """An assistant turn's content as the template reads it back: the reasoning
        (from a field, or already inline in ``text``) before the visible text."""
        if self.name == "m2":
            return _m2_history(reasoning, text)
        return _m3_history(reasoning, text)

    def has_thinking(self, content: str) -> bool:
        """Whether a history content already carries its reasoning inline."""
        return self.closer in content


M2 = Grammar("m2", "<think>", "</think>", "<think>\n", "\n</think>\n\n", every_turn=False)
M3 = Grammar("m3", "<mm:think>", "</mm:think>", "<mm:think>\n", "\n</mm:think>\n\n", True)
_BY_NAME = {"m2": M2, "m3": M3}


def by_name(name: str) -> Grammar:
    """The grammar called ``name`` (anything but ``m3`` is M2, as in old traces)."""
    return _BY_NAME.get(name, M2)


def rules(settings: Settings) -> Grammar:
    """The grammar of a request's settings (see :func:`per_grammar_settings`)."""
    return by_name(settings.model_grammar)


def choose(setting: str, model: str | None, root: str | None = None) -> Grammar:
    """The grammar for a request whose backend model is ``model`` (``root``: the
    checkpoint the backend reports for it). ``setting`` is MODEL_GRAMMAR."""
    if setting in _BY_NAME:
        return _BY_NAME[setting]
    return M3 if names_m3(model) or names_m3(root) else M2


def per_grammar_settings(settings: Settings) -> dict[str, Settings]:
    """The settings a request of each grammar is read with: MODEL_GRAMMAR and an
    ``auto`` BACKEND_IMAGES resolved (images pass to M3, which reads them; M2 gets
    text notes). Made once per app, so a request pays nothing for it."""
    out = {}
    for grammar in _BY_NAME.values():
        images = settings.backend_images
        if images == "auto":
            images = "pass" if grammar is M3 else "text"
        out[grammar.name] = dataclasses.replace(
            settings, model_grammar=grammar.name, backend_images=images
        )
    return out


def _m2_history(reasoning: str | None, text: str) -> str:
    """MiniMax-M2's template splits the reasoning out of ``<think>…</think>`` again."""
    if "</think>" in text:
        head = text.split("</think>", 1)[0]
        return text if "<think>" in head else "<think>\n" + text
    reasoning = (reasoning or "").strip()
    if not reasoning:
        return text
    return f"<think>\n{reasoning}\n</think>\n\n{text.lstrip()}"


def _m3_history(reasoning: str | None, text: str) -> str:
    """``<mm:think>R</mm:think>`` + text, no newlines added (as the M3 template renders a
    turn); no tag at all for a turn without reasoning (the template writes its own bare
    closer). Reasoning already inline in ``text`` (passed through, or a template-style
    ``R</mm:think>text``) is taken out and put back in that form."""
    head, sep, rest = text.partition(M3.closer)
    if sep:
        inline = head.split(M3.opener, 1)[1] if M3.opener in head else head
        if inline.strip():
            reasoning, text = inline, rest.lstrip()
        else:
            text = rest.lstrip()
    reasoning = (reasoning or "").strip()
    if not reasoning:
        return text
    return f"{M3.opener}{reasoning}{M3.closer}{text}"


def _field(body: Mapping[str, Any], name: str) -> Any:
    """A request field, top level or inside a literal ``extra_body``."""
    value = body.get(name)
    extra = body.get("extra_body")
    if value is None and isinstance(extra, Mapping):
        value = extra.get(name)
    return value


def _bad(message: str, param: str) -> ProxyError:
    return ProxyError(400, message, param=param)


def thinking_mode(body: Mapping[str, Any], settings: Settings) -> str:
    """An M3 request's thinking mode; the first source that speaks wins:
    ``chat_template_kwargs.thinking_mode``, ``thinking.type``, ``reasoning_effort`` or
    ``reasoning.effort``, then THINKING_MODE.

    Raises:
        ProxyError: 400 for a mode or type that is not one of the three.
    """
    kwargs = _field(body, "chat_template_kwargs")
    mode = kwargs.get("thinking_mode") if isinstance(kwargs, Mapping) else None
    if mode is not None:
        if mode not in THINKING_MODES:
            raise _bad("chat_template_kwargs.thinking_mode must be enabled, disabled or "
                       "adaptive", "chat_template_kwargs")  # fmt: skip
        return str(mode)
    thinking = _field(body, "thinking")
    if thinking is not None:
        kind = thinking.get("type") if isinstance(thinking, Mapping) else None
        if kind not in THINKING_MODES:
            raise _bad('thinking must be {"type": "enabled" | "disabled" | "adaptive"}',
                       "thinking")  # fmt: skip
        return str(kind)
    effort = _field(body, "reasoning_effort")
    reasoning = body.get("reasoning")
    if effort is None and isinstance(reasoning, Mapping):
        effort = reasoning.get("effort")
    if isinstance(effort, str):
        return _EFFORT.get(effort.lower(), "enabled")
    return settings.thinking_mode


def apply_thinking_mode(
    grammar: Grammar, body: Mapping[str, Any], backend: dict[str, Any], settings: Settings
) -> bool | None:
    """Send an M3 request's thinking mode to the backend (merged into the client's
    ``chat_template_kwargs``); the parser's ``starts_in_think`` to match, or None for
    M2 (STARTS_IN_THINK decides, as always).

    Raises:
        ProxyError: 400 for a thinking mode that is not one of the three.
    """
    if grammar is not M3:
        return None
    mode = thinking_mode(body, settings)
    kwargs = backend.get("chat_template_kwargs")
    backend["chat_template_kwargs"] = {
        **(kwargs if isinstance(kwargs, dict) else {}),
        "thinking_mode": mode,
    }
    # The template ends an enabled prompt with <mm:think>: the output starts inside reasoning.
    return mode == "enabled"
