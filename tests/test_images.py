"""Images and documents never break a session (BACKEND_IMAGES), on every API.

MiniMax-M2 reads text only, and the simulated backend (like a text-only vLLM)
refuses image parts unless it is started ``multimodal``. Claude Code's Read tool
returns a PNG as an image block inside a ``tool_result``; from then on every
request of the session carries it.
"""

from __future__ import annotations

import base64
import random
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from proxy.request import data_url, image_note
from proxy.sim import SimServer, start_sim
from tests.servers import Background
from tests.test_operations import metric


def png(width: int, height: int) -> bytes:
    """A real PNG of noise (so it does not compress): what a screenshot costs."""
    rng = random.Random(7)
    rows = b"".join(b"\0" + rng.randbytes(width * 3) for _ in range(height))

    def block(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + block(b"IHDR", header) + block(b"IDAT", zlib.compress(rows))


PNG = png(128, 128)
B64 = base64.b64encode(PNG).decode()
NOTE = f"[image omitted: image/png, {round(len(PNG) / 1024)} KB; this model reads text only]"
PDF = base64.b64encode(b"%PDF-1.4\n" + b"x" * 3000).decode()
PDF_NOTE = "[document omitted: application/pdf, 3 KB; this model reads text only]"
READ = {"name": "Read", "input_schema": {"type": "object", "properties": {
    "file_path": {"type": "string"}}, "required": ["file_path"]}}  # fmt: skip


def image_block(source: dict[str, Any] | None = None) -> dict[str, Any]:
    base64_png = {"type": "base64", "media_type": "image/png", "data": B64}
    return {"type": "image", "source": source or base64_png}


def claude_code_session() -> list[dict[str, Any]]:
    """Claude Code after Read of a PNG: the image is in a tool result, and stays there."""
    return [
        {"role": "user", "content": "What is in shot.png?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should read the file.", "signature": "x"},
            {"type": "tool_use", "id": "toolu_1", "name": "Read",
             "input": {"file_path": "/tmp/shot.png"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [image_block()]}]},
    ]  # fmt: skip


def test_note_text_and_data_urls() -> None:
    assert image_note("image/png", 49152) == (
        "[image omitted: image/png, 48 KB; this model reads text only]"
    )
    assert image_note(None, None, "document") == "[document omitted; this model reads text only]"
    assert image_note("image/jpeg", 3 * 1024 * 1024) == (
        "[image omitted: image/jpeg, 3.0 MB; this model reads text only]"
    )
    assert data_url("data:image/png;base64," + B64) == ("image/png", len(PNG))
    assert data_url("https://example.com/a/cat.jpg?x=1") == ("image/jpeg", None)
    assert data_url("data:text/plain,hello") == ("text/plain", 5)


@pytest.fixture
def ant(proxy_server: Any, sim: SimServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=proxy_server.url, api_key="x", max_retries=0) as c:
        yield c


def test_claude_code_read_of_a_png_keeps_the_session_alive(
    ant: anthropic.Anthropic, sim: SimServer, proxy_server: Any
) -> None:
    before = metric(httpx.get(proxy_server.url + "/metrics").text, "minimax_proxy_media_total",
                    kind="image", sent_as="note")  # fmt: skip
    messages = claude_code_session()
    with ant.messages.stream(model="MiniMax-M2", max_tokens=4096, tools=[READ],
                             messages=messages) as s:  # fmt: skip
        answer = s.get_final_message()
    assert answer.stop_reason == "end_turn"
    tool_msg = sim.requests[-1].body["messages"][-1]
    assert tool_msg == {"role": "tool", "tool_call_id": "toolu_1", "content": NOTE}
    # The next turns still carry the image in the history, and still work.
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in answer.content]},
        {"role": "user", "content": [
            {"type": "text", "text": "And this one, and the spec?"},
            image_block({"type": "url", "url": "https://example.com/diagram.png"}),
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf",
                                            "data": PDF}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                            "data": "plain text is read as it is"}}]},
    ]  # fmt: skip
    assert ant.messages.create(model="m", max_tokens=4096, messages=messages).content
    sent = sim.requests[-1].body["messages"]
    assert sent[-1] == {"role": "user", "content": "\n\n".join([
        "And this one, and the spec?",
        "[image omitted: image/png; this model reads text only]",
        PDF_NOTE, "plain text is read as it is"])}  # fmt: skip
    assert sent[-3]["content"] == NOTE
    after = metric(httpx.get(proxy_server.url + "/metrics").text, "minimax_proxy_media_total",
                   kind="image", sent_as="note")  # fmt: skip
    assert after - before == 3  # the PNG twice (it stays in the history), the URL once


