"""A real router in front of two backend replicas, the proxy in front of it: the routing key
keeps every turn of a conversation on one replica, on every API, and a replica that dies
hands its conversations to the other.

The router is SGLang's Model Gateway (``smg launch --policy consistent_hashing``), which the
test extra installs from PyPI. Without it the tests skip, except under CI or
``REQUIRE_ROUTER=1`` (``make test`` installs it, so there it must be found).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest

from tests.fleet import Replica, Router, smg_binary
from tests.servers import Background, ProxyServer, settings_for

CONVERSATIONS = 20  # per API
TURNS = 4


@pytest.fixture(scope="module")
def fleet(bg: Background) -> Iterator[tuple[list[Replica], Router, ProxyServer]]:
    binary = smg_binary()
    if binary is None:
        if os.environ.get("REQUIRE_ROUTER") == "1" or os.environ.get("CI"):
            pytest.fail("smg (the router) is required here but not installed: `make setup`")
        pytest.skip("smg (SGLang's Model Gateway) is not installed: pip install smg")
    replicas = [Replica(), Replica()]
    router = None
    try:
        router = Router(binary, [r.url for r in replicas], "consistent_hashing")
        proxy = bg.run(ProxyServer(settings_for(router.url)).start())
        try:
            yield replicas, router, proxy
        finally:
            bg.run(proxy.stop())
    finally:
        if router is not None:
            router.stop()
        for replica in replicas:
            replica.kill()


@dataclass
class Conversation:
    """One client's conversation on one API; every turn resends or chains the history."""

    api: str
    n: int
    history: list[Any] = field(default_factory=list)
    previous: str | None = None

    @property
    def marker(self) -> str:
        return f"conversation {self.api}-{self.n}"

    def say(self, turn: int) -> str:
        return f"{self.marker}: turn {turn}" if turn == 0 else f"turn {turn}."

    def chat_hints(self) -> dict[str, Any]:
        """What names the conversation on chat: nothing (its first message), user, a session."""
        if self.n % 3 == 1:
            return {"user": f"user-{self.n}"}
        if self.n % 3 == 2:
            return {"extra_headers": {"X-Session-Id": f"session-{self.n}"}}
        return {}

    def chat(self, oa: openai.OpenAI, turn: int, stream: bool = False) -> None:
        self.history.append({"role": "user", "content": self.say(turn)})
        kw = self.chat_hints()
        if stream:
            chunks = oa.chat.completions.create(model="m", messages=self.history, stream=True, **kw)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            got = oa.chat.completions.create(model="m", messages=self.history, **kw)
            text = got.choices[0].message.content or ""
        self.history.append({"role": "assistant", "content": text})

    def messages(self, an: anthropic.Anthropic, turn: int) -> None:
        self.history.append({"role": "user", "content": self.say(turn)})
        kw: dict[str, Any] = {}
        if self.n % 3 == 1:
            kw["metadata"] = {"user_id": f"user-{self.n}"}
        elif self.n % 3 == 2:
            kw["extra_headers"] = {"x-claude-code-session-id": f"claude-{self.n}"}
        got = an.messages.create(model="m", max_tokens=200, messages=self.history, **kw)
        text = "".join(b.text for b in got.content if b.type == "text")
        self.history.append({"role": "assistant", "content": text})

    def responses(self, oa: openai.OpenAI, turn: int) -> None:
        kw: dict[str, Any] = {"prompt_cache_key": f"codex-{self.n}"} if self.n % 2 else {}
        if self.previous is not None:
            kw["previous_response_id"] = self.previous
        got = oa.responses.create(model="m", input=self.say(turn), **kw)
        self.previous = got.id

    def turn(self, clients: tuple[openai.OpenAI, anthropic.Anthropic], turn: int) -> None:
        if self.api == "chat":
            self.chat(clients[0], turn, stream=turn % 2 == 1)
        elif self.api == "messages":
            self.messages(clients[1], turn)
        else:
            self.responses(clients[0], turn)


def served_by(replicas: list[Replica], conversations: list[Conversation]) -> list[list[int]]:
    """For each conversation, the replica index of each backend request it made, in order."""
    seen: dict[str, list[tuple[int, int]]] = {c.marker: [] for c in conversations}
    for index, replica in enumerate(replicas):
        for rec in replica.requests():
            first = next(m for m in rec["body"]["messages"] if m["role"] == "user")
            marker = str(first["content"]).split(":", 1)[0]
            if marker in seen:
                seen[marker].append((rec["received_at"], index))
    return [[index for _, index in sorted(seen[c.marker])] for c in conversations]


def test_conversations_stay_on_their_replica_and_move_when_it_dies(
    fleet: tuple[list[Replica], Router, ProxyServer],
) -> None:
    replicas, _, proxy = fleet
    conversations = [Conversation(api, n) for api in ("chat", "messages", "responses")
                     for n in range(CONVERSATIONS)]  # fmt: skip
    with (
        openai.OpenAI(base_url=proxy.url + "/v1", api_key="x", max_retries=0) as oa,
        anthropic.Anthropic(base_url=proxy.url, api_key="x", max_retries=0) as an,
    ):
        for turn in range(TURNS):  # turn by turn, so the conversations interleave
            for c in conversations:
                c.turn((oa, an), turn)
        placed = served_by(replicas, conversations)
        for c, where in zip(conversations, placed, strict=True):
            assert len(where) == TURNS and len(set(where)) == 1, (c.marker, where)
        homes = [where[0] for where in placed]
        # Consistent hashing spreads 60 keys over both replicas (10 % each at the very least).
        assert min(homes.count(0), homes.count(1)) >= len(conversations) // 10, homes

        # A stream in flight on replica 0 when it dies fails; nothing else does.
        victim = next(c for c, home in zip(conversations, homes, strict=True)
                      if home == 0 and c.api == "chat")  # fmt: skip
        failures: list[BaseException] = []
        started = threading.Event()

        def slow_stream() -> None:
            try:
                victim.history.append({"role": "user", "content": "long SIM_RATE:50 please"})
                chunks = oa.chat.completions.create(
                    model="m", messages=victim.history, stream=True, **victim.chat_hints()
                )
                for _ in chunks:
                    started.set()
            except Exception as exc:  # any kind: the assertion below says which
                failures.append(exc)
            finally:
                started.set()
                victim.history.pop()

        thread = threading.Thread(target=slow_stream)
        thread.start()
        assert started.wait(30)
        replicas[0].kill()
        thread.join(60)
        assert not thread.is_alive()
        assert len(failures) == 1, "the stream in flight on the dead replica ends in an error"
        assert isinstance(failures[0], openai.APIError), repr(failures[0])

        for c in conversations:  # the next turn of every conversation is answered
            c.turn((oa, an), TURNS)
    # Every conversation's next turn went to the replica still alive.
    after = served_by(replicas[1:], conversations)
    expected = [TURNS + 1 if home == 1 else 1 for home in homes]
    assert [len(where) for where in after] == expected
