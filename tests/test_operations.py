"""Operations: metrics, logs, traces and replay, graceful shutdown, several workers."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.sim import SimServer
from tests.servers import ProxyServer, free_port

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def ask(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **kw}


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


class Spawned:
    """A proxy in its own process, its stderr collected."""

    def __init__(self, sim_url: str, *args: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "TABBY_URL": sim_url, **env}
        full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--host", "127.0.0.1", "--port", str(self.port), *args],
            env=full_env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        for _ in range(300):
            assert self.proc.poll() is None, "".join(self.lines)
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the proxy did not start")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def spawn(sim: SimServer) -> Iterator[Any]:
    started: list[Spawned] = []

    def start(*args: str, **env: str) -> Spawned:
        s = Spawned(sim.url, *args, **env)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def test_metrics(proxy_server: ProxyServer, client: openai.OpenAI) -> None:
    before = httpx.get(proxy_server.url + "/metrics").text
    client.chat.completions.create(**ask("Weather in Paris?", tools=[WEATHER]))
    list(client.chat.completions.create(**ask("hi"), stream=True))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(**ask("hi"), temperature=5)
    r = httpx.get(proxy_server.url + "/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text

    def grew(name: str, by: float = 1, **labels: str) -> None:
        assert metric(text, name, **labels) - metric(before, name, **labels) >= by, name

    grew("minimax_proxy_requests_total", route="/v1/chat/completions", stream="false", status="200")
    grew("minimax_proxy_requests_total", stream="true", status="200")
    grew("minimax_proxy_time_to_first_token_seconds_count", dialect="openai")
    grew("minimax_proxy_inter_chunk_seconds_count", dialect="openai")
    grew("minimax_proxy_request_duration_seconds_count", dialect="openai")
    grew("minimax_proxy_tool_calls_total", dialect="openai")
    grew("minimax_proxy_tokens_total", type="completion")
    grew("minimax_proxy_tokens_total", type="reasoning")
    assert "minimax_proxy_in_flight_streams" in text
    for name in ("parse_fallbacks", "session_repairs", "session_store_errors", "backend_errors"):
        assert f"minimax_proxy_{name}_total" in text or f"# HELP minimax_proxy_{name}" in text


def test_backend_errors_are_counted(proxy_server: ProxyServer, client: openai.OpenAI) -> None:
    before = metric(
        httpx.get(proxy_server.url + "/metrics").text, "minimax_proxy_backend_errors_total"
    )
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(**ask("SIM_FAULT:http500"))
    after = metric(
        httpx.get(proxy_server.url + "/metrics").text, "minimax_proxy_backend_errors_total"
    )
    assert after == before + 1


def test_json_logs_carry_request_id_and_never_keys(spawn: Any) -> None:
    proxy = spawn(LOG_FORMAT="json", AUTH_API_KEY="sk-very-secret-123")
    headers = {"authorization": "Bearer sk-very-secret-123", "x-request-id": "trace-abc-1"}
    r = httpx.post(proxy.url + "/v1/chat/completions", json=ask("hi"), headers=headers)
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-abc-1"
    r = httpx.post(
        proxy.url + "/v1/chat/completions",
        json=ask("hi"),
        headers={"authorization": "Bearer wrong-key-456"},
    )
    assert r.status_code == 401 and r.headers["x-request-id"].startswith("req_")
    with httpx.stream(
        "POST", proxy.url + "/v1/chat/completions", json=ask("hi", stream=True), headers=headers
    ) as s:
        assert s.headers["x-request-id"] == "trace-abc-1"
        list(s.iter_lines())
    time.sleep(0.3)
    proxy.stop()
    records = [json.loads(line) for line in proxy.lines if line.strip()]
    assert records, "no log lines"
    assert all({"time", "level", "logger", "message", "request_id"} <= set(r) for r in records)
    done = [
        r for r in records if r["message"] == "request done" and r["request_id"] == "trace-abc-1"
    ]
    assert len(done) == 2
    assert {d["stream"] for d in done} == {True, False}
    assert all(d["status"] == 200 and d["completion_tokens"] > 0 for d in done)
    everything = "".join(proxy.lines)
    assert "sk-very-secret-123" not in everything and "wrong-key-456" not in everything


def test_trace_and_replay(make_proxy: Any, sim: SimServer, tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    server = make_proxy(ENABLE_STREAMING_DEBUG="true", STREAMING_DEBUG_PATH=str(path))
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        list(
            c.chat.completions.create(
                **ask("Weather in Paris?", tools=[WEATHER]),
                stream=True,
                extra_headers={"x-request-id": "t-1"},
            )
        )
        c.chat.completions.create(**ask("hello"), extra_headers={"x-request-id": "t-2"})
    deadline = time.time() + 5
    while (
        time.time() < deadline and len(path.read_text().splitlines() if path.exists() else []) < 2
    ):
        time.sleep(0.05)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["request_id"] for r in records] == ["t-1", "t-2"]
    first = records[0]
    raw = "".join(first["deltas"])
    chats = [r for r in sim.requests if r.path == "/v1/chat/completions"]
    assert raw == chats[0].raw  # every raw backend delta was recorded
    assert any(e[0] == "ToolCallStart" and e[2] == "get_weather" for e in first["events"])
    out = subprocess.run(
        [sys.executable, "-m", "proxy", "replay", str(path), "--request-id", "t-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "== t-1" in out.stdout and "== t-2" not in out.stdout
    assert '"name": "get_weather"' in out.stdout and '"type": "tool_use"' in out.stdout
    assert '"type": "function_call"' in out.stdout  # as the Responses API answers it
    assert "events as recorded: True" in out.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "proxy", "replay", str(path), "--request-id", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "no matching request" in missing.stderr


def _stream_lines(url: str, body: dict[str, Any], out: list[str]) -> None:
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as r:
            out.extend(line for line in r.iter_lines() if line)
    except httpx.HTTPError as exc:
        out.append(f"ERROR {type(exc).__name__}")


def test_graceful_shutdown_lets_streams_finish(spawn: Any, sim: SimServer) -> None:
    proxy = spawn("--graceful-timeout", "20")
    lines: list[str] = []
    t = threading.Thread(
        target=_stream_lines,
        args=(proxy.url, ask("SIM_RATE:40 Tell me something", stream=True), lines),
    )
    t.start()
    while not any(line.startswith("data: ") for line in lines):
        time.sleep(0.02)
    proxy.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    with pytest.raises(httpx.HTTPError):  # no longer accepting
        httpx.get(proxy.url + "/health", timeout=2)
    t.join(30)
    assert lines[-1] == "data: [DONE]", lines[-3:]
    assert proxy.proc.wait(20) == 0
    assert sim.requests[-1].outcome == "completed"


def test_shutdown_after_grace_closes_backend_requests(spawn: Any, sim: SimServer) -> None:
    proxy = spawn("--graceful-timeout", "0.5")
    lines: list[str] = []
    t = threading.Thread(
        target=_stream_lines,
        args=(proxy.url, ask("SIM_FAULT:endless SIM_RATE:50", stream=True), lines),
    )
    t.start()
    while not any(line.startswith("data: ") for line in lines):
        time.sleep(0.02)
    proxy.proc.send_signal(signal.SIGTERM)
    t.join(20)
    assert not t.is_alive()
    proxy.proc.wait(20)
    deadline = time.time() + 5
    while sim.requests[-1].outcome == "pending" and time.time() < deadline:
        time.sleep(0.05)
    assert sim.requests[-1].outcome == "client_closed"


def test_workers_share_metrics(spawn: Any) -> None:
    proxy = spawn("--workers", "2")
    for _ in range(12):
        assert (
            httpx.post(
                proxy.url + "/v1/chat/completions", json=ask("hi"), headers={"connection": "close"}
            ).status_code
            == 200
        )
    seen = {
        metric(
            httpx.get(proxy.url + "/metrics", headers={"connection": "close"}).text,
            "minimax_proxy_requests_total",
            status="200",
        )
        for _ in range(6)
    }
    assert seen == {12.0}  # every worker reports the total of all workers


def test_log_raw_responses(spawn: Any, sim: SimServer) -> None:
    proxy = spawn(LOG_FORMAT="json", LOG_RAW_RESPONSES="true", AUTH_API_KEY="sk-raw-secret")
    headers = {"authorization": "Bearer sk-raw-secret", "x-request-id": "raw-1"}
    r = httpx.post(proxy.url + "/v1/chat/completions", json=ask("hi"), headers=headers)
    assert r.status_code == 200
    time.sleep(0.3)
    proxy.stop()
    records = [json.loads(line) for line in proxy.lines if line.strip()]
    raw = [r for r in records if r["message"] == "raw backend output"]
    assert len(raw) == 1 and raw[0]["request_id"] == "raw-1"
    chats = [r for r in sim.requests if r.path == "/v1/chat/completions"]
    assert raw[0]["raw"] == chats[-1].raw
    assert "sk-raw-secret" not in "".join(proxy.lines)


HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


@pytest.mark.parametrize(
    ("args", "env", "loop"),
    [
        ((), {}, "uvloop" if HAS_UVLOOP else "asyncio"),
        (("--loop", "asyncio"), {}, "asyncio"),
        ((), {"EVENT_LOOP": "asyncio"}, "asyncio"),
        (("--loop", "uvloop"), {"EVENT_LOOP": "asyncio"}, "uvloop"),
    ],
)
def test_event_loop_choice(
    spawn: Any, args: tuple[str, ...], env: dict[str, str], loop: str
) -> None:
    if loop == "uvloop" and not HAS_UVLOOP:
        pytest.skip("uvloop is not installed on this platform")
    proxy = spawn(*args, **env)
    r = httpx.post(proxy.url + "/v1/chat/completions", json={**ask("hi"), "stream": True})
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    assert any(f"event loop: {loop}" in line for line in proxy.lines), proxy.lines
