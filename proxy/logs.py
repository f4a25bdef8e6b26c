"""Logging: plain text, or one JSON object per line with ``LOG_FORMAT=json``.

Every line logged while a request is being served carries its request id
(a context variable, inherited by the tasks that stream the response). No
header value is ever logged, so API keys cannot leak into logs.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec

from .config import Settings

__all__ = ["REQUEST_ID", "setup_logging"]

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_enc = msgspec.json.Encoder().encode
_TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class _RequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class _Seconds:
    """A record time's text to the second, made once a second: ``strftime`` costs ~1 µs."""

    __slots__ = ("_convert", "_format", "_last")

    def __init__(self, format: str, convert: Callable[[float], time.struct_time]) -> None:
        self._format, self._convert = format, convert
        self._last = (-1, "")  # one tuple, replaced whole: a thread reads a matching pair

    def __call__(self, created: float) -> str:
        second = int(created)
        last = self._last
        if last[0] != second:
            last = self._last = (second, time.strftime(self._format, self._convert(second)))
        return last[1]


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._seconds = _Seconds("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": f"{self._seconds(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _enc(entry).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id] message``, then the record's ``fields`` as ``k=v``,
    the time as ``logging.Formatter`` writes it (local, ``2024-05-01 12:00:00,123``)."""

    def __init__(self) -> None:
        super().__init__(_TEXT)  # what formatMessage writes; logging reads it (usesTime)
        self._seconds = _Seconds(self.default_time_format, self.converter)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return f"{self._seconds(record.created)},{int(record.msecs):03d}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        # _TEXT % record.__dict__, without the cost of a %-format with a mapping
        rid = getattr(record, "request_id", "-")
        return f"{record.asctime} {record.levelname} {record.name} [{rid}] {record.message}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join([f"{k}={v}" for k, v in fields.items()])
        return line


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(_RequestId())
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
