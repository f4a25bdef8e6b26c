"""Tests for proxy.sse: every split of a stream gives the same events as the whole stream."""

from __future__ import annotations

import itertools
import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sse import DEFAULT_MAX_EVENT_SIZE, SSEDecoder, SSEError, SSEEvent


def decode_chunks(chunks: list[bytes], **kwargs: int) -> list[SSEEvent]:
    decoder = SSEDecoder(**kwargs)
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def chunk(content: str, finish: str | None = None) -> str:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return json.dumps(body, ensure_ascii=False)


TABBY = "".join(f"data: {chunk(t)}\n\n" for t in ["Let me", " think", "</think>\n\n", "Hi"])
TABBY_STREAM = (
    TABBY[:40]  # the ping arrives between two halves of one read: it is still a whole line
    + TABBY[40:]
    + ": ping - 2025-01-01 00:00:00.000000\n\n"
    + f"data: {chunk('', 'stop')}\n\n"
    + "data: [DONE]\n\n"
)
TABBY_EVENTS = [
    *(SSEEvent(chunk(t)) for t in ["Let me", " think", "</think>\n\n", "Hi"]),
    SSEEvent(chunk("", "stop")),
    SSEEvent("[DONE]"),
]

# (stream bytes, expected events)
CORPUS: dict[str, tuple[bytes, list[SSEEvent]]] = {
    "tabby": (TABBY_STREAM.encode(), TABBY_EVENTS),
    "crlf": (TABBY_STREAM.replace("\n", "\r\n").encode(), TABBY_EVENTS),
    "cr_only": (TABBY_STREAM.replace("\n", "\r").encode(), TABBY_EVENTS),
    "multiline_data": (
        b"data: line one\ndata:line two\ndata:  indented\ndata\n\n",
        [SSEEvent("line one\nline two\n indented\n")],
    ),
    "cjk_emoji": (
        'data: {"content": "你好，世界 🌍🚀 naïve"}\r\n\r\ndata: é\n\n'.encode(),
        [SSEEvent('{"content": "你好，世界 🌍🚀 naïve"}'), SSEEvent("é")],
    ),
    "error_event": (
        b'event: error\ndata: {"error": {"message": "boom"}}\n\ndata: [DONE]\n\n',
        [SSEEvent('{"error": {"message": "boom"}}', "error"), SSEEvent("[DONE]")],
    ),
    "event_type_resets": (
        b"event: a\ndata: 1\n\ndata: 2\n\nevent: b\n\ndata: 3\n\n",
        [SSEEvent("1", "a"), SSEEvent("2"), SSEEvent("3")],
    ),
    "no_data_not_dispatched": (b"event: x\n\nid: 7\n\nretry: 10\n\n: hi\n\n\n\n", []),
    "malformed_lines_ignored": (
        b"data {oops\nno colon at all\n\ndata: ok\nbogus: field\n\n",
        [SSEEvent("ok")],
    ),
    "bom_and_u2028": (
        "\ufeffdata: a\u2028b\u0085c\n\n".encode(),
        [SSEEvent("a\u2028b\u0085c")],
    ),
    "mixed_line_ends": (
        b"data: a\r\ndata: b\rdata: c\n\r\n\r\rdata: d\r\r",
        [SSEEvent("a\nb\nc"), SSEEvent("d")],
    ),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_whole_stream(name: str) -> None:
    data, expected = CORPUS[name]
    assert decode_chunks([data]) == expected


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_one_byte_at_a_time(name: str) -> None:
    data, expected = CORPUS[name]
    assert decode_chunks([data[i : i + 1] for i in range(len(data))]) == expected


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_every_two_and_three_way_split(name: str) -> None:
    data, expected = CORPUS[name]
    for i in range(len(data) + 1):
        assert decode_chunks([data[:i], data[i:]]) == expected, i
        j = (i * 7 + 3) % (len(data) + 1)
        assert decode_chunks(split_at(data, [i, j])) == expected, (i, j)


@settings(max_examples=300)
@given(name=st.sampled_from(sorted(CORPUS)), cuts=st.lists(st.integers(0, 10_000), max_size=40))
def test_random_splits(name: str, cuts: list[int]) -> None:
    data, expected = CORPUS[name]
    assert decode_chunks(split_at(data, cuts)) == expected


def reference_decode(data: bytes) -> list[SSEEvent]:
    """The spec, read literally, on the whole stream at once (plus our close() leniency)."""
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)[:-1]  # the last item never ended
    events: list[SSEEvent] = []
    event, buf = "", None
    for line in [*lines, ""]:
        if line == "":
            if buf is not None:
                events.append(SSEEvent(buf, event or "message"))
            event, buf = "", None
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                buf = value if buf is None else f"{buf}\n{value}"
            elif name == "event":
                event = value
    return events


