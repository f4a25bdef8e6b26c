"""Carrying MiniMax-M2's reasoning through a client that keeps no server state.

MiniMax-M2 needs its earlier thinking back in a tool loop. Codex keeps every
reasoning item it receives and sends it back on the next request, with
``encrypted_content`` byte for byte, so that field can carry the thinking
with no state here: ``mm1.`` + base64url(zlib(text)) + ``.`` + an HMAC of it
under ``THINKING_SIGNATURE_SECRET``. It is opaque to the client (as OpenAI's
own is), not secret; the MAC means no one can forge thinking into it. A
value this proxy did not mint (OpenAI's ``gAAAA…``, another secret's, a
damaged one) is ignored, never an error: the summary or content of the same
item still carries the text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import zlib
from typing import Any

__all__ = ["open_reasoning", "read_reasoning", "seal_reasoning"]

_PREFIX = "mm1."
_MAX_TEXT = 16 * 1024 * 1024  # a reasoning text larger than this is not ours


def _mac(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), (_PREFIX + payload).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def seal_reasoning(secret: str, text: str) -> str:
    payload = base64.urlsafe_b64encode(zlib.compress(text.encode(), 6)).decode().rstrip("=")
    return f"{_PREFIX}{payload}.{_mac(secret, payload)}"


def open_reasoning(secret: str, value: Any) -> str | None:
    """The text inside a value this proxy sealed, or None for anything else."""
    if not isinstance(value, str) or not value.startswith(_PREFIX):
        return None
    payload, _, mac = value[len(_PREFIX) :].rpartition(".")
    if not payload or not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    try:
        packed = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        inflate = zlib.decompressobj()
        raw = inflate.decompress(packed, _MAX_TEXT)
        if inflate.unconsumed_tail:
            return None
        return raw.decode()
    except (binascii.Error, ValueError, zlib.error, UnicodeDecodeError):
        return None


def read_reasoning(item: dict[str, Any], secret: str) -> str:
    """A reasoning item's text: our sealed value, else ``reasoning_text`` content, else
    the summary (Codex shows summaries and replays them; the Agents SDK replays all)."""
    sealed = open_reasoning(secret, item.get("encrypted_content"))
    if sealed is not None:
        return sealed
    for key, kind in (("content", "reasoning_text"), ("summary", "summary_text")):
        parts = item.get(key)
        if isinstance(parts, list):
            texts = [
                p["text"]
                for p in parts
                if isinstance(p, dict)
                and p.get("type", kind) == kind
                and isinstance(p.get("text"), str)
            ]
            if texts:
                return "\n\n".join(texts)
    return ""
