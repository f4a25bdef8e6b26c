"""BACKEND_TOOL_CHOICE: whether backend requests with tools carry ``tool_choice: "none"``.

A stock ``vllm serve`` (no ``--enable-auto-tool-choice``/``--tool-call-parser``)
reads a missing ``tool_choice`` as ``"auto"`` and refuses every request with
tools. With ``"none"`` it still renders the tools into the prompt through the
model's chat template and runs no tool parser (even when one is configured),
so the raw tool-call XML comes back for this proxy's parser. SGLang, though,
drops the tools from the prompt for ``"none"``; so ``auto-detect`` starts by
sending no ``tool_choice`` and switches to ``"none"`` only when the backend
refuses with vLLM's message, keeping that mode for the life of the process.

The client's own ``tool_choice`` never reaches the backend: the readers turn it
into tools offered or not, a system hint, or a call limit.
"""

from __future__ import annotations

import logging
from typing import Any

from . import metrics
from .errors import ProxyError

__all__ = ["ToolMode", "refuses_auto_tools"]

log = logging.getLogger("proxy")


def refuses_auto_tools(err: ProxyError) -> bool:
    """vLLM's 400 for tools without a tool parser ("auto" tool choice requires ...)."""
    return err.status == 400 and "enable-auto-tool-choice" in err.message


class ToolMode:
    """What this process sends: ``omit`` (no tool_choice) or ``none``, and why."""

    __slots__ = ("sending", "setting")

    def __init__(self, setting: str) -> None:
        self.setting = setting  # auto-detect, none or omit
        self.sending = "none" if setting == "none" else "omit"
        metrics.set_tool_choice(self.sending)

    def body(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` as it goes to the backend (a new dict when something is added)."""
        if self.sending == "none" and body.get("tools"):
            return {**body, "tool_choice": "none"}
        return body

    def refused(self, body: dict[str, Any], err: ProxyError) -> bool:
        """Whether ``body`` should be sent again, now with ``tool_choice: "none"``.

        Raises:
            ProxyError: the refusal with what to change, when the setting forbids a retry.
        """
        if not body.get("tools") or "tool_choice" in body or not refuses_auto_tools(err):
            return False
        if self.setting == "omit":
            raise ProxyError(
                400,
                f"{err.message} (the proxy sends tools without tool_choice because "
                "BACKEND_TOOL_CHOICE=omit; set it to auto-detect or none)",
                code="backend_tool_choice",
            )
        if self.sending != "none":
            self.sending = "none"
            metrics.set_tool_choice(self.sending)
            log.warning(
                "the backend refuses tools without a tool parser; sending tool_choice "
                '"none" with the tools from now on (BACKEND_TOOL_CHOICE=auto-detect)'
            )
        return True
