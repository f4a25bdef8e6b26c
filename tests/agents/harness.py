"""Drive one agent CLI headless through the proxy and the simulated backend, and check the result.

Every run gets its own simulated backend and proxy on ephemeral loopback ports, a temporary
``HOME`` and work folder, and an environment built from scratch (no key or base URL of the
machine's leaks in). The prompt asks the agent to run one shell command; the simulated model
calls the agent's shell tool with it (``proxy/sim/replies.py``), so the round trip is the same
for every agent: the command writes ``marker.txt`` and prints a token, and the backend's next
request must carry the first turn's thinking and the command's output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.sim import RequestRecord, SimServer
from tests.servers import ProxyServer

# The end of reasoning: MiniMax-M2's and MiniMax-M3's closer, or a tool call that begins
# before it (the model may run straight from reasoning into a call)
THINK_END = re.compile(r"</(?:mm:)?think>|\]<\]minimax\[>\[<tool_call>|<minimax:tool_call>")
# and their openers (M3 writes one when it decides to think, sometimes twice)
THINK_START = re.compile(r"<(?:mm:)?think>")
TIMEOUT = 180  # seconds for one agent run; a hang fails the test instead of the whole CI job

# Every client's switches for update checks, telemetry and other traffic beyond its base URL.
QUIET = {
    "CI": "1",
    "NO_COLOR": "1",
    "TERM": "dumb",
    "LANG": "C.UTF-8",
    "DO_NOT_TRACK": "1",
    "NO_UPDATE_NOTIFIER": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_PROJECT_CONFIG": "1",
    "QWEN_CODE_SUPPRESS_YOLO_WARNING": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "MSWEA_CONFIGURED": "true",
    "MSWEA_SILENT_STARTUP": "1",
    "MSWEA_COST_TRACKING": "ignore_errors",
}


@dataclass
class Stack:
    """One run's simulated backend, proxy, folders and task."""

    sim: SimServer
    proxy: ProxyServer
    home: Path
    work: Path
    model: str
    token: str = field(default_factory=lambda: f"agent-ok-{uuid.uuid4().hex[:12]}")
    served: list[dict[str, Any]] = field(default_factory=list)  # the proxy's "request done" lines

    @property
    def command(self) -> str:
        return f"echo {self.token} | tee marker.txt"

    @property
    def prompt(self) -> str:
        return f"Create the marker file: run `{self.command}`"


@dataclass
class Run:
    argv: list[str]
    code: int
    stdout: str
    stderr: str

    def report(self) -> str:
        """The end of the agent's output, for a failure message."""
        return (
            f"$ {' '.join(self.argv)}\nexit {self.code}\n"
            f"--- stdout (end)\n{self.stdout[-3000:]}\n--- stderr (end)\n{self.stderr[-3000:]}"
        )


def run_cli(stack: Stack, argv: list[str], env: dict[str, str], timeout: float = TIMEOUT) -> Run:
    """Run the agent in the work folder; on timeout its whole process group is killed."""
    full = {"PATH": os.environ["PATH"], "HOME": str(stack.home), **QUIET, **env}
    proc = subprocess.Popen(
        argv, cwd=stack.work, env=full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True, text=True, errors="replace",
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n(killed after {timeout} s)"
    return Run(argv, proc.returncode, out, err)


def leftovers(home: Path) -> list[int]:
    """Processes still running with this run's HOME (a daemon the agent left behind), killed."""
    mark = f"HOME={home}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
                os.kill(int(entry.name), signal.SIGKILL)
    return found


def _chats(stack: Stack) -> list[RequestRecord]:
    return [r for r in stack.sim.requests if r.path == "/v1/chat/completions"]


def _flat(text: Any) -> str:
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    return " ".join(str(text or "").split())


class Served(logging.Handler):
    """Collects the proxy's "request done" log lines: which API the agent really spoke."""

    def __init__(self, into: list[dict[str, Any]]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and "route" in fields:
            self.into.append(fields)


def check_round_trip(
    stack: Stack, run: Run, route: str, final: str | None = "That settles it."
) -> None:
    """Exit 0 on ``route``, the command ran, and the backend got the thinking and output back."""
    assert run.code == 0, run.report()
    routes = {(s["route"], s["status"]) for s in stack.served}
    assert (route, 200) in routes, f"the agent never used {route}: {routes}\n{run.report()}"
    failed = {r for r in routes if r[1] >= 400}
    assert not failed, f"the proxy answered errors: {failed}\n{run.report()}"
    marker = stack.work / "marker.txt"
    assert marker.exists(), f"the agent did not run the command\n{run.report()}"
    assert marker.read_text().strip() == stack.token
    chats = _chats(stack)
    first = next((r for r in chats if stack.token in str(r.tool_calls)), None)
    assert first is not None, f"the backend never planned the command\n{run.report()}"
    later = chats[chats.index(first) + 1 :]
    second = next((r for r in later if _tool_turn(r.body, stack.token) is not None), None)
    assert second is not None, f"no request carried the command's output back\n{run.report()}"
    assistant = _tool_turn(second.body, stack.token)
    assert assistant is not None
    thinking = _flat(THINK_START.split(THINK_END.split(first.raw, maxsplit=1)[0])[-1])
    carried = _flat(assistant.get("content")) + " " + _flat(assistant.get("reasoning_content"))
    assert thinking in carried, f"the first turn's thinking did not come back: {assistant}"
    # M3 keeps thinking on every assistant turn: the sim reads the history as its template does.
    assert not second.thinking_lost, f"assistant turns {second.thinking_lost} lost their thinking"
    if final is not None:
        assert final in run.stdout, f"the final answer was not shown\n{run.report()}"
    assert not leftovers(stack.home), "the agent left processes running"


def _tool_turn(body: Any, token: str) -> dict[str, Any] | None:
    """The assistant message before the tool result that holds the token, if there is one."""
    messages = body.get("messages") or [] if isinstance(body, dict) else []
    for i, message in enumerate(messages):
        if message.get("role") == "tool" and token in _flat(message.get("content")):
            before = [m for m in messages[:i] if m.get("role") == "assistant"]
            return before[-1] if before else {}
    return None
