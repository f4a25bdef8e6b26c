"""Streaming traces: what the backend sent and what the parser made of it.

With ``ENABLE_STREAMING_DEBUG=true`` every request's raw backend deltas and
the parser events made from them are appended to ``STREAMING_DEBUG_PATH`` as
one JSON line per request; ``minimax-m2-proxy replay`` (``replay.py``) reads
them back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

import parser

__all__ = ["Trace", "TraceWriter", "event_json"]

_enc = msgspec.json.Encoder().encode


def event_json(event: parser.Event) -> list[Any]:
    return [type(event).__name__, *dataclasses.astuple(event)]


@dataclasses.dataclass(slots=True)
class Trace:
    request_id: str
    dialect: str
    tools: list[Any] | None
    starts_in_think: bool
    grammar: str = "m2"  # the parser's grammar, so a replay reads the deltas the same way
    deltas: list[str] = dataclasses.field(default_factory=list)
    events: list[list[Any]] = dataclasses.field(default_factory=list)
    finish_reason: str | None = None

    def record(self, delta: str, events: list[parser.Event]) -> None:
        self.deltas.append(delta)
        self.events.extend(event_json(e) for e in events)


class TraceWriter:
    """Appends traces to a file from one worker thread, never blocking the event loop."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace-writer")
        self._lock = threading.Lock()

    def _write(self, line: bytes) -> None:
        with self._lock, open(self.path, "ab") as f:
            f.write(line)

    async def write(self, trace: Trace) -> None:
        record = {"time": time.time(), **dataclasses.asdict(trace)}
        line = _enc(record) + b"\n"
        await asyncio.get_running_loop().run_in_executor(self._pool, self._write, line)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
