"""The routing key sent to the backend, and what the proxy does when a backend connection
fails: real HTTP from the SDKs through the proxy to the simulated backend, which records the
headers it got (the router itself is in test_router.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from aiohttp import web

from proxy.config import ConfigError, Settings
from proxy.sim import SimServer
from tests.servers import Background, ProxyServer

HEADER = "x-smg-routing-key"


def keys(sim: SimServer, header: str = HEADER) -> list[str | None]:
    """The routing key of each chat request the backend got, in order."""
    found = []
    for rec in sim.requests:
        if rec.path == "/v1/chat/completions":
            found.append({k.lower(): v for k, v in rec.headers.items()}.get(header))
    return found


@pytest.fixture
def clients(proxy_server: ProxyServer, sim: SimServer) -> Iterator[tuple[Any, Any]]:
    url = proxy_server.url
    with (
        openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as oa,
        anthropic.Anthropic(base_url=url, api_key="x", max_retries=0) as an,
    ):
        yield oa, an


def chat_turns(oa: openai.OpenAI, first: str, turns: int, stream: bool = False) -> None:
    """A conversation of ``turns`` turns, each resending the history plus one message."""
    messages: list[Any] = [{"role": "system", "content": "You are terse."}]
    for n in range(turns):
        messages.append({"role": "user", "content": first if n == 0 else f"and then {n}?"})
        if stream:
            chunks = oa.chat.completions.create(model="m", messages=messages, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            text = (
                oa.chat.completions.create(model="m", messages=messages).choices[0].message.content
            )
        messages.append({"role": "assistant", "content": text})


def test_every_turn_of_a_conversation_has_one_key_and_conversations_differ(
    clients: tuple[Any, Any], sim: SimServer
) -> None:
    oa, _ = clients
    chat_turns(oa, "Plan the migration of the billing service.", 3)
    chat_turns(oa, "Plan the migration of the billing service.", 2, stream=True)
    chat_turns(oa, "Write a haiku about the sea.", 3)
    got = keys(sim)
    assert len(got) == 8 and all(k and len(k) == 32 for k in got)
    assert len(set(got[:5])) == 1  # one conversation (the same first message, the same key)
    assert len(set(got[5:])) == 1 and got[5] != got[0]
    for rec in sim.requests:  # a hash: nothing the client wrote leaves in the header
        assert "billing" not in str(rec.headers) and "haiku" not in str(rec.headers)


def test_the_same_hint_gives_the_same_key_on_every_api(
    clients: tuple[Any, Any], proxy_server: ProxyServer, sim: SimServer
) -> None:
    oa, an = clients
    msg = [{"role": "user", "content": "hello"}]
    session = {"X-Session-Id": "conv-42"}
    oa.chat.completions.create(model="m", messages=msg, extra_headers=session)
    an.messages.create(model="m", max_tokens=50, messages=msg, extra_headers=session)
    oa.responses.create(model="m", input="other words", extra_headers=session)
    oa.chat.completions.create(model="m", messages=msg, extra_body={"conversation_id": "conv-42"})
    # Claude Code's header; Codex's prompt_cache_key; user and metadata.user_id.
    claude = {"x-claude-code-session-id": "cc-1"}
    an.messages.create(model="m", max_tokens=50, messages=msg, extra_headers=claude)
    an.messages.create(model="m", max_tokens=50, messages=[{"role": "user", "content": "x"}],
                       extra_headers=claude)  # fmt: skip
    oa.responses.create(model="m", input="a", prompt_cache_key="codex-7")
    oa.chat.completions.create(model="m", messages=msg, prompt_cache_key="codex-7")
    oa.chat.completions.create(model="m", messages=msg, user="alice")
    an.messages.create(model="m", max_tokens=50, messages=msg, metadata={"user_id": "alice"})
    oa.chat.completions.create(model="m", messages=msg, user="bob")
    got = keys(sim)
    assert len(set(got[0:4])) == 1, "a session id: one key on chat, Messages and Responses"
    assert got[4] == got[5] != got[0], "Claude Code's session header wins over the message"
    assert got[6] == got[7] not in got[:6], "prompt_cache_key on Responses and on chat"
    assert got[8] == got[9] not in got[:8], "user and metadata.user_id name the same user"
    assert got[10] not in got[:10]
    assert len(set(got)) == 5


def test_a_previous_response_id_chain_keeps_the_key_of_its_first_turn(
    clients: tuple[Any, Any], sim: SimServer
) -> None:
    oa, _ = clients
    first = oa.responses.create(model="m", input="Refactor the parser.", user="carol")
    second = oa.responses.create(model="m", input="Now add tests.", previous_response_id=first.id)
    oa.responses.create(model="m", input="And docs.", previous_response_id=second.id)
    other = oa.responses.create(model="m", input="Refactor the parser.")
    oa.responses.create(model="m", input="Now add tests.", previous_response_id=other.id)
    got = keys(sim)
    assert got[0] == got[1] == got[2], "turns without `user` follow the chain's first turn"
    assert got[3] == got[4] != got[0]


def test_the_key_name_is_part_of_the_key(
    make_proxy: Callable[..., ProxyServer], sim: SimServer
) -> None:
    for key in ("sk-one", "sk-two"):
        server = make_proxy(AUTH_API_KEY=key)
        with openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0) as oa:
            oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    server = make_proxy()
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as oa:
        oa.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    got = keys(sim)
    # One key name ("default") for both single keys; no auth is another name.
    assert got[0] == got[1] != got[2]


def test_the_header_name_is_configurable_or_off(
    make_proxy: Callable[..., ProxyServer], sim: SimServer
) -> None:
    msg = [{"role": "user", "content": "hi"}]
    for env in ({"BACKEND_ROUTING_HEADER": "X-Conversation"}, {"BACKEND_ROUTING_HEADER": ""}):
        server = make_proxy(**env)
        with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as oa:
            oa.chat.completions.create(model="m", messages=msg)
    assert keys(sim, "x-conversation")[0] and keys(sim, "x-conversation")[1] is None
    assert keys(sim) == [None, None]
    with pytest.raises(ConfigError, match="BACKEND_ROUTING_HEADER"):
        Settings.from_env({"BACKEND_ROUTING_HEADER": "not a header"}, env_file=None)


# ---------------------------------------------------------------------------- failures


class Front:
    """A TCP relay to the backend that resets the first ``drops`` connections a chat
    request arrives on, before the backend sees a byte of it."""

    def __init__(self, target: str, drops: int) -> None:
        self.host, port = target.removeprefix("http://").rsplit(":", 1)
        self.port = int(port)
        self.drops = drops
        self.attempts = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)

        async def client_to_backend() -> None:
            while data := await reader.read(65536):
                if data.startswith(b"POST /v1/chat/completions"):
                    self.attempts += 1
                    if self.attempts <= self.drops:
                        writer.transport.abort()
                        up_writer.close()
                        return
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def backend_to_client() -> None:
            while data := await up_reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        with contextlib.suppress(OSError):
            await asyncio.gather(client_to_backend(), backend_to_client())

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.mark.parametrize("drops", [1, 2])
def test_a_connection_that_fails_before_an_answer_is_tried_once_more(
    bg: Background, make_proxy: Callable[..., ProxyServer], sim: SimServer, drops: int
) -> None:
    front = Front(sim.url, drops)
    server = make_proxy(backend_url=bg.run(front.start()))
    try:
        with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as oa:
            msg = [{"role": "user", "content": "hi"}]
            if drops == 1:
                got = oa.chat.completions.create(model="m", messages=msg)
                assert got.choices[0].message.content
            else:  # one more attempt only, then the client hears of it
                with pytest.raises(openai.InternalServerError) as info:
                    oa.chat.completions.create(model="m", messages=msg)
                assert info.value.status_code == 502
                assert info.value.body["code"] == "backend_unreachable"
    finally:
        bg.run(front.stop())
    assert front.attempts == 2
    assert len(keys(sim)) == 2 - drops  # the backend got the request once, or never


def test_a_stream_cut_after_it_began_is_never_sent_again(
    client: openai.OpenAI, sim: SimServer
) -> None:
    msg = [{"role": "user", "content": "hi SIM_FAULT:cut_mid"}]
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="m", messages=msg, stream=True):
            pass
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=msg)
    assert len(keys(sim)) == 2


async def _refusing_backend(status: int, retry_after: str) -> web.AppRunner:
    async def chat(request: web.Request) -> web.Response:
        body = {"error": {"message": "busy", "type": "overloaded", "code": status}}
        return web.json_response(body, status=status, headers={"Retry-After": retry_after})

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "MiniMax-M2"}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


@pytest.mark.parametrize(("status", "retry_after"), [(429, "9"), (503, "7")])
def test_backend_429_and_503_reach_the_client_with_retry_after_on_every_api(
    bg: Background, make_proxy: Callable[..., ProxyServer], status: int, retry_after: str
) -> None:
    runner = bg.run(_refusing_backend(status, retry_after))
    try:
        host, port = runner.addresses[0][:2]
        url = make_proxy(backend_url=f"http://{host}:{port}").url
        msg = [{"role": "user", "content": "hi"}]
        for stream in (False, True):
            chat = {"model": "m", "messages": msg, "stream": stream}
            r = httpx.post(url + "/v1/chat/completions", json=chat)
            assert (r.status_code, r.headers["retry-after"]) == (status, retry_after)
            assert r.json()["error"]["type"] == (
                "rate_limit_error" if status == 429 else "server_error"
            )
            r = httpx.post(
                url + "/v1/responses", json={"model": "m", "input": "hi", "stream": stream}
            )
            assert (r.status_code, r.headers["retry-after"]) == (status, retry_after)
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
            an = {"model": "m", "max_tokens": 9, "messages": msg, "stream": stream}
            r = httpx.post(url + "/v1/messages", json=an)
            assert (r.status_code, r.headers["retry-after"]) == (status, retry_after)
            kind = "rate_limit_error" if status == 429 else "overloaded_error"
            assert r.json()["type"] == "error" and r.json()["error"]["type"] == kind
    finally:
        bg.run(runner.cleanup())


def test_long_first_messages_and_images_keep_one_key_per_conversation(
    make_proxy: Callable[..., ProxyServer], sim: SimServer
) -> None:
    sim.options.multimodal = True
    server = make_proxy(BACKEND_IMAGES="pass")
    pasted = "x" * 200_000  # only its start (and its length) is hashed
    firsts: list[Any] = [
        pasted,
        pasted + "y",
        [{"type": "text", "text": "what is this?"},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 90_000}}],
        [{"type": "text", "text": "what is this?"},
         {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "B" * 90_000}}],
    ]  # fmt: skip
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as oa:
        for first in firsts:
            history: list[Any] = [{"role": "user", "content": first}]
            for _ in range(2):
                answer = oa.chat.completions.create(model="m", messages=history)
                history += [{"role": "assistant", "content": answer.choices[0].message.content},
                            {"role": "user", "content": "go on"}]  # fmt: skip
    got = keys(sim)
    assert got[0::2] == got[1::2], "each conversation keeps its key"
    assert len(set(got[0::2])) == 4, "and the four differ"
