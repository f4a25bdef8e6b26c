"""``make demo``: the proxy in front of the simulated MiniMax-M2, driven by the real openai SDK.

Starts the simulated backend and the proxy on free loopback ports, then
streams a tool-call round trip: the model thinks, calls a tool, gets the
result back (with its thinking, as MiniMax-M2 needs) and answers. Then the
same round trip on the Responses API (what Codex CLI and the Agents SDK
speak), continued with ``previous_response_id``.

``--sim-mode`` (or ``SIM_MODE``; ``make demo SIM_MODE=vllm``) makes the
simulated backend behave like another server, e.g. ``vllm``: a stock
``vllm serve`` that refuses tools without a tool parser, which the proxy
detects on the first request (BACKEND_TOOL_CHOICE=auto-detect).

``--model`` (or ``MODEL``; ``make demo MODEL=MiniMax-M3``) names the model the
simulated backend serves and the client asks for: a MiniMax-M3 name runs the
round trips on M3's protocol (``<mm:think>``, ``]<]minimax[>[<tool_call>``, the
adaptive thinking mode), with the simulated M3 checking that every assistant
turn came back with its thinking.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Any

import httpx
import openai

from .grammar import names_m3
from .sim.modes import MODES

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer"},
                },
                "required": ["city"],
            },
        },
    }
]

_TTY = sys.stdout.isatty()


def _style(code: str, text: str) -> str:
    return f"\033[{code}m{text}\033[0m" if _TTY else text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    import urllib.request

    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"demo: a server exited early ({proc.args!r})")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"demo: {url} did not come up")


def _stream_turn(
    client: openai.OpenAI, messages: list[dict[str, Any]], model: str
) -> dict[str, Any]:
    """Stream one turn, printing it as it arrives; return the assistant message."""
    reasoning, content = "", ""
    calls: dict[int, dict[str, Any]] = {}
    section = None
    stream: Any = client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
        extra_body={"reasoning_split": True},
    )
    for chunk in stream:
        delta = chunk.choices[0].delta
        think = (delta.model_extra or {}).get("reasoning_content")
        if think:
            if section != "think":
                print(_style("2", "\n  thinking: "), end="")
                section = "think"
            print(_style("2;3", think), end="", flush=True)
            reasoning += think
        if delta.content:
            if section != "text":
                print(_style("1", "\n  answer:   "), end="")
                section = "text"
            print(delta.content, end="", flush=True)
            content += delta.content
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": tc.id, "name": "", "arguments": ""})
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
                print(_style("36", f"\n  tool call: {tc.function.name}("), end="", flush=True)
                section = "call"
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
                print(_style("36", tc.function.arguments), end="", flush=True)
    print(_style("36", ")") if section == "call" else "")
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "reasoning_content": reasoning,
    }
    if calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in calls.values()
        ]
    return message


def _stream_response(client: openai.OpenAI, model: str, **request: Any) -> Any:
    """Stream one Responses turn, printing it as it arrives; return the final response."""
    tools: Any = [{"type": "function", **t["function"]} for t in TOOLS]  # type: ignore[dict-item]
    with client.responses.stream(model=model, tools=tools, **request) as stream:
        for event in stream:
            if event.type == "response.output_item.added":
                item = event.item
                label = {"reasoning": "thinking: ", "message": "answer:   "}.get(item.type)
                if label:
                    print(_style("2" if item.type == "reasoning" else "1", "\n  " + label), end="")
                elif item.type == "function_call":
                    print(_style("36", f"\n  {item.type}: {item.name}("), end="", flush=True)
            elif event.type == "response.reasoning_summary_text.delta":
                print(_style("2;3", event.delta), end="", flush=True)
            elif event.type == "response.output_text.delta":
                print(event.delta, end="", flush=True)
            elif event.type == "response.function_call_arguments.delta":
                print(_style("36", event.delta), end="", flush=True)
            elif event.type == "response.function_call_arguments.done":
                print(_style("36", ")"), end="")
        print()
        return stream.get_final_response()


def _responses_round_trip(client: openai.OpenAI, model: str) -> None:
    print(_style("1", "\nthe same on the Responses API (Codex CLI, OpenAI Agents SDK):"))
    question = "What's the weather in Tokyo? Use the tool."
    print(_style("1", "user: ") + question)
    first = _stream_response(client, model, input=question)
    outputs = []
    for item in first.output:
        if item.type == "function_call":
            result = f"{json.loads(item.arguments).get('city', '?')}: 24 degrees, clear"
            print(_style("33", f"  function_call_output for {item.call_id}: {result}"))
            outputs.append(
                {"type": "function_call_output", "call_id": item.call_id, "output": result}
            )
    print(_style("1", f"\nsecond turn (previous_response_id={first.id}):"))
    _stream_response(client, model, input=outputs, previous_response_id=first.id)


def _m3_check(sim_url: str) -> None:
    """What the simulated M3 found in each history: every assistant turn's thinking back."""
    records = httpx.get(f"{sim_url}/_sim/requests").json()
    chats = [r for r in records if r["path"] == "/v1/chat/completions"]
    checked = sum(r["history_checked"] for r in chats)
    lost = [r["thinking_lost"] for r in chats if r["thinking_lost"]]
    modes = sorted({r["thinking_mode"] for r in chats})
    print(f"MiniMax-M3 template check: {checked} assistant turns sent back, "
          f"{'all with their thinking' if not lost else f'thinking LOST in {lost}'} "
          f"(thinking_mode: {', '.join(modes)})")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(prog="python -m proxy.demo", description=__doc__)
    default = os.environ.get("SIM_MODE") or "tabby"
    cli.add_argument(
        "--sim-mode",
        choices=MODES,
        default=default,
        help="the simulated backend's manners (default: SIM_MODE or tabby)",
    )
    cli.add_argument(
        "--model",
        default=os.environ.get("MODEL") or "MiniMax-M2",
        help="the model served and asked for (default: MODEL or MiniMax-M2; MiniMax-M3 for M3)",
    )
    args = cli.parse_args(argv)
    mode, model = args.sim_mode, args.model
    sim_port, proxy_port = _free_port(), _free_port()
    env = {**os.environ, "TABBY_URL": f"http://127.0.0.1:{sim_port}", "PORT": str(proxy_port),
           "HOST": "127.0.0.1", "LOG_LEVEL": "warning"}  # fmt: skip
    sim_args = ["--port", str(sim_port), "--tokens-per-second", "120", "--mode", mode,
                "--model", model] + (["--strict-thinking"] if names_m3(model) else [])  # fmt: skip
    with ExitStack() as stack:
        sim = subprocess.Popen([sys.executable, "-m", "proxy", "sim", *sim_args])
        stack.callback(sim.terminate)
        _wait(f"http://127.0.0.1:{sim_port}/health", sim)
        proxy = subprocess.Popen([sys.executable, "-m", "proxy"], env=env)
        stack.callback(proxy.terminate)
        _wait(f"http://127.0.0.1:{proxy_port}/health", proxy)
        base = f"http://127.0.0.1:{proxy_port}/v1"
        print(_style("1", f"minimax-m2-proxy on {base}, simulated {model} ({mode}) behind it\n"))

        client = openai.OpenAI(base_url=base, api_key="demo")
        messages: list[dict[str, Any]] = [
            {"role": "user", "content": "What's the weather in Paris? Use the tool."}
        ]
        print(_style("1", "user: ") + messages[0]["content"])
        assistant = _stream_turn(client, messages, model)
        messages.append(assistant)
        for call in assistant.get("tool_calls", []):
            args = json.loads(call["function"]["arguments"])
            result = f"{args.get('city', '?')}: 18 degrees, light rain"
            print(_style("33", f"  tool result for {call['id']}: {result}"))
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        print(_style("1", "\nsecond turn (history sent back with the thinking):"))
        _stream_turn(client, messages, model)
        _responses_round_trip(client, model)
        print(_style("32", "\nround trips complete: thinking, tool call, tool result, answer."))
        ready = httpx.get(f"http://127.0.0.1:{proxy_port}/ready").json()
        print(f"backend tool_choice sent with tools: {ready['backend_tool_choice']} "
              f"(BACKEND_TOOL_CHOICE={ready['backend_tool_choice_setting']})")  # fmt: skip
        if names_m3(model):
            _m3_check(f"http://127.0.0.1:{sim_port}")


if __name__ == "__main__":
    main()
