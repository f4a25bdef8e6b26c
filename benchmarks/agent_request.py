"""A big agent request, as Claude Code sends one late in a session, in the three APIs' shapes.

600 messages (a user task, then assistant turns that each call a tool and the tool results),
24 tools with long descriptions and JSON schemas, a long system prompt: about 0.77 MB of JSON.
The same conversation is built as an Anthropic Messages body, a chat-completions body and a
Responses body; its last user message carries the sim's directives (``tail``), so the sim
answers with a scripted reply.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["agent_body", "agent_tools"]

_NAMES = (
    "Bash", "Read", "Edit", "MultiEdit", "Write", "Glob", "Grep", "LS", "Task", "TodoWrite",
    "WebFetch", "WebSearch", "NotebookRead", "NotebookEdit", "ExitPlanMode", "BashOutput",
    "KillShell", "SlashCommand", "ListMcpResources", "ReadMcpResource", "mcp__git__status",
    "mcp__git__diff", "mcp__git__log", "mcp__git__commit",
)  # fmt: skip
_PROSE = (
    "Use this tool when the task needs it. It runs in the user's working directory with the "
    "user's permissions; paths must be absolute, never relative. Prefer the specialised tools "
    "for reading and searching files over shell commands such as cat, head, tail, grep or find. "
    "When several independent calls are needed, make them in one message so they run in "
    "parallel. Quote paths that contain spaces. Output longer than 30000 characters is cut. "
)
_FILE = (
    "def handle(request):\n    body = request.json()\n    if not body.get('items'):\n"
    "        raise ValueError('no items')\n    return [normalise(item) for item in body['items']]\n"
)


def agent_tools() -> list[dict[str, Any]]:
    """24 tools in Anthropic's shape (``name``, ``description``, ``input_schema``)."""
    tools = []
    for i, name in enumerate(_NAMES):
        props = {
            f"arg_{k}": {
                "type": "string",
                "description": f"Argument {k} of {name}. " + _PROSE[:120],
            }
            for k in range(4)
        }
        props["timeout"] = {"type": "number", "description": "Milliseconds, at most 600000."}
        tools.append(
            {
                "name": name,
                "description": f"{name}: tool {i}. " + _PROSE * 3,
                "input_schema": {
                    "type": "object",
                    "properties": props,
                    "required": ["arg_0"],
                    "additionalProperties": False,
                    "$schema": "http://json-schema.org/draft-07/schema#",
                },
            }
        )
    return tools


def _turns(n_messages: int) -> list[tuple[str, str, dict[str, str], str]]:
    """(text, tool name, tool input, tool result) for each assistant turn."""
    out = []
    for i in range((n_messages - 2) // 2):
        name = _NAMES[i % len(_NAMES)]
        args = {"arg_0": f"/work/project/src/module_{i}.py", "arg_1": f"step {i}"}
        result = f"     {i}\t" + _FILE * 11
        out.append((f"Step {i}: checking module {i} before the change.", name, args, result))
    return out


def agent_body(api: str, tail: str, n_messages: int = 600) -> dict[str, Any]:
    """The request on ``api`` (``messages``, ``chat`` or ``responses``); ``tail`` ends it."""
    system = "You are Claude Code, an interactive CLI tool. " + _PROSE * 40
    task = "Refactor the request handlers so that every module validates its input."
    turns = _turns(n_messages)
    tools = agent_tools()
    if api == "messages":
        msgs: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": task}]}]
        for i, (text, name, args, result) in enumerate(turns):
            use = {"type": "tool_use", "id": f"toolu_{i:024d}", "name": name, "input": args}
            msgs.append({"role": "assistant", "content": [{"type": "text", "text": text}, use]})
            res = {"type": "tool_result", "tool_use_id": f"toolu_{i:024d}", "content": result}
            msgs.append({"role": "user", "content": [res]})
        msgs.append({"role": "user", "content": [{"type": "text", "text": tail}]})
        return {"model": "MiniMax-M2", "max_tokens": 32000, "stream": True,
                "system": [{"type": "text", "text": system}], "tools": tools,
                "messages": msgs}  # fmt: skip
    if api == "chat":
        chat: list[dict[str, Any]] = [{"role": "system", "content": system},
                                      {"role": "user", "content": task}]  # fmt: skip
        for i, (text, name, args, result) in enumerate(turns):
            call = {"id": f"call_{i:024d}", "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)}}  # fmt: skip
            chat.append({"role": "assistant", "content": text, "tool_calls": [call]})
            chat.append({"role": "tool", "tool_call_id": f"call_{i:024d}", "content": result})
        chat.append({"role": "user", "content": tail})
        functions = [{"type": "function", "function": {"name": t["name"],
                      "description": t["description"], "parameters": t["input_schema"]}}
                     for t in tools]  # fmt: skip
        return {"model": "MiniMax-M2", "stream": True, "tools": functions, "messages": chat}
    items: list[dict[str, Any]] = [{"role": "user", "content": task}]
    for i, (text, name, args, result) in enumerate(turns):
        items.append({"role": "assistant", "content": text})
        items.append({"type": "function_call", "call_id": f"call_{i:024d}", "name": name,
                      "arguments": json.dumps(args)})  # fmt: skip
        items.append({"type": "function_call_output", "call_id": f"call_{i:024d}",
                      "output": result})  # fmt: skip
    items.append({"role": "user", "content": tail})
    functions = [{"type": "function", "name": t["name"], "description": t["description"],
                  "parameters": t["input_schema"]} for t in tools]  # fmt: skip
    return {"model": "MiniMax-M2", "stream": True, "instructions": system, "tools": functions,
            "input": items}  # fmt: skip
