"""Fuzzing the request decoders and the parser with hypothesis.

Run from the repository root::

    .venv/bin/python benchmarks/bench_fuzz.py            # full: >= 100,000 examples for the
                                                         # decoders and for the parser; writes
                                                         # the fuzz section of RESULTS.md
    .venv/bin/python benchmarks/bench_fuzz.py --quick    # a few thousand, writes nothing
    .venv/bin/python benchmarks/bench_fuzz.py --scale 3  # three times the full budget

Targets (each runs in shards over ``--jobs`` processes, hypothesis seeds fixed per shard):

- ``openai_plan`` / ``anthropic_plan``: ``proxy.chat.reader.plan_openai`` and
  ``proxy.messages.reader.plan_anthropic`` with default settings on arbitrary JSON-like bodies
  (mostly well-formed requests with any field replaced by anything, plus arbitrary JSON). The
  contract: a ``Plan`` whose backend body is plain JSON, or a ``ProxyError`` with a 4xx status;
  nothing else.
- ``read_json``: the whole request-decoding path as the proxy runs it, ``Proxy.read_json`` on
  raw body bytes (random bytes; valid bodies with bytes inserted, deleted or replaced, including
  invalid UTF-8; nesting up to 5,000 deep) followed by both planners. Same contract.
- ``parser_tags``: text built from tag pieces and markup characters, fed in an arbitrary
  chunking: ``StreamParser`` never raises, the events are the same for the chunking and for the
  whole text, ``parse()`` agrees with them, every tool call's argument fragments join to its
  arguments JSON, and the output text is a subsequence of the input.
- ``parser_unicode``: arbitrary Unicode text in arbitrary chunks: the same properties.
- ``parser_calls``: generated tool calls rendered as the MiniMax-M2 template does, in arbitrary
  chunks: the calls come back with the arguments they were rendered from.

A failing example is counted and the run goes on; each distinct failure (exception type and
where it was raised) is reported once, with its smallest example.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as _dt
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"

# Full-run budgets per target; the decoders and the parser each get well over 100,000.
BUDGET = {
    "openai_plan": 45_000,
    "anthropic_plan": 45_000,
    "read_json": 20_000,
    "parser_tags": 60_000,
    "parser_unicode": 30_000,
    "parser_calls": 20_000,
}
DECODERS = ("openai_plan", "anthropic_plan", "read_json")
PARSER = ("parser_tags", "parser_unicode", "parser_calls")
SHARD = 5_000  # examples per shard


class Failures:
    """Distinct failures, each with its smallest example."""

    def __init__(self) -> None:
        self.count = 0
        self.distinct: dict[str, dict[str, Any]] = {}

    def add(self, exc: BaseException, example: Any) -> None:
        self.count += 1
        frames = traceback.extract_tb(exc.__traceback__)
        inner = [f for f in frames if "/proxy/" in f.filename or "/parser/" in f.filename]
        where = inner[-1] if inner else (frames[-1] if frames else None)
        loc = f"{Path(where.filename).name}:{where.lineno}" if where else "?"
        key = f"{type(exc).__name__} at {loc}"
        text = repr(example)
        seen = self.distinct.get(key)
        if seen is None or len(text) < len(seen["example"]):
            self.distinct[key] = {
                "message": str(exc).splitlines()[0][:300] if str(exc) else "",
                "example": text[:1500],
                "count": (seen or {}).get("count", 0) + 1,
            }
        else:
            seen["count"] += 1


def run_shard(target: str, examples: int, seed: int) -> dict[str, Any]:
    """Run one shard of a target in this process; the counts and the failures."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    fails = Failures()
    ran = 0
    body: Callable[..., None]
    strategy: dict[str, Any]

    if target in ("openai_plan", "anthropic_plan"):
        from tests.test_faults import anthropic_bodies, decode_or_refuse, openai_bodies

        which = target.split("_")[0]
        strategy = {"value": openai_bodies if which == "openai" else anthropic_bodies}

        def body(value: Any) -> None:
            decode_or_refuse(which, value)

    elif target == "read_json":
        from proxy.config import Settings
        from proxy.service import Proxy
        from tests.test_faults import anthropic_bodies, decode_or_refuse, openai_bodies

        proxy = Proxy(Settings.from_env({}, env_file=None))
        valid = st.one_of(openai_bodies, anthropic_bodies).map(
            lambda v: json.dumps(v, ensure_ascii=False).encode()
        )

        @st.composite
        def mutated(draw: st.DrawFn) -> bytes:
            data = bytearray(draw(valid))
            for _ in range(draw(st.integers(1, 4))):
                at = draw(st.integers(0, len(data)))
                op = draw(st.sampled_from(["insert", "delete", "replace"]))
                byte = draw(st.sampled_from([0xFF, 0xC3, 0x80, 0xED, 0xA0, 0x00, 0x22, 0x5C]))
                if op == "insert":
                    data[at:at] = bytes([byte])
                elif at < len(data):
                    data[at : at + 1] = b"" if op == "delete" else bytes([byte])
            return bytes(data)

        nested = st.tuples(st.integers(1, 5000), st.sampled_from(["[", '{"a":'])).map(
            lambda t: (
                b'{"messages": [{"role": "user", "content": '
                + t[1].encode() * t[0]
                + b"1"
                + (b"]" if t[1] == "[" else b"}") * t[0]
                + b"}]}"
            )
        )
        strategy = {"value": st.one_of(st.binary(max_size=300), mutated(), valid, nested)}

        def body(value: bytes) -> None:
            decoded = _read_json(proxy, value)
            if decoded is not None:
                decode_or_refuse("openai", decoded)
                decode_or_refuse("anthropic", decoded)

    else:
        import parser
        from tests.parser.helpers import (
            assert_calls_equal,
            check_agrees_with_parse,
            check_call_invariants,
            feed_all,
            is_subsequence,
            joined_text,
            normalize,
            split_at,
            summarize_events,
        )
        from tests.parser.test_properties import (
            ARBITRARY_TOOLS,
            arbitrary_text,
            cuts_for,
            scenarios,
        )

        if target == "parser_calls":
            strategy = {"sc": scenarios(), "data": st.data()}

            def body(sc: Any, data: Any) -> None:
                kw = {"tools": sc.tools, "starts_in_think": sc.starts_in_think}
                chunks = split_at(sc.text, data.draw(cuts_for(sc.text)))
                events = feed_all(chunks, **kw)
                check_call_invariants(events)
                reasoning, content, calls = summarize_events(events)
                assert (reasoning, content) == (sc.reasoning, sc.content)
                assert_calls_equal(sc.calls, [(name, args) for _, name, args, _ in calls])
                assert normalize(events) == normalize(feed_all([sc.text], **kw))
                result = parser.parse(sc.text, **kw)
                assert [c.arguments_json for c in result.tool_calls] == [j for *_, j in calls]

        else:
            text = (
                arbitrary_text
                if target == "parser_tags"
                else st.text(st.characters(exclude_categories=["Cs"]), max_size=300)
            )
            strategy = {"text": text, "data": st.data(), "think": st.booleans()}

            def body(text: str, data: Any, think: bool) -> None:
                kw = {"tools": ARBITRARY_TOOLS, "starts_in_think": think}
                chunks = split_at(text, data.draw(cuts_for(text)))
                events = feed_all(chunks, **kw)
                assert normalize(events) == normalize(feed_all([text], **kw))
                check_call_invariants(events)
                check_agrees_with_parse(events, text, **kw)
                assert is_subsequence(joined_text(events), text)

    def wrapped(**kw: Any) -> None:
        nonlocal ran
        ran += 1
        try:
            body(**kw)
        except Exception as exc:
            example = {k: v for k, v in kw.items() if k != "data"}
            fails.add(exc, example)

    test = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )(hseed(seed)(given(**strategy)(wrapped)))
    t0 = time.perf_counter()
    test()
    return {
        "target": target,
        "examples": ran,
        "failures": fails.count,
        "distinct": fails.distinct,
        "seconds": time.perf_counter() - t0,
    }


