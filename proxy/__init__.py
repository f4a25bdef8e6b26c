"""minimax-m2-proxy: serve self-hosted MiniMax-M2 to OpenAI and Anthropic clients."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