@pytest.fixture
def multimodal(bg: Background) -> Iterator[SimServer]:
    server = bg.run(start_sim(multimodal=True))
    yield server
    bg.run(server.close())


def test_pass_sends_images_as_image_url_parts(make_proxy: Any, multimodal: SimServer) -> None:
    proxy = make_proxy(multimodal.url, BACKEND_IMAGES="pass")
    messages = claude_code_session()
    messages[0]["content"] = [
        {"type": "text", "text": "What is in shot.png? Compare with"},
        image_block({"type": "url", "url": "https://example.com/ref.png"}),
    ]
    with anthropic.Anthropic(base_url=proxy.url, api_key="x", max_retries=0) as c:
        assert c.messages.create(model="m", max_tokens=4096, tools=[READ], messages=messages)
    sent = multimodal.requests[-1].body["messages"]
    assert sent[0]["content"] == [
        {"type": "text", "text": "What is in shot.png? Compare with"},
        {"type": "image_url", "image_url": {"url": "https://example.com/ref.png"}},
    ]
    assert sent[-1]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + B64}}
    ]
    text = httpx.get(proxy.url + "/metrics").text
    assert metric(text, "minimax_proxy_media_total", kind="image", sent_as="pass") >= 2


def test_pass_to_a_text_only_backend_is_a_clear_400(make_proxy: Any, sim: SimServer) -> None:
    proxy = make_proxy(BACKEND_IMAGES="pass")
    body = {"model": "m", "max_tokens": 10, "messages": claude_code_session(), "tools": [READ]}
    r = httpx.post(proxy.url + "/v1/messages", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "not a multimodal model" in r.json()["error"]["message"]


def _openai_parts() -> list[dict[str, Any]]:
    return [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + B64}},
    ]


def test_openai_image_url_part_becomes_a_note(client: openai.OpenAI, sim: SimServer) -> None:
    tools = [{"type": "function", "function": {"name": "shot", "parameters": {"type": "object"}}}]
    client.chat.completions.create(model="m", messages=[
        {"role": "user", "content": _openai_parts()},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "shot", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [
            {"type": "text", "text": "took it"},
            {"type": "image_url", "image_url": {"url": "https://example.com/s.jpg"}},
            {"type": "file", "file": {"file_data": "data:application/pdf;base64," + PDF}}]},
    ], tools=tools)  # fmt: skip
    sent = sim.requests[-1].body["messages"]
    assert sent[0]["content"] == [{"type": "text", "text": "Describe"},
                                  {"type": "text", "text": NOTE}]  # fmt: skip
    assert sent[2]["content"] == [
        {"type": "text", "text": "took it"},
        {"type": "text", "text": "[image omitted: image/jpeg; this model reads text only]"},
        {"type": "text", "text": PDF_NOTE},
    ]


def test_openai_image_url_part_passes(make_proxy: Any, multimodal: SimServer) -> None:
    proxy = make_proxy(multimodal.url, BACKEND_IMAGES="pass")
    with openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as c:
        c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": _openai_parts()}], stream=True
        ).close()
    assert multimodal.requests[-1].body["messages"][0]["content"] == _openai_parts()


@pytest.mark.parametrize("image", [{}, {"url": 3}, None])
def test_openai_image_part_without_url_is_400(
    client: openai.OpenAI, sim: SimServer, image: Any
) -> None:
    part = {"type": "image_url", "image_url": image}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": [part]}])
    assert "messages[0].content[0]: an image_url part needs image_url.url" in str(info.value)
    assert not sim.requests or sim.requests[-1].path != "/v1/chat/completions"


def test_anthropic_image_in_an_assistant_turn_is_400(ant: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        ant.messages.create(model="m", max_tokens=10, messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [image_block()]},
            {"role": "user", "content": "and?"}])  # fmt: skip
    assert "messages.1.content.0: image blocks belong in user turns" in str(info.value)
