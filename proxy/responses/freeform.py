"""A custom (freeform) tool's input, taken out of the JSON the model writes as it comes.

The model sees a custom tool as a function with one string parameter, ``input``
(``reader._CUSTOM_PARAMETERS``), so its arguments stream as ``{"input": "…"}``
fragments. :class:`InputStream` turns them into the plain text of that string,
piece by piece, for ``response.custom_tool_call_input.delta``: each fragment is
decoded once; only an escape cut in two (``\\``, ``\\u00``, half a surrogate
pair) waits for the next fragment. Arguments of another shape (another key
first, a value that is not a string) stream nothing; the item's ``.done``
then carries the whole input, as before.
"""

from __future__ import annotations

import json
import re

__all__ = ["InputStream"]

_HEAD = re.compile(r'\s*\{\s*"input"\s*:\s*"')
_HEAD_MAX = 64  # a head longer than this without the match is not ours
_QUOTE = re.compile(r'(?<!\\)(?:\\\\)*"')


class InputStream:
    """Feed argument fragments; get the input's text as it grows."""

    __slots__ = ("_head", "_held", "_state", "sent")

    def __init__(self) -> None:
        self._state = "head"  # head -> text -> tail; or off
        self._head = ""
        self._held = ""  # raw JSON string text held back: a cut escape
        self.sent: list[str] = []  # the text given out so far

    def feed(self, fragment: str) -> str:
        if self._state == "head":
            self._head += fragment
            found = _HEAD.match(self._head)
            if found is None:
                if len(self._head) > _HEAD_MAX or not _could_be_head(self._head):
                    self._state = "off"
                return ""
            self._state, fragment = "text", self._head[found.end() :]
            self._head = ""
        if self._state != "text":
            return ""
        raw = self._held + fragment
        end = _QUOTE.search(raw)
        if end is not None:  # the string closes here; what follows is not input
            raw, self._state = raw[: end.end() - 1], "tail"
        text = self._decode(raw, final=end is not None)
        if text:
            self.sent.append(text)
        return text

    def _decode(self, raw: str, final: bool) -> str:
        cut = len(raw) if final else _safe_end(raw)
        try:
            text: str = json.loads('"' + raw[:cut] + '"')
        except ValueError:
            self._state = "off"  # not JSON we can read: the whole input comes at the end
            return ""
        high = bool(text) and "\ud800" <= text[-1] <= "\udbff"
        if high and not final and raw[cut - 6 : cut - 4] == "\\u":
            cut -= 6  # half a surrogate pair: wait for the other half
            text = text[:-1]
        self._held = raw[cut:]
        return text


def _could_be_head(head: str) -> bool:
    """Whether more text could still make ``head`` match ``{"input": "``."""
    squeezed = "".join(head.split())
    target = '{"input":"'
    return target.startswith(squeezed[: len(target)]) and len(squeezed) < len(target)


def _safe_end(raw: str) -> int:
    """Where ``raw`` can be cut without splitting an escape sequence."""
    at = raw.rfind("\\")
    if at < 0:
        return len(raw)
    run = at - len(raw[:at].rstrip("\\"))  # backslashes before this one
    if run % 2:  # this one is escaped by the one before: no escape starts here
        return len(raw)
    need = 6 if raw[at + 1 : at + 2] == "u" else 2
    return at if len(raw) - at < need else len(raw)
