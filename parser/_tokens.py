"""Removal of MiniMax-M2 special tokens that leak into the text.

A backend that does not skip special tokens passes the template's turn
markers through. They are removed before anything else looks at the text,
so they can neither show up in output nor break a tag in two.
"""

from __future__ import annotations

import re

__all__ = ["TokenFilter"]

_TOKENS = ("]~!b[", "]~b]", "[e~[")
_TOKEN_RE = re.compile("|".join(re.escape(t) for t in _TOKENS))
# Proper prefixes of a token: text that may still become one.
_PREFIXES = frozenset(t[:k] for t in _TOKENS for k in range(1, len(t)))
_LONGEST_PREFIX = max(len(t) for t in _TOKENS) - 1


class TokenFilter:
    """Removes the tokens from a stream of deltas, holding back a possible partial one."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = ""

    def feed(self, text: str) -> str:
        if self.held:
            text = self.held + text
            self.held = ""
        elif "]" not in text and "[" not in text:
            return text
        parts: list[str] = []
        pos = 0
        for m in _TOKEN_RE.finditer(text):
            parts.append(text[pos : m.start()])
            pos = m.end()
        # Leftmost-first removal, as on the whole text: only a suffix that is
        # a proper prefix of a token is undecided.
        end = len(text)
        for start in range(max(pos, end - _LONGEST_PREFIX), end):
            if text[start:] in _PREFIXES:
                self.held = text[start:]
                end = start
                break
        parts.append(text[pos:end])
        return "".join(parts)

    def close(self) -> str:
        held, self.held = self.held, ""
        return held
