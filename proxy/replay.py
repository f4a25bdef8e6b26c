"""Replay a streaming trace: reproduce a bad tool call offline from a user's trace.

``minimax-m2-proxy replay TRACE`` feeds a recorded request's deltas through
the parser again and prints the result as each API would return it, and
whether today's parser makes the same events as the recorded run. A trace
of any API replays as all three (chat completions, Messages, Responses).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

import parser

from .chat import CHAT
from .config import Settings
from .grammar import by_name
from .messages import MESSAGES
from .request import Plan
from .responses import RESPONSES
from .trace import event_json
from .turn import Turn

__all__ = ["main", "replay"]


def replay(record: dict[str, Any]) -> tuple[dict[str, bytes], bool]:
    """(each API's body by dialect name, same events as recorded) for one trace record."""
    events: list[parser.Event] = []
    grammar = by_name(record.get("grammar", "m2"))  # traces from before M3 are M2's
    p = parser.StreamParser(
        record.get("tools"), starts_in_think=record["starts_in_think"], grammar=grammar.name
    )
    for delta in record["deltas"]:
        events += p.feed(delta)
    events += p.close()
    same = [event_json(e) for e in events] == record.get("events")
    turn = Turn(record.get("tools"), record["starts_in_think"], grammar=grammar)
    turn.finish_reason = record.get("finish_reason")
    settings = Settings.from_env({}, env_file=None)
    plan = Plan({}, False, "replay", record.get("tools"), split=True, max_calls=None)
    # The Responses answer needs the request's echo fields: those of an empty request.
    plan.extra = RESPONSES.plan({"input": []}, settings, None).extra
    bodies = {}
    for dialect in (CHAT, MESSAGES, RESPONSES):
        result = dialect.result(plan, settings)
        shaper = dialect.shaper(plan)
        result.ops(shaper.feed(events) + shaper.close())
        bodies[dialect.name] = result.body(turn, shaper.calls)
    return bodies, same


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
            bodies, same = replay(record)
            print(
                f"== {record['request_id']} ({record['dialect']}, {len(record['deltas'])} deltas)"
            )
            print("raw:", "".join(record["deltas"]))
            for name, body in bodies.items():
                print(f"{name}:", msgspec.json.format(body).decode())
            print("events as recorded:" if same else "events DIFFER from the recorded run:", same)
    if not found:
        sys.exit("replay: no matching request in the trace")
