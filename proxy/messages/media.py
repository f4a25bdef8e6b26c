"""Anthropic image and document blocks as the backend gets them (BACKEND_IMAGES).

An image becomes an OpenAI ``image_url`` part (base64 sources as a ``data:`` URL)
when images pass, else a text note; a document becomes a note, except one whose
source is text, which this model reads as it is. See :mod:`proxy.request`.
"""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..request import bad, base64_size, data_url, image_part, media_note_part

__all__ = ["media_part"]


def media_part(block: dict[str, Any], settings: Settings, where: str) -> dict[str, Any]:
    """An ``image`` or ``document`` block as one OpenAI content part.

    Raises:
        ProxyError: 400 for a source that is not an object of a known type.
    """
    kind = str(block["type"])
    source = block.get("source")
    if not isinstance(source, dict):
        raise bad(f"{where}.source: must be an object")
    stype = source.get("type")
    media_type = source.get("media_type") if isinstance(source.get("media_type"), str) else None
    data = source.get("data")
    if stype == "base64" and isinstance(data, str):
        if kind == "image" and settings.backend_images == "pass":
            url = f"data:{media_type or 'image/png'};base64,{data}"
            return image_part({"image_url": {"url": url}}, settings, where)
        return media_note_part(media_type, base64_size(data), kind)
    if stype == "url" and isinstance(source.get("url"), str):
        url = source["url"]
        if kind == "image" and settings.backend_images == "pass":
            return image_part({"image_url": {"url": url}}, settings, where)
        return media_note_part(*data_url(url), kind)
    if stype == "file":  # the Files API: nothing this proxy can fetch
        return media_note_part(None, None, kind)
    if kind == "document" and stype == "text" and isinstance(data, str):
        return {"type": "text", "text": data}
    if kind == "document" and stype == "content" and isinstance(source.get("content"), list):
        texts = [b.get("text") for b in source["content"] if isinstance(b, dict)]
        return {"type": "text", "text": "\n".join(t for t in texts if isinstance(t, str))}
    raise bad(
        f"{where}.source: expected a base64 (with data), url, file"
        + (", text or content" if kind == "document" else "")
        + " source"
    )
