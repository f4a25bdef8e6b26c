"""Streaming traces and their replay: reproduce a bad tool call offline from a user's trace.

With ``ENABLE_STREAMING_DEBUG=true`` every request's raw backend deltas and
the parser events made from them are appended to ``STREAMING_DEBUG_PATH`` as
one JSON line per request. ``minimax-m2-proxy replay TRACE`` feeds a recorded
request's deltas through the parser again and prints the result as the
OpenAI and the Anthropic API would return it, and whether today's parser
makes the same events as the recorded run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

import parser

__all__ = ["Trace", "TraceWriter", "main"]

_enc = msgspec.json.Encoder().encode


def event_json(event: parser.Event) -> list[Any]:
    return [type(event).__name__, *dataclasses.astuple(event)]


@dataclasses.dataclass(slots=True)
class Trace:
    request_id: str
    dialect: str
    tools: list[Any] | None
    starts_in_think: bool
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


def replay(record: dict[str, Any]) -> tuple[bytes, bytes, bool]:
    """(OpenAI body, Anthropic body, same events as recorded) for one trace record."""
    from .dialects import ANTHROPIC, OPENAI
    from .request import Plan
    from .turn import Turn

    events: list[parser.Event] = []
    p = parser.StreamParser(record.get("tools"), starts_in_think=record["starts_in_think"])
    for delta in record["deltas"]:
        events += p.feed(delta)
    events += p.close()
    same = [event_json(e) for e in events] == record.get("events")
    turn = Turn(record.get("tools"), record["starts_in_think"])
    turn.finish_reason = record.get("finish_reason")
    plan = Plan({}, False, "replay", record.get("tools"), split=True, max_calls=None)
    from .config import Settings

    settings = Settings.from_env({}, env_file=None)
    bodies = []
    for dialect in (OPENAI, ANTHROPIC):
        result = dialect.result(plan, settings)
        shaper = dialect.shaper(plan)
        result.ops(shaper.feed(events) + shaper.close())
        bodies.append(result.body(turn, shaper.calls))
    return bodies[0], bodies[1], same


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="minimax-m2-proxy replay", description=__doc__)
    ap.add_argument("trace", help="a STREAMING_DEBUG_PATH file")
    ap.add_argument("--request-id", help="only this request (default: every request)")
    args = ap.parse_args(argv)
    found = 0
    with open(args.trace, "rb") as f:
        for line in f:
            record = msgspec.json.decode(line)
            if args.request_id and record["request_id"] != args.request_id:
                continue
            found += 1
            openai_body, anthropic_body, same = replay(record)
            print(
                f"== {record['request_id']} ({record['dialect']}, {len(record['deltas'])} deltas)"
            )
            print("raw:", "".join(record["deltas"]))
            print("openai:", msgspec.json.format(openai_body).decode())
            print("anthropic:", msgspec.json.format(anthropic_body).decode())
            print("events as recorded:" if same else "events DIFFER from the recorded run:", same)
    if not found:
        sys.exit("replay: no matching request in the trace")
