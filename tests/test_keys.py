"""Several API keys: names in logs and metrics, per-key limits, reloads that keep streams."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from proxy.app import create_app
from proxy.config import ConfigError
from proxy.sim import SimServer
from tests.servers import ProxyServer, settings_for
from tests.test_operations import metric, spawn  # noqa: F401  (spawn is a fixture)

SLOW = "Tell me a story SIM_RATE:40"  # about three seconds of streaming


def _oai(server: ProxyServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def _ask(text: str = "hi") -> dict[str, Any]:
    return {"model": "minimax-m2", "messages": [{"role": "user", "content": text}]}


def _wait(condition: Any, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text(
        "# name key options\n"
        "alice sk-alice-0123456789 max_concurrent=1\n"
        "bob   sk-bob-0123456789   # no limit\n"
    )
    return path


def test_a_key_at_its_limit_gets_429_while_another_is_served(
    make_proxy: Any, sim: SimServer, keys_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="proxy.access")
    server = make_proxy(AUTH_KEYS_FILE=str(keys_file))
    before = httpx.get(server.url + "/metrics").text
    with _oai(server, "sk-alice-0123456789") as alice, _oai(server, "sk-bob-0123456789") as bob:
        stream = alice.chat.completions.create(**_ask(SLOW), stream=True)
        first = next(iter(stream))  # alice's one slot is taken
        with pytest.raises(openai.RateLimitError) as info:
            alice.chat.completions.create(**_ask())
        assert info.value.response.headers["retry-after"] == "1"
        assert info.value.response.json()["error"]["code"] == "rate_limit_exceeded"
        with anthropic.Anthropic(
            base_url=server.url, api_key="sk-alice-0123456789", max_retries=0
        ) as ant:
            with pytest.raises(anthropic.RateLimitError) as ainfo:
                ant.messages.create(
                    model="m", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
                )
        assert ainfo.value.response.json()["error"]["type"] == "rate_limit_error"
        assert bob.chat.completions.create(**_ask()).choices[0].message.content
        rest = list(stream)
        assert first.choices[0].delta.role == "assistant" and rest[-1].choices[0].finish_reason
        # The stream has ended: alice's slot is free again.
        assert alice.chat.completions.create(**_ask()).choices[0].message.content
        # A stream the client abandons frees its slot too.
        abandoned = alice.chat.completions.create(**_ask(SLOW), stream=True)
        next(iter(abandoned))
        abandoned.close()
        _wait(lambda: server.app.state.proxy.limits.in_flight("alice") == 0)
        assert alice.chat.completions.create(**_ask()).choices[0].message.content
    text = httpx.get(server.url + "/metrics").text

    def grew(**labels: str) -> float:
        name = "minimax_proxy_requests_total"
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert grew(key="alice", status="200") == 3 and grew(key="alice", status="429") == 2
    assert grew(key="bob", status="200") == 1
    done = [r for r in caplog.records if r.getMessage() == "request done"]
    assert {r.fields["key"] for r in done} == {"alice", "bob"}  # type: ignore[attr-defined]
    assert "sk-alice" not in caplog.text and "sk-bob" not in text


def test_removing_a_key_keeps_its_stream_and_refuses_its_next_request(
    make_proxy: Any, sim: SimServer, keys_file: Path
) -> None:
    server = make_proxy(AUTH_KEYS_FILE=str(keys_file), AUTH_API_KEY="sk-single-key")
    keys = server.app.state.proxy.keys
    with _oai(server, "sk-bob-0123456789") as bob:
        stream = bob.chat.completions.create(**_ask(SLOW), stream=True)
        chunks = [next(iter(stream))]
        keys_file.write_text("alice sk-alice-0123456789\n")
        _wait(lambda: [k.name for k in keys._keys] == ["default", "alice"])
        chunks += list(stream)
        assert chunks[-1].choices[0].finish_reason == "stop"
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text.endswith(sim.requests[-1].raw.rsplit("</think>", 1)[1].strip())
        with pytest.raises(openai.AuthenticationError):
            bob.chat.completions.create(**_ask())
    for key in ("sk-alice-0123456789", "sk-single-key"):  # AUTH_API_KEY is a key too
        with _oai(server, key) as c:
            assert c.chat.completions.create(**_ask()).choices[0].message.content


def test_a_bad_reload_keeps_the_keys_in_use(
    make_proxy: Any, sim: SimServer, keys_file: Path
) -> None:
    server = make_proxy(AUTH_KEYS_FILE=str(keys_file))
    keys = server.app.state.proxy.keys
    keys_file.write_text("alice\n")  # no key
    keys.reload()
    with _oai(server, "sk-bob-0123456789") as bob:
        assert bob.chat.completions.create(**_ask()).choices[0].message.content


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("alice\n", "expected 'name key"),
        ("a k1\na k2\n", "the name 'a' is taken"),
        ("a k1\nb k1\n", "already another name's"),
        ("a k1 max_concurrent=0\n", "unknown option"),
        ("a k1 burst=3\n", "unknown option"),
    ],
)
def test_a_bad_keys_file_stops_the_start(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^AUTH_KEYS_FILE: .*:\d: .*{needle}"):
        create_app(settings_for("http://127.0.0.1:9", {"AUTH_KEYS_FILE": str(path)}))


def test_sighup_rereads_the_keys_file(spawn: Any, tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "keys"
    path.write_text("carol sk-carol-old\n")
    proxy = spawn(AUTH_KEYS_FILE=str(path))
    url = proxy.url + "/v1/chat/completions"

    def status(key: str) -> int:
        return httpx.post(url, json=_ask(), headers={"authorization": f"Bearer {key}"}).status_code

    assert status("sk-carol-old") == 200
    st = path.stat()
    path.write_text("carol sk-carol-new\n")  # same size, and the same time below:
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # only SIGHUP can tell
    time.sleep(1.5)
    assert status("sk-carol-old") == 200
    proxy.proc.send_signal(signal.SIGHUP)
    _wait(lambda: status("sk-carol-new") == 200)
    assert status("sk-carol-old") == 401
    assert any("keys reloaded: carol" in line for line in proxy.lines)
