"""The agent CLIs `make test-agents` drives, pinned, and the cached folder they are installed in.

The folder lives outside the clone (CI runs a fresh clone each time) and is named by a hash of the
pins, so changing a pin installs afresh and never mixes versions.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# name: (npm package, exact version). One `npm install` for all of them.
NPM = {
    "claude-code": ("@anthropic-ai/claude-code", "2.1.332"),
    "codex": ("@openai/codex", "0.171.0"),
    "opencode": ("opencode-ai", "1.18.33"),
    "qwen-code": ("@qwen-code/qwen-code", "0.24.4"),
    "cline": ("cline", "3.0.65"),
}
# These two only link the platform package's binary into place, offline (--ignore-scripts
# skipped it); other packages' scripts would fetch from the network.
NPM_REBUILD = ("@anthropic-ai/claude-code", "opencode-ai")
# name: (PyPI package, exact version). Each gets a virtualenv of its own: their pins would fight
# ours and each other's (aider pins every dependency exactly).
PYPI = {
    "aider": ("aider-chat", "0.86.2"),
    "mini-swe-agent": ("mini-swe-agent", "2.4.6"),
}


def clients_dir() -> Path:
    """Where the clients are installed: ``AGENT_CLIENTS_DIR``, else a folder under ~/.cache."""
    if os.environ.get("AGENT_CLIENTS_DIR"):
        return Path(os.environ["AGENT_CLIENTS_DIR"])
    pins = repr((sorted(NPM.values()), sorted(PYPI.values()), NPM_REBUILD)).encode()
    digest = hashlib.sha256(pins).hexdigest()[:16]
    return Path.home() / ".cache" / "minimax-m2-proxy" / "agents" / digest
