"""The Responses API's state through the real openai SDK: input items and conversations,
in each records store (memory, SQLite, Redis), on the proxy and the simulated backend."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from proxy.sim import SimServer
from tests.test_responses import WEATHER, Client, backend_messages

# -- input items ------------------------------------------------------------------


def test_input_items_list_the_chain_and_page(sc: Client) -> None:
    first = sc.sdk.responses.create(
        model="m",
        input=[
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        ],
    )
    second = sc.sdk.responses.create(model="m", previous_response_id=first.id, input="And?")
    items = list(sc.sdk.responses.input_items.list(second.id, order="asc", limit=2))
    kinds = [(i.type, getattr(i, "role", None)) for i in items]
    assert kinds == [
        ("message", "developer"),
        ("message", "user"),
        ("reasoning", None),
        ("message", "assistant"),
        ("message", "user"),
    ]
    assert items[0].content[0].text == "Be brief." and items[-1].content[0].text == "And?"
    assert [i.id for i in items[2:4]] == [o.id for o in first.output]
    assert len({i.id for i in items}) == 5 and all(i.id for i in items)
    # The default order is newest first; a page says where it ends and whether more follow.
    page = sc.sdk.responses.input_items.list(second.id, limit=2)
    assert [i.id for i in page.data] == [items[4].id, items[3].id] and page.has_more
    raw = sc.sdk.responses.input_items.with_raw_response.list(
        second.id, order="asc", after=items[0].id, extra_query={"before": items[3].id}
    ).http_response.json()
    assert [i["id"] for i in raw["data"]] == [items[1].id, items[2].id]
    assert raw["object"] == "list" and raw["first_id"] == items[1].id
    assert raw["last_id"] == items[2].id and raw["has_more"] is False
    # Ids are kept: listing again gives the same ones.
    again = list(sc.sdk.responses.input_items.list(second.id, order="asc"))
    assert [i.id for i in again] == [i.id for i in items]


def test_input_items_errors(sc: Client) -> None:
    r = sc.sdk.responses.create(model="m", input="Hi")
    with pytest.raises(openai.BadRequestError) as exc:
        sc.sdk.responses.input_items.list(r.id, limit=101)
    assert exc.value.body["param"] == "limit"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        sc.sdk.responses.input_items.list(r.id, after="msg_nowhere")
    with pytest.raises(openai.NotFoundError):
        sc.sdk.responses.input_items.list("resp_nowhere")
    with pytest.raises(openai.NotFoundError):  # another key's response
        other = openai.OpenAI(base_url=str(sc.sdk.base_url), api_key="other", max_retries=0)
        other.responses.input_items.list(r.id)


# -- conversations ------------------------------------------------------------------


def test_conversation_crud(sc: Client) -> None:
    conv = sc.sdk.conversations.create(
        items=[{"role": "user", "content": "Remember 7."}], metadata={"topic": "numbers"}
    )
    assert conv.id.startswith("conv_") and conv.object == "conversation"
    assert conv.metadata == {"topic": "numbers"}
    assert sc.sdk.conversations.retrieve(conv.id).created_at == conv.created_at
    updated = sc.sdk.conversations.update(conv.id, metadata={"topic": "sevens"})
    assert updated.metadata == {"topic": "sevens"}
    added = sc.sdk.conversations.items.create(
        conv.id,
        items=[
            {"type": "message", "role": "assistant", "content": "Noted."},
            {"role": "user", "content": [{"type": "input_text", "text": "Which?"}]},
        ],
    )
    assert added.object == "list" and [i.type for i in added.data] == ["message", "message"]
    items = list(sc.sdk.conversations.items.list(conv.id, order="asc", limit=1))
    assert [i.content[0].text for i in items] == ["Remember 7.", "Noted.", "Which?"]
    assert items[1].role == "assistant" and items[1].content[0].type == "output_text"
    newest = sc.sdk.conversations.items.list(conv.id).data
    assert [i.id for i in newest] == [i.id for i in reversed(items)]
    assert sc.sdk.conversations.items.retrieve(items[1].id, conversation_id=conv.id).id == (
        items[1].id
    )
    after = sc.sdk.conversations.items.delete(items[1].id, conversation_id=conv.id)
    assert after.id == conv.id
    left = list(sc.sdk.conversations.items.list(conv.id, order="asc"))
    assert [i.id for i in left] == [items[0].id, items[2].id]
    with pytest.raises(openai.NotFoundError):
        sc.sdk.conversations.items.retrieve(items[1].id, conversation_id=conv.id)
    gone = sc.sdk.conversations.delete(conv.id)
    assert gone.deleted and gone.object == "conversation.deleted" and gone.id == conv.id
    with pytest.raises(openai.NotFoundError):
        sc.sdk.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        sc.sdk.conversations.delete(conv.id)


def test_conversation_errors_and_scope(sc: Client) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        sc.sdk.conversations.create(metadata={"k": 5})  # type: ignore[dict-item]
    assert exc.value.body["param"] == "metadata"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        sc.sdk.conversations.create(items=[{"role": "user", "content": "x"}] * 21)
    conv = sc.sdk.conversations.create()
    other = openai.OpenAI(base_url=str(sc.sdk.base_url), api_key="other", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.conversations.retrieve(conv.id)
    with pytest.raises(openai.NotFoundError):
        other.conversations.items.list(conv.id)
    with pytest.raises(openai.NotFoundError) as missing:
        sc.sdk.responses.create(model="m", input="x", conversation="conv_nowhere")
    assert missing.value.body["param"] == "conversation"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        sc.sdk.responses.create(
            model="m", input="x", conversation=conv.id, previous_response_id="resp_x"
        )


@pytest.mark.parametrize("stream", [False, True])
def test_response_on_a_conversation_runs_a_tool_loop(
    sc: Client, sim: SimServer, stream: bool
) -> None:
    conv = sc.sdk.conversations.create(items=[{"role": "user", "content": "I am in Oslo."}])

    def create(**kw: Any) -> Any:
        if not stream:
            return sc.sdk.responses.create(model="m", conversation={"id": conv.id}, **kw)
        events = list(sc.sdk.responses.create(model="m", conversation=conv.id, stream=True, **kw))
        return events[-1].response

    first = create(input="What is the weather?", tools=[WEATHER])
    assert first.conversation.id == conv.id
    call = first.output[-1]
    assert call.type == "function_call"
    second = create(
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Hail"}],
        tools=[WEATHER],
    )
    assert "Hail" in second.output_text
    messages = backend_messages(sim)
    assert [m["role"] for m in messages] == ["user", "user", "assistant", "tool"]
    assert messages[0]["content"] == "I am in Oslo."
    assert messages[2]["content"].startswith("<think>\n")  # the thinking came back
    assert json.loads(messages[2]["tool_calls"][0]["function"]["arguments"])
    items = list(sc.sdk.conversations.items.list(conv.id, order="asc"))
    kinds = [i.type for i in items]
    first_kinds, second_kinds = [o.type for o in first.output], [o.type for o in second.output]
    assert kinds == ["message", "message", *first_kinds, "function_call_output", *second_kinds]
    assert [i.id for i in items[-len(second.output) :]] == [o.id for o in second.output]
