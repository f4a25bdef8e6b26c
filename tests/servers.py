"""Real servers on loopback for the service tests: the simulated backend and the proxy.

They run on one event loop in a background thread, so tests can use the
real, synchronous OpenAI and Anthropic SDK clients against them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

import aiohttp
from hypercorn.asyncio import serve
from hypercorn.config import Config

from proxy.app import create_app
from proxy.config import Settings

T = TypeVar("T")


class Background:
    """An event loop in a daemon thread; ``run`` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProxyServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1024)
        self._sock.setblocking(False)
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> ProxyServer:
        config = Config()
        config.bind = [f"fd://{self._sock.fileno()}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1
        self._task = asyncio.create_task(
            serve(self.app, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
        )
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(self.url + "/health") as resp:
                        if resp.status == 200:
                            return self
                await asyncio.sleep(0.02)
        raise RuntimeError("the proxy did not start")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
        with contextlib.suppress(OSError):  # hypercorn may have closed the fd already
            self._sock.close()


def settings_for(backend_url: str, env: Mapping[str, str] | None = None) -> Settings:
    return Settings.from_env({"TABBY_URL": backend_url, **(env or {})}, env_file=None)
