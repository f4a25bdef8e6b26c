"""Which backend model serves a client's model name.

The backend's model list is learnt at start, refreshed every
``MODEL_REFRESH_SECONDS``, and refreshed at once (at most every 30 seconds)
when a client names a model the proxy has not seen, so a model or LoRA
adapter loaded later is found; a request never waits on more than that one
shared refresh. A name the backend serves passes through unchanged; an
``alias=backend-model`` entry of ``MODEL_ALIASES`` maps to its model; any
other name (``gpt-4o``, ``claude-…``) goes to ``BACKEND_MODEL`` or the
backend's first model, so client names never reach a backend that would try
to load them.

Each backend model also has its grammar (:mod:`proxy.grammar`): with
``MODEL_GRAMMAR=auto``, M3 when its id or the ``root`` the backend reports
for it (vLLM: the checkpoint) names a MiniMax-M3 model, so several models on
one proxy each get their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .config import Settings
from .grammar import Grammar, choose

__all__ = ["Models"]

log = logging.getLogger("proxy")
_RETRY_SECONDS = 30.0


class Models:
    """The backend's model ids and the routing of client names to them.

    Args:
        settings: BACKEND_MODEL, MODEL_ALIASES and MODEL_REFRESH_SECONDS.
        fetch: returns the backend's ``/v1/models`` body, or None when it cannot.
    """

    def __init__(self, settings: Settings, fetch: Callable[[], Awaitable[Any]]) -> None:
        self._fetch = fetch
        self._pinned = settings.backend_model
        self._targets = dict(settings.model_alias_targets)
        self._aliases = settings.model_aliases
        self._every = settings.model_refresh_seconds
        self._grammar_setting = settings.model_grammar
        self.served: tuple[str, ...] = ()
        self.roots: dict[str, str] = {}  # backend model id -> the root it reports
        self.default: str | None = self._pinned
        self._next_discovery = 0.0  # monotonic time before which an unknown name waits no refresh
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._refresh_periodically())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def route(self, name: Any) -> str | None:
        """The model id to send the backend for the client's ``model`` field.

        None only when no model is known (the backend never answered and BACKEND_MODEL
        is unset): then the client's name passes through.
        """
        if not isinstance(name, str) or not name:
            return self.default
        if name in self.served:
            return name
        target = self._targets.get(name)
        if target:
            return target
        if time.monotonic() >= self._next_discovery and not self._lock.locked():
            await self.refresh()  # perhaps loaded since the last look
            if name in self.served:
                return name
        return self.default

    def grammar(self, model: str | None) -> Grammar:
        """The grammar of the backend model a request goes to (the client's name when
        no backend model is known)."""
        return choose(self._grammar_setting, model, self.roots.get(model or ""))

    def names(self) -> list[str]:
        """What ``/v1/models`` lists: the aliases, then the backend's models."""
        pinned = (self._pinned,) if self._pinned else ()
        return list(dict.fromkeys((*self._aliases, *pinned, *self.served)))

    async def refresh(self) -> None:
        async with self._lock:
            self._next_discovery = time.monotonic() + _RETRY_SECONDS
            body = await self._fetch()
            served = _model_ids(body)
            if served is None:
                if not self.served:
                    log.warning(
                        "could not read the backend's model list; %s",
                        f"using BACKEND_MODEL={self._pinned}"
                        if self._pinned
                        else "client model names pass through",
                    )
                return
            if served != self.served:
                log.info("backend models: %s", ", ".join(served) or "none")
            self.served = served
            self.roots = _roots(body)
            self.default = self._pinned or (served[0] if served else None)

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.refresh()


def _model_ids(body: Any) -> tuple[str, ...] | None:
    try:
        ids = tuple(str(card["id"]) for card in body["data"])
    except (KeyError, TypeError):
        return None
    return ids


def _roots(body: Any) -> dict[str, str]:
    """Model id -> ``root`` for the cards that have one (vLLM, SGLang)."""
    return {
        str(card["id"]): card["root"]
        for card in body["data"]
        if isinstance(card, dict) and isinstance(card.get("root"), str)
    }
