"""Errors raised by the parser.

Model output never makes the parser raise: malformed markup becomes content.
Only misuse of the API does (for example ``feed()`` after ``close()``).
"""

from __future__ import annotations

__all__ = ["ParserError", "ParserUsageError"]


class ParserError(Exception):
    """Base class of every error this package raises."""


class ParserUsageError(ParserError):
    """The caller used the API wrongly, e.g. ``feed()`` after ``close()``."""
