"""However the backend splits its output, clients see the same result."""

from __future__ import annotations

import itertools
import json
from typing import Any

import openai
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.sim import SimServer
from tests.servers import ProxyServer
from tests.test_openai import collect

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "edit",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "line": {"type": "integer"},
                    "opts": {"type": "object"},
                    "new": {"type": "string"},
                },
            },
        },
    }
]

RAW = (
    "The user wants a fix. Values: a < b && c > d; 東京 🎉.\n</think>\n\n"
    "I'll edit the file now.\n"
    "<minimax:tool_call>\n"
    '<invoke name="edit">\n'
    '<parameter name="path">src/app.py</parameter>\n'
    '<parameter name="line">42</parameter>\n'
    '<parameter name="opts">{"dry": false, "tags": ["a", "b"]}</parameter>\n'
    '<parameter name="new">    if x < 3:\n        return "</parameter> is text"\n</parameter>\n'
    "</invoke>\n"
    '<invoke name="edit">\n'
    '<parameter name="path">README.md</parameter>\n'
    "</invoke>\n"
    "</minimax:tool_call>"
)


def script(chunks: list[int]) -> str:
    return "SIM_SCRIPT:" + json.dumps({"raw": RAW, "chunks": chunks})


def result(client: openai.OpenAI, chunks: list[int], split: bool) -> dict[str, Any]:
    req: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": script(chunks)}],
        "tools": TOOLS,
    }
    if split:
        req["extra_body"] = {"reasoning_split": True}
    got = collect(client.chat.completions.create(**req, stream=True))
    calls = [(c["name"], json.loads(c["arguments"])) for c in got["calls"].values()]
    return {
        "content": got["content"],
        "reasoning": got["reasoning"],
        "calls": calls,
        "finish": got["finish_reason"],
    }


@st.composite
def chunkings(draw: st.DrawFn) -> list[int]:
    cuts = draw(st.lists(st.integers(1, len(RAW) - 1), max_size=60, unique=True))
    bounds = [0, *sorted(cuts), len(RAW)]
    return [b - a for a, b in itertools.pairwise(bounds)]


def test_whole_transcript_result(proxy_server: ProxyServer, sim_server: SimServer) -> None:
    with openai.OpenAI(base_url=proxy_server.url + "/v1", api_key="x", max_retries=0) as c:
        r = result(c, [len(RAW)], split=True)
    assert r["reasoning"] == "The user wants a fix. Values: a < b && c > d; 東京 🎉."
    assert r["content"] == "I'll edit the file now."
    assert r["finish"] == "tool_calls"
    assert r["calls"] == [
        (
            "edit",
            {
                "path": "src/app.py",
                "line": 42,
                "opts": {"dry": False, "tags": ["a", "b"]},
                "new": '    if x < 3:\n        return "</parameter> is text"\n',
            },
        ),
        ("edit", {"path": "README.md"}),
    ]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=chunkings(), split=st.booleans())
def test_any_backend_chunking_gives_the_same_result(
    proxy_server: ProxyServer, sim_server: SimServer, chunks: list[int], split: bool
) -> None:
    with openai.OpenAI(base_url=proxy_server.url + "/v1", api_key="x", max_retries=0) as c:
        assert result(c, chunks, split) == result(c, [len(RAW)], split)


def test_one_character_per_chunk(proxy_server: ProxyServer, sim_server: SimServer) -> None:
    with openai.OpenAI(base_url=proxy_server.url + "/v1", api_key="x", max_retries=0) as c:
        for split in (False, True):
            assert result(c, [1] * len(RAW), split) == result(c, [len(RAW)], split)
