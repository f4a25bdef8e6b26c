"""The log formatters write what ``logging.Formatter`` with the same layout wrote, though
they build the line themselves and keep the time's text for a second."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from proxy.logs import JsonFormatter, TextFormatter

_LAYOUT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Within a second, the next second, a second much later, and back again.
_TIMES = [1714564800.0, 1714564800.5, 1714564800.999, 1714564801.001, 1714600000.25, 1714564800.7]


def _record(created: float, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("proxy.access", logging.INFO, __file__, 1, "n=%d", (3,), exc_info)
    record.created, record.msecs = created, (created - int(created)) * 1000
    record.request_id = "req_1"
    record.__dict__.update(extra)
    return record


def test_text_lines_are_unchanged() -> None:
    text, reference = TextFormatter(), logging.Formatter(_LAYOUT)
    for created in _TIMES:
        for exc in (False, True):
            for fields in ({}, {"route": "/v1/messages", "stream": True, "latency_ms": 12.5}):
                want = reference.format(_record(created, exc, fields=fields))
                if fields:
                    want += " " + " ".join(f"{k}={v}" for k, v in fields.items())
                assert text.format(_record(created, exc, fields=fields)) == want


def test_json_lines_are_unchanged() -> None:
    formatter = JsonFormatter()
    for created in _TIMES:
        record = _record(created, fields={"status": 200, "stream": False})
        line = json.loads(formatter.format(record))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        assert line == {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": "info",
            "logger": "proxy.access",
            "request_id": "req_1",
            "message": "n=3",
            "status": 200,
            "stream": False,
        }
