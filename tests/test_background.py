"""Background responses through the real openai SDK: create, poll, replay, resume, cancel,
across two proxy processes sharing a store, and a restart or crash in the middle."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.responses.background import runs_of
from proxy.sim import SimServer
from tests.responses_grammar import check, events_of
from tests.servers import ProxyServer
from tests.test_operations import Spawned
from tests.test_responses import WEATHER, Client

SLOW = " SIM_RATE:400"  # tokens per second: a run long enough to watch, short enough to wait
ENDLESS = " SIM_FAULT:endless"  # reasoning until the proxy hangs up


def wait_for(probe: Callable[[], Any], what: str) -> Any:
    """``probe()`` once it is truthy (a bounded wait for state, not a timing assertion)."""
    for _ in range(600):
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def replayed(c: Client, response_id: str) -> str:
    """The whole event stream of a background run, as the proxy replays it (read past the
    client's recording: a run cut by a crash cannot close its open item)."""
    url = f"{c.sdk.base_url}responses/{response_id}?stream=true"
    return httpx.get(url, headers={"authorization": "Bearer unused"}, timeout=30).text


def chats(sim: SimServer) -> list[Any]:
    return [r for r in sim.requests if r.path == "/v1/chat/completions"]


def ended(sim: SimServer, n: int = 1) -> list[Any]:
    """The last ``n`` backend requests, once each has ended."""
    return wait_for(
        lambda: (done := chats(sim)[-n:]) and all(r.outcome != "pending" for r in done) and done,
        "the backend requests ended",
    )


def test_background_run_polls_and_replays(sc: Client, sim: SimServer) -> None:
    r = sc.sdk.responses.create(
        model="m", input="Weather?" + SLOW, tools=[WEATHER], background=True
    )
    assert r.status == "queued" and r.background is True and r.output == []
    final = wait_for(
        lambda: (got := sc.sdk.responses.retrieve(r.id)).status == "completed" and got, "completed"
    )
    assert final.output[-1].type == "function_call" and final.background is True
    assert final.usage is not None and final.usage.output_tokens > 0
    # The whole stream again, then the part after a sequence number.
    events = list(sc.sdk.responses.retrieve(r.id, stream=True))
    assert events[-1].type == "response.completed"
    assert [o.id for o in events[-1].response.output] == [o.id for o in final.output]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    tail = list(sc.sdk.responses.retrieve(r.id, stream=True, starting_after=5))
    assert [e.model_dump() for e in tail] == [e.model_dump() for e in events[6:]]
    assert sc.sdk.responses.retrieve(r.id).id == r.id
    oldest = sc.sdk.responses.input_items.list(r.id, order="asc").data[0]
    assert oldest.content[0].text.startswith("Weather?")


def test_background_stream_resumes_after_a_disconnect(sc: Client) -> None:
    # Not recorded: this stream is cut on purpose, so it has no end to check.
    with openai.OpenAI(base_url=str(sc.sdk.base_url), api_key="unused", max_retries=0) as cut:
        stream = cut.responses.create(model="m", input="Hello" + SLOW, background=True, stream=True)
        first = []
        for event in stream:
            first.append(event)
            if event.type == "response.output_text.delta" or len(first) == 8:
                break
        stream.close()  # the client goes away; the run does not
    last = first[-1].sequence_number
    rest = list(sc.sdk.responses.retrieve(first[0].response.id, stream=True, starting_after=last))
    whole = first + rest
    assert [e.sequence_number for e in whole] == list(range(len(whole)))
    assert whole[-1].type == "response.completed"
    text = "".join(e.delta for e in whole if e.type == "response.output_text.delta")
    assert text == whole[-1].response.output_text
    # The grammar checker reads the stream whole: the run replayed from its start.
    checked = check(replayed(sc, whole[0].response.id))
    assert [o["id"] for o in checked.response["output"]] == [
        o.id for o in whole[-1].response.output
    ]


def test_cancel(sc: Client, sim: SimServer) -> None:
    r = sc.sdk.responses.create(model="m", input="Think" + ENDLESS, background=True)
    wait_for(lambda: sc.sdk.responses.retrieve(r.id).status == "in_progress", "in progress")
    wait_for(lambda: chats(sim), "generating")
    cancelled = sc.sdk.responses.cancel(r.id)
    assert cancelled.status == "cancelled" and cancelled.id == r.id
    (backend,) = ended(sim)
    assert backend.outcome == "client_closed"  # the backend request was closed
    again = sc.sdk.responses.cancel(r.id)  # already over: returned as it is
    assert again.status == "cancelled" and again.output == cancelled.output
    assert sc.sdk.responses.retrieve(r.id).status == "cancelled"
    events = events_of(replayed(sc, r.id))
    assert events[-1]["type"] == "response.cancelled"
    assert events[-1]["response"]["status"] == "cancelled"
    # A finished run is returned unchanged; a response not in the background is a 400.
    done = sc.sdk.responses.create(model="m", input="Hi", background=True)
    wait_for(lambda: sc.sdk.responses.retrieve(done.id).status == "completed", "completed")
    assert sc.sdk.responses.cancel(done.id).status == "completed"
    plain = sc.sdk.responses.create(model="m", input="Hi")
    with pytest.raises(openai.BadRequestError):
        sc.sdk.responses.cancel(plain.id)
    with pytest.raises(openai.BadRequestError):
        sc.sdk.responses.retrieve(plain.id, stream=True)
    with pytest.raises(openai.NotFoundError):
        sc.sdk.responses.cancel("resp_nowhere")
    with pytest.raises(openai.BadRequestError) as exc:
        sc.sdk.responses.create(model="m", input="Hi", background=True, store=False)
    assert exc.value.body["param"] == "background"  # type: ignore[index]


def test_a_failing_backend_fails_the_run(sc: Client) -> None:
    r = sc.sdk.responses.create(model="m", input="Hi SIM_FAULT:http500", background=True)
    failed = wait_for(
        lambda: (got := sc.sdk.responses.retrieve(r.id)).status == "failed" and got, "failed"
    )
    assert failed.error is not None and failed.error.code == "server_error"
    check(replayed(sc, r.id))


def test_background_runs_count_against_the_key_limit(
    make_proxy: Callable[..., ProxyServer], sim: SimServer, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("solo sk-solo max_concurrent=1\n")
    server = make_proxy(AUTH_KEYS_FILE=str(keys))
    with openai.OpenAI(base_url=server.url + "/v1", api_key="sk-solo", max_retries=0) as c:
        r = c.responses.create(model="m", input="Think" + ENDLESS, background=True)
        with pytest.raises(openai.RateLimitError):
            c.responses.create(model="m", input="Hi")
        assert c.responses.cancel(r.id).status == "cancelled"
        assert c.responses.create(model="m", input="Hi").status == "completed"


def test_background_runs_count_against_the_key_tokens_per_minute(
    make_proxy: Callable[..., ProxyServer], sim: SimServer, tmp_path: Path
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("thrifty sk-thrifty tpm=1\n")
    server = make_proxy(AUTH_KEYS_FILE=str(keys))
    with openai.OpenAI(base_url=server.url + "/v1", api_key="sk-thrifty", max_retries=0) as c:
        r = c.responses.create(model="m", input="Hi", background=True)
        running = runs_of(server.app.state.proxy).running
        wait_for(lambda: r.id not in running, "the run over and its slot given back")
        assert c.responses.retrieve(r.id).status == "completed"
        # The run's tokens were counted when it ended: the key's minute is used up.
        with pytest.raises(openai.RateLimitError):
            c.responses.create(model="m", input="Hi")


@pytest.fixture
def spawn(sim: SimServer) -> Iterator[Callable[..., Spawned]]:
    """Proxies in their own processes, stopped after the test."""
    started: list[Spawned] = []

    def start(**env: str) -> Spawned:
        started.append(Spawned(sim.url, **env))
        return started[-1]

    yield start
    for s in started:
        s.stop()


Replicas = Callable[[dict[str, str]], tuple[Spawned, Client, Client]]


@pytest.fixture
def replicas(
    spawn: Callable[..., Spawned],
    make_proxy: Callable[..., ProxyServer],
    open_client: Callable[..., Client],
) -> Replicas:
    """Two proxies on one store: (the other process, a client on it, a client on this one)."""

    def make(env: dict[str, str]) -> tuple[Spawned, Client, Client]:
        proc = spawn(**env)
        return proc, open_client(proc), open_client(make_proxy(**env))

    return make


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_two_processes_share_a_run(
    kind: str, store_for: Callable[[str], dict[str, str]], replicas: Replicas, sim: SimServer
) -> None:
    _, there, here = replicas(store_for(kind))
    r = there.sdk.responses.create(model="m", input="Hello" + SLOW, background=True)
    events = list(here.sdk.responses.retrieve(r.id, stream=True))  # followed live from here
    assert events[-1].type == "response.completed"
    assert here.sdk.responses.retrieve(r.id).output_text == events[-1].response.output_text
    endless = there.sdk.responses.create(model="m", input="Think" + ENDLESS, background=True)
    wait_for(lambda: here.sdk.responses.retrieve(endless.id).status == "in_progress", "running")
    assert here.sdk.responses.cancel(endless.id).status == "cancelled"
    (backend,) = ended(sim)
    assert backend.outcome == "client_closed"
    assert there.sdk.responses.retrieve(endless.id).status == "cancelled"


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_a_restart_or_a_crash_fails_the_run(
    how: str, store_for: Callable[[str], dict[str, str]], replicas: Replicas, sim: SimServer
) -> None:
    # A short lease only where a dead process must be noticed: on a loaded machine a live
    # one can miss a beat of a second, and is then taken for dead until its next write.
    env = {**store_for("sqlite"), "BACKGROUND_LEASE_SECONDS": "1" if how == "crash" else "30"}
    proc, there, here = replicas(env)
    rid = there.sdk.responses.create(model="m", input="Think" + ENDLESS, background=True).id
    wait_for(lambda: any(r.outcome == "pending" for r in chats(sim)), "generating")
    if how == "restart":
        proc.stop()  # SIGTERM: the proxy marks its own runs
        got = here.sdk.responses.retrieve(rid)
        assert got.status == "failed" and "proxy stopped" in got.error.message
        check(replayed(here, rid))  # it closed what it had open
    else:
        proc.proc.kill()
        proc.proc.wait(10)
        got = wait_for(
            lambda: (g := here.sdk.responses.retrieve(rid)).status == "failed" and g, "failed"
        )
        assert "stopped before it ended" in got.error.message
    events = events_of(replayed(here, rid))
    assert events[-1]["type"] == "response.failed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


@pytest.mark.parametrize("where", ["here", "there"])
def test_deleting_a_running_response_stops_it(
    where: str, store_for: Callable[[str], dict[str, str]], replicas: Replicas, sim: SimServer
) -> None:
    _, there, here = replicas(store_for("sqlite"))
    r = there.sdk.responses.create(model="m", input="Think" + ENDLESS, background=True)
    wait_for(lambda: here.sdk.responses.retrieve(r.id).status == "in_progress", "running")
    deleter = there if where == "there" else here  # the process running it, or another
    assert deleter.sdk.responses.delete(r.id) is None
    (backend,) = ended(sim)
    assert backend.outcome == "client_closed"
    # Nothing comes back: the run deleted what it wrote last.
    wait_for(lambda: not [r for r in sim.requests if r.outcome == "pending"], "ended")
    for c in (here, there):
        with pytest.raises(openai.NotFoundError):
            c.sdk.responses.retrieve(r.id)


def test_another_key_cannot_touch_a_run(sc: Client) -> None:
    r = sc.sdk.responses.create(model="m", input="Think" + ENDLESS, background=True)
    other = openai.OpenAI(base_url=str(sc.sdk.base_url), api_key="other", max_retries=0)
    with other:
        for act in (other.responses.cancel, other.responses.delete, other.responses.retrieve):
            with pytest.raises(openai.NotFoundError):
                act(r.id)
    assert sc.sdk.responses.retrieve(r.id).status in ("queued", "in_progress")
    assert sc.sdk.responses.cancel(r.id).status == "cancelled"
