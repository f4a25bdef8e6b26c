"""Bad input and backend failures: clear errors in the OpenAI shape, never a 500 or a hang."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from proxy.sim import SimServer
from tests.servers import ProxyServer, free_port


def ask(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "minimax-m2", "messages": [{"role": "user", "content": text}], **kw}


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return dict(body["error"])


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": 1.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
    ],
)
def test_validation_errors_are_400(client: openai.OpenAI, kw: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**ask("hi"), **kw)
    err = error_of(info.value)
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert param in err["message"]


def test_temperature_one_and_small_accepted(client: openai.OpenAI, sim: SimServer) -> None:
    client.chat.completions.create(**ask("hi"), temperature=1)
    client.chat.completions.create(**ask("hi"), temperature=0.01)
    assert [r.body["temperature"] for r in sim.requests] == [1.0, 0.01]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"model": "m"}', 400, "messages"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', 400, "role"),
        (b'{"messages": [{"role": "user", "content": 5}]}', 400, "content"),
    ],
)
def test_malformed_requests(
    proxy_server: ProxyServer, body: bytes, status: int, needle: str
) -> None:
    r = httpx.post(proxy_server.url + "/v1/chat/completions", content=body)
    assert r.status_code == status
    assert needle in r.json()["error"]["message"]


def test_oversized_body_is_413(make_proxy: Any) -> None:
    server = make_proxy(MAX_REQUEST_BYTES="2048")
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]}
    r = httpx.post(server.url + "/v1/chat/completions", json=big)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "invalid_request_error"
    # Chunked upload without Content-Length is counted as it arrives.
    r = httpx.post(
        server.url + "/v1/chat/completions",
        content=iter([b'{"messages": [{"role": "user", "content": "', b"x" * 5000, b'"}]}']),
    )
    assert r.status_code == 413


def test_unknown_route_and_method_in_openai_shape(proxy_server: ProxyServer) -> None:
    r = httpx.get(proxy_server.url + "/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.get(proxy_server.url + "/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_auth(make_proxy: Any) -> None:
    server = make_proxy(AUTH_API_KEY="s3cret")
    url = server.url + "/v1"
    with openai.OpenAI(base_url=url, api_key="wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError) as info:
            c.chat.completions.create(**ask("hi"))
        assert error_of(info.value)["type"] == "authentication_error"
    with openai.OpenAI(base_url=url, api_key="s3cret", max_retries=0) as c:
        assert c.chat.completions.create(**ask("hi")).choices[0].message.content
    r = httpx.post(url + "/chat/completions", json=ask("hi"), headers={"x-api-key": "s3cret"})
    assert r.status_code == 200
    assert httpx.post(url + "/chat/completions", json=ask("hi")).status_code == 401
    # Health stays open for probes.
    assert httpx.get(server.url + "/health").status_code == 200


def test_backend_unreachable_is_502(make_proxy: Any) -> None:
    server = make_proxy(backend_url=f"http://127.0.0.1:{free_port()}")
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        with pytest.raises(openai.InternalServerError) as info:
            c.chat.completions.create(**ask("hi"))
    assert info.value.status_code == 502
    assert error_of(info.value)["code"] == "backend_unreachable"
    assert httpx.get(server.url + "/ready").status_code == 503


def test_ready_when_backend_up(proxy_server: ProxyServer, sim: SimServer) -> None:
    assert httpx.get(proxy_server.url + "/ready").json() == {
        "status": "ready",
        "backend_tool_choice": "omit",
        "backend_tool_choice_setting": "auto-detect",
    }


@pytest.mark.parametrize(
    ("fault", "status", "code", "exc"),
    [
        ("http500", 502, "backend_error", openai.InternalServerError),
        ("html500", 502, "backend_error", openai.InternalServerError),
        ("http503", 503, None, openai.InternalServerError),
        ("http429", 429, None, openai.RateLimitError),
        ("http400_context", 400, "context_length_exceeded", openai.BadRequestError),
        ("http422_detail", 400, None, openai.BadRequestError),
        ("http401", 502, "backend_auth", openai.InternalServerError),
    ],
)
def test_backend_http_errors_are_mapped(
    client: openai.OpenAI, fault: str, status: int, code: str | None, exc: type[Exception]
) -> None:
    for stream in (False, True):
        with pytest.raises(exc) as info:  # type: ignore[call-overload]
            client.chat.completions.create(**ask(f"SIM_FAULT:{fault}"), stream=stream)
        assert info.value.status_code == status
        err = error_of(info.value)
        assert err["code"] == code
        assert "detail" not in err["message"] or fault == "http422_detail"
        if fault == "http429":
            assert info.value.response.headers["retry-after"] == "2"


def test_backend_timeout_is_504(make_proxy: Any, sim: SimServer) -> None:
    sim.options.stall_seconds = 5
    server = make_proxy(TABBY_TIMEOUT="0.5")
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        t = time.monotonic()
        with pytest.raises(openai.APIStatusError) as info:
            c.chat.completions.create(**ask("SIM_FAULT:stall_first"))
        assert info.value.status_code == 504
        assert time.monotonic() - t < 4
        # A stall after streaming began becomes an error event, then the stream ends.
        stream = c.chat.completions.create(**ask("SIM_FAULT:stall_mid"), stream=True)
        with pytest.raises(openai.APIError, match="stalled"):
            for _ in stream:
                pass


@pytest.mark.parametrize("fault", ["cut_mid", "cut_in_tool", "error_event"])
def test_mid_stream_failure_is_an_error_event(client: openai.OpenAI, fault: str) -> None:
    tools = [{"type": "function", "function": {"name": "write_file", "parameters": {}}}]
    stream = client.chat.completions.create(
        **ask(f"SIM_FAULT:{fault} long"), tools=tools, stream=True
    )
    seen = 0
    with pytest.raises(openai.APIError):
        for _ in stream:
            seen += 1
    assert seen > 1  # the failure came after streaming began


def test_mid_stream_error_raw_shape(proxy_server: ProxyServer, sim: SimServer) -> None:
    with httpx.stream(
        "POST",
        proxy_server.url + "/v1/chat/completions",
        json=ask("SIM_FAULT:cut_mid", stream=True),
    ) as r:
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert events[-2].startswith('data: {"error":')


@pytest.mark.parametrize("fault", ["bad_sse", "bad_json", "bad_utf8"])
def test_malformed_backend_chunks_do_not_kill_the_stream(client: openai.OpenAI, fault: str) -> None:
    r = client.chat.completions.create(**ask(f"SIM_FAULT:{fault}"))
    assert r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"


def test_client_disconnect_closes_backend_request(
    proxy_server: ProxyServer, sim: SimServer
) -> None:
    with httpx.stream(
        "POST",
        proxy_server.url + "/v1/chat/completions",
        json=ask("SIM_FAULT:endless", stream=True),
    ) as r:
        lines = r.iter_lines()
        for _ in range(20):
            next(lines)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        record = sim.requests[-1]
        if record.outcome != "pending":
            break
        time.sleep(0.02)
    assert record.fault == "endless"
    assert record.outcome == "client_closed"
    assert record.ended_at is not None and record.ended_at - time.time() < 5


def test_proxy_keeps_serving_after_failures(client: openai.OpenAI) -> None:
    for fault in ("http500", "cut_mid"):
        try:
            list(client.chat.completions.create(**ask(f"SIM_FAULT:{fault}"), stream=True))
        except openai.APIError:
            pass
    assert client.chat.completions.create(**ask("hi")).choices[0].message.content


def test_cors_off_by_default_and_on_when_set(proxy_server: ProxyServer, make_proxy: Any) -> None:
    preflight = {
        "origin": "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    r = httpx.options(proxy_server.url + "/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    server = make_proxy(CORS_ORIGINS="https://app.example")
    r = httpx.options(server.url + "/v1/chat/completions", headers=preflight)
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "authorization" in r.headers["access-control-allow-headers"].lower()


def test_keep_alive_comments_while_backend_is_silent(make_proxy: Any, sim: SimServer) -> None:
    server = make_proxy(PING_INTERVAL_SECONDS="0.2")
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", json=ask("SIM_TTFT:1 hi", stream=True)
    ) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[0].startswith("data: ")  # the role chunk goes out at once
    assert lines.count(": ping") >= 3
    assert lines[-1] == "data: [DONE]"
    with openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0) as c:
        r2 = c.chat.completions.create(**ask("SIM_TTFT:0.5 hi"), stream=True)
        assert "".join(ch.choices[0].delta.content or "" for ch in r2 if ch.choices)
