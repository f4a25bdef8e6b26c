"""The simulated MiniMax backend: a test double for the model, never for the proxy.

``server`` is the OpenAI-compatible HTTP server and its faults, ``replies``
plans what the model writes, ``modes`` gives it the manners of each real
server (raw text, or a server's own parsers).
"""

from __future__ import annotations

from .modes import MODES
from .replies import plan_reply, render_prompt
from .server import FAULTS, RequestRecord, SimOptions, SimServer, create_app, main, start_sim

__all__ = [
    "FAULTS",
    "MODES",
    "RequestRecord",
    "SimOptions",
    "SimServer",
    "create_app",
    "main",
    "plan_reply",
    "render_prompt",
    "start_sim",
]