def _read_json(proxy: Any, raw: bytes) -> Any:
    """``Proxy.read_json`` on a request carrying ``raw``; None when it is a ProxyError."""
    from starlette.requests import Request

    from proxy.errors import ProxyError

    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"content-length", str(len(raw)).encode())],
    }
    coro = proxy.read_json(Request(scope, receive))
    try:
        coro.send(None)  # nothing in it waits: it completes on the first step
    except StopIteration as done:
        return done.value
    except ProxyError as err:
        assert 400 <= err.status < 500, err.status
        return None
    coro.close()
    raise AssertionError("read_json suspended")


def merge(shards: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in shards:
        t = out.setdefault(
            s["target"], {"examples": 0, "failures": 0, "distinct": {}, "seconds": 0.0}
        )
        t["examples"] += s["examples"]
        t["failures"] += s["failures"]
        t["seconds"] += s["seconds"]
        for key, d in s["distinct"].items():
            seen = t["distinct"].get(key)
            if seen is None or len(d["example"]) < len(seen["example"]):
                t["distinct"][key] = {**d, "count": d["count"] + (seen or {}).get("count", 0)}
            else:
                seen["count"] += d["count"]
    return out


def write_results(
    totals: dict[str, dict[str, Any]], wall: float, jobs: int, command: str, hyp: str
) -> None:
    m = common.machine()
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")

    def group(names: tuple[str, ...]) -> tuple[int, int]:
        return (
            sum(totals[n]["examples"] for n in names if n in totals),
            sum(totals[n]["failures"] for n in names if n in totals),
        )

    dec, dec_f = group(DECODERS)
    par, par_f = group(PARSER)

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    lines = [
        "## Fuzzing (hypothesis)",
        "",
        f"Measured {when} with `{command}` (code from {common.source_note()}); hypothesis {hyp}, "
        f"{jobs} processes, {wall:.0f} s wall time. Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['python']}, {m['os']}.",
        "",
        "### Targets (issue 6)",
        "",
        "| target | measured | required | met |",
        "|---|---:|---|---|",
        f"| Request-decoder examples | {dec:,} | >= 100,000 | {yes(dec >= 100_000)} |",
        f"| Parser examples | {par:,} | >= 100,000 | {yes(par >= 100_000)} |",
        f"| Failing examples, decoders | {dec_f:,} | 0 | {yes(dec_f == 0)} |",
        f"| Failing examples, parser | {par_f:,} | 0 | {yes(par_f == 0)} |",
        "",
        "### Per target",
        "",
        "| target | examples | failing | distinct failures | CPU s | examples/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in totals.items():
        rate = t["examples"] / t["seconds"] if t["seconds"] else 0
        lines.append(
            f"| `{name}` | {t['examples']:,} | {t['failures']:,} | {len(t['distinct'])} | "
            f"{t['seconds']:.0f} | {rate:,.0f} |"
        )
    found = [(n, k, d) for n, t in totals.items() for k, d in t["distinct"].items()]
    if found:
        lines += ["", "### Failures found (smallest example of each)", ""]
        for name, key, d in found:
            example = d["example"] if len(d["example"]) <= 300 else d["example"][:300] + " …"
            lines.append(
                f"- `{name}`: **{key}** ({d['count']:,} examples): {d['message']}. "
                f"Example: `{example}`"
            )
    lines += [
        "",
        "### Method",
        "",
        "- Decoders: `plan_openai` / `plan_anthropic` with `Settings.from_env({}, "
        "env_file=None)` on bodies from the strategies in `tests/test_faults.py` (well-formed "
        "requests whose every field is sometimes replaced by any JSON value, and arbitrary JSON "
        "weighted towards the decoders' own keys). Contract: a `Plan` whose backend body "
        "`json.dumps` accepts, or a `ProxyError` with a 4xx status.",
        "- `read_json`: `Proxy.read_json` on a Starlette request carrying random bytes, valid "
        "bodies with 1-4 bytes inserted, deleted or replaced (0xFF, a lone 0xC3, a surrogate "
        "half, NUL, quote, backslash) and bodies nested 1-5,000 deep; then both planners.",
        "- Parser: the strategies of `tests/parser/test_properties.py` (tag pieces, generated "
        "tool calls rendered like the chat template) and arbitrary Unicode, each cut at up to "
        "30 random points; checked with the helpers of `tests/parser/helpers.py`.",
        "- Sensitivity: on 2026-11-27 the `--quick` run (2,000 examples a target) against the "
        "code of commit `31fe3e8`, before the fixes of `1a829e2`, found 26 failing "
        "`openai_plan` examples (`TypeError` for a non-string `role`) and 87 failing "
        "`read_json` ones (`UnicodeDecodeError` for invalid UTF-8, `RecursionError` for deep "
        "nesting, the same `TypeError`): every one a 500 through the proxy.",
        "- Generation phase only (no shrinking); a failure is recorded and the run continues; "
        "the smallest example per distinct failure (exception type and the proxy/parser line "
        "that raised it) is kept. `make test` runs a 400-example version of the decoder fuzz "
        "(`tests/test_faults.py`).",
    ]
    common.write_section(RESULTS_PATH, "fuzz", "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 examples per target; no writing")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the full budgets")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    ap.add_argument("--targets", help="comma-separated subset of: " + ", ".join(BUDGET))
    ap.add_argument("--seed", type=int, default=0, help="base hypothesis seed")
    ap.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    ap.add_argument("--wait-quiet", type=float, default=0, help="wait up to N s for idle CPU")
    args = ap.parse_args()
    if args.wait_quiet:
        asyncio.run(common.wait_quiet(args.wait_quiet))
    import hypothesis

    targets = args.targets.split(",") if args.targets else list(BUDGET)
    tasks: list[tuple[str, int, int]] = []
    for name in targets:
        total = 2_000 if args.quick else int(BUDGET[name] * args.scale)
        n_shards = max(1, -(-total // SHARD))
        for i in range(n_shards):
            size = total // n_shards + (i < total % n_shards)
            tasks.append((name, size, args.seed * 1000 + i))
    print(
        f"fuzz: {sum(t[1] for t in tasks):,} examples in {len(tasks)} shards over "
        f"{args.jobs} processes",
        flush=True,
    )
    t0 = time.perf_counter()
    shards = []
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_shard, *t) for t in tasks]
        for f in concurrent.futures.as_completed(futures):
            s = f.result()
            shards.append(s)
            print(
                f"  {s['target']:15} {s['examples']:7,} examples {s['failures']:6,} failing "
                f"{s['seconds']:6.1f} s",
                flush=True,
            )
    wall = time.perf_counter() - t0
    totals = merge(shards)
    totals = {n: totals[n] for n in BUDGET if n in totals}
    print()
    print(f"{'target':16} {'examples':>9} {'failing':>8} {'distinct':>8} {'CPU s':>7}")
    for name, t in totals.items():
        print(
            f"{name:16} {t['examples']:9,} {t['failures']:8,} {len(t['distinct']):8} "
            f"{t['seconds']:7.1f}"
        )
        for key, d in t["distinct"].items():
            print(f"    {key} ({d['count']:,}): {d['message']}\n      e.g. {d['example'][:400]}")
    print(f"wall time {wall:.1f} s")
    if not args.quick and not args.no_write and not args.targets:
        command = ".venv/bin/python benchmarks/bench_fuzz.py " + " ".join(sys.argv[1:])
        write_results(totals, wall, args.jobs, command.strip(), hypothesis.__version__)
        print(f"wrote {RESULTS_PATH} (fuzz section)")
    failing = sum(t["failures"] for t in totals.values())
    sys.exit(0 if failing == 0 else 1)


if __name__ == "__main__":
    main()
