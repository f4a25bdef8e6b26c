"""Reading a call's name: ``"name"``, ``'name'`` or ``name``, shared by the grammars."""

from __future__ import annotations

__all__ = ["MAX_NAME", "MAX_NAME_AREA", "complete_name", "name_accepts"]

NAME_FORBIDDEN = frozenset("<>[]\n\"'")
MAX_NAME = 256
MAX_NAME_AREA = MAX_NAME + 16  # quotes and spaces around the name


def name_accepts(area: str, c: str) -> bool:
    """May ``c`` follow ``area`` in a name area such as ``"name"`` or ``'name'``?"""
    lead = area.lstrip(" \t")
    if lead[:1] in ("'", '"'):
        if lead.find(lead[0], 1) > 0:
            return c in " \t"  # only spaces between the closing quote and ">"
        return c == lead[0] or c not in NAME_FORBIDDEN
    return c not in NAME_FORBIDDEN or (not lead and c in ("'", '"'))


def complete_name(area: str) -> str | None:
    """The name in ``"name"``, ``'name'`` or ``name`` (spaces around allowed), or None."""
    area = area.strip(" \t")
    if area[:1] in ("'", '"'):
        if len(area) < 2 or area[-1] != area[0]:
            return None
        area = area[1:-1]
    name = area.strip(" \t")
    if not name or len(name) > MAX_NAME or any(q in name for q in "'\""):
        return None
    return name