LINES = st.one_of(
    st.sampled_from(["", ": ping", "id: 1", "retry: 5", "data", "event: error", "data {x"]),
    st.builds(
        "data: {}".format, st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"))
    ),
    st.builds("data:{}".format, st.text(alphabet="ab 你🌍:")),
)


@settings(max_examples=300)
@given(
    lines=st.lists(st.tuples(LINES, st.sampled_from(["\n", "\r\n", "\r"])), max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
)
def test_matches_reference_on_generated_streams(
    lines: list[tuple[str, str]], cuts: list[int]
) -> None:
    data = "".join(line + end for line, end in lines).encode()
    assert decode_chunks(split_at(data, cuts)) == reference_decode(data)


def test_cr_at_end_of_read_dispatches_without_waiting() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [SSEEvent("a")]
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [SSEEvent("b")]


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert decode_chunks([b"data: a\xffb\n\n"]) == [SSEEvent("a\ufffdb")]
    # An invalid continuation split across reads, and a sequence truncated by a line end.
    assert decode_chunks([b"data: \xe4\xbd", b"x\n\n"]) == [SSEEvent("\ufffdx")]
    assert decode_chunks([b"data: \xf0\x9f\n\n"]) == [SSEEvent("\ufffd")]


def test_close_dispatches_ended_lines_and_drops_a_cut_line() -> None:
    assert decode_chunks([b"data: [DONE]\n"]) == [SSEEvent("[DONE]")]
    assert decode_chunks([b'data: {"a": 1}\n\ndata: {"b"']) == [SSEEvent('{"a": 1}')]
    assert decode_chunks([b"data: \xe4\xbd"]) == []


def test_use_after_close_raises() -> None:
    decoder = SSEDecoder()
    decoder.close()
    with pytest.raises(SSEError, match=r"^feed\(\) after close\(\)$"):
        decoder.feed(b"data: x\n\n")
    with pytest.raises(SSEError, match=r"^close\(\) called twice$"):
        decoder.close()


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([b"data: " + b"x" * 10], "SSE line longer than 8 characters"),
        ([b"data: xx", b"xxxxxx"], "SSE line longer than 8 characters"),
        ([b"data: " + b"x" * 10 + b"\n\n"], "SSE event larger than 8 characters"),
        ([b"data:xxx\r\n" * 3], "SSE event larger than 8 characters"),
        ([b": " + b"x" * 10 + b"\r\n"], "SSE line longer than 8 characters"),
    ],
)
def test_size_cap(chunks: list[bytes], message: str) -> None:
    decoder = SSEDecoder(max_event_size=8)
    with pytest.raises(SSEError, match=rf"^{message}$"):
        for c in chunks:
            decoder.feed(c)


def test_size_cap_default_and_validation() -> None:
    assert DEFAULT_MAX_EVENT_SIZE == 16 * 1024 * 1024
    with pytest.raises(ValueError, match=r"^max_event_size must be positive$"):
        SSEDecoder(max_event_size=0)


def test_long_line_in_small_reads_is_linear() -> None:
    # A quadratic decoder copies ~130 GB here and takes minutes; a linear one takes ~0.1 s.
    line = b"data: " + b"x" * (4 * 1024 * 1024) + b"\n\n"
    decoder = SSEDecoder()
    start = time.perf_counter()
    events = [e for i in range(0, len(line), 64) for e in decoder.feed(line[i : i + 64])]
    assert time.perf_counter() - start < 5
    assert len(events) == 1 and len(events[0].data) == 4 * 1024 * 1024
