"""The OpenAI Agents SDK on the Responses API: a function tool really called, through the proxy.

``Runner.run`` posts non-streamed ``/v1/responses``; ``Runner.run_streamed`` streams (also as
background runs); conversations keep the history on the proxy. All go
through ``OpenAIResponsesModel`` pointed at the proxy, with tracing off (it would export to
OpenAI). Every stream is checked by the event-grammar checker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from agents import Agent, ModelSettings, OpenAIResponsesModel, RunConfig, Runner, function_tool

from proxy.sim import SimServer
from tests.responses_grammar import AsyncRecording, check
from tests.servers import ProxyServer


def _agent(calls: list[str], client: openai.AsyncOpenAI, **settings: Any) -> Agent[Any]:
    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}"

    model = OpenAIResponsesModel(model="minimax-m2", openai_client=client)
    return Agent(
        name="forecaster",
        instructions="Use tools.",
        tools=[get_weather],
        model=model,
        model_settings=ModelSettings(**settings),
    )


def _sent(sim: SimServer) -> list[dict[str, Any]]:
    return [r.body for r in sim.requests if r.path == "/v1/chat/completions"]


@pytest.mark.parametrize("mode", ["run", "streamed", "background"])
def test_agent_runs_a_function_tool(proxy_server: ProxyServer, sim: SimServer, mode: str) -> None:
    """``background``: streamed with ``background: true``, so each turn is a background run
    the SDK follows as it is generated."""
    streamed = mode != "run"
    calls: list[str] = []
    recording = AsyncRecording()
    config = RunConfig(tracing_disabled=True)

    async def run() -> Any:
        async with openai.AsyncOpenAI(
            base_url=proxy_server.url + "/v1",
            api_key="agents-key",
            max_retries=0,
            http_client=httpx.AsyncClient(transport=recording, timeout=30),
        ) as client:
            extra = {"background": True} if mode == "background" else None
            agent = _agent(calls, client, extra_args=extra)
            if not streamed:
                return await Runner.run(agent, "What is the weather?", run_config=config)
            result = Runner.run_streamed(agent, "What is the weather?", run_config=config)
            kinds = [e.type async for e in result.stream_events()]
            assert "raw_response_event" in kinds
            return result

    result = asyncio.run(run())
    assert len(calls) == 1 and calls[0]
    assert f"Sunny in {calls[0]}" in result.final_output
    bodies = _sent(sim)
    assert len(bodies) == 2
    second = bodies[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    assert second[0]["content"] == "Use tools."
    assert second[2]["content"].startswith("<think>\n")  # the thinking came back
    assert second[3]["content"] == f"Sunny in {calls[0]}"
    assert len(recording.bodies) == (2 if streamed else 0)
    for body in recording.bodies:
        assert check(body.decode()).response["background"] is (mode == "background")


@pytest.mark.parametrize("how", ["session", "conversation_id"])
def test_agent_keeps_history_in_a_conversation(
    proxy_server: ProxyServer, sim: SimServer, how: str
) -> None:
    """``OpenAIConversationsSession`` (the SDK reads and writes the items) and
    ``Runner.run(conversation_id=…)`` (the proxy extends the conversation): a tool loop,
    then a second run that sees the first."""
    from agents import OpenAIConversationsSession

    calls: list[str] = []
    config = RunConfig(tracing_disabled=True)

    async def run() -> tuple[Any, list[Any]]:
        async with openai.AsyncOpenAI(
            base_url=proxy_server.url + "/v1", api_key="agents-conv", max_retries=0
        ) as client:
            agent = _agent(calls, client)
            if how == "session":
                session = OpenAIConversationsSession(openai_client=client)
                first = await Runner.run(
                    agent, "What is the weather?", session=session, run_config=config
                )
                second = await Runner.run(agent, "Thanks!", session=session, run_config=config)
                cid = session.session_id
            else:
                cid = (await client.conversations.create()).id
                first = await Runner.run(
                    agent, "What is the weather?", conversation_id=cid, run_config=config
                )
                second = await Runner.run(agent, "Thanks!", conversation_id=cid, run_config=config)
            assert f"Sunny in {calls[0]}" in first.final_output
            assert second.final_output
            items = [i async for i in client.conversations.items.list(cid, order="asc")]
            return cid, items

    cid, items = asyncio.run(run())
    assert len(calls) == 2 and cid.startswith("conv_")  # the simulated model calls once per run
    kinds = [i.type for i in items]
    assert kinds.count("function_call") == 2 and kinds.count("function_call_output") == 2
    assert kinds.count("reasoning") == 4  # the thinking of every response is kept
    user_texts = [i.content[0].text for i in items if getattr(i, "role", None) == "user"]
    assert user_texts == ["What is the weather?", "Thanks!"]
    bodies = _sent(sim)
    assert len(bodies) == 4
    tool_turn, last = bodies[1]["messages"], bodies[3]["messages"]
    assert [m["role"] for m in tool_turn] == ["system", "user", "assistant", "tool"]
    assert tool_turn[2]["content"].startswith("<think>\n")
    # The second run sees the whole first one, its thinking included.
    roles = ["system", "user", "assistant", "tool", "assistant", "user", "assistant", "tool"]
    assert [m["role"] for m in last] == roles
    assert last[4]["content"].startswith("<think>\n")
