"""The ASGI response that streams SSE to the client.

Three things Starlette's StreamingResponse does not do for us:
- the body runs as a task that is cancelled the moment the client goes
  away, so its ``finally`` drops the backend connection at once (no
  orphaned generation);
- it sends a keep-alive (``: ping`` or Anthropic's ``ping`` event) after
  ``interval`` seconds without output, so proxies and clients do not cut a
  stream that waits on a long prefill;
- per chunk it does nothing but send and note the time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["SSEResponse", "unless_client_leaves", "until_disconnect"]

Message = dict[str, Any]


Send = Callable[[bytes], Awaitable[None]]


class SSEResponse:
    """Streams what ``body(send)`` sends; ``body`` runs as its own task.

    Args:
        body: writes the stream by awaiting ``send(bytes)``; cancelled if the client leaves.
        headers: response headers besides the content type.
        ping: makes the keep-alive, sent after ``interval`` seconds without output (None:
            off). It is called with the send lock held, so what it numbers (Responses
            events carry a sequence number) goes out in the order it was made.
    """

    def __init__(
        self,
        body: Callable[[Send], Awaitable[None]],
        headers: dict[str, str],
        ping: Callable[[], bytes] | None = None,
        interval: float = 15.0,
    ) -> None:
        self.body = body
        self.headers = [(b"content-type", b"text/event-stream; charset=utf-8")] + [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self.ping = ping
        self.interval = interval
        self.last = 0.0  # loop time of the last chunk sent
        self.lock = asyncio.Lock()
        self.on_close: Callable[[], None] | None = None  # called once the response has ended

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._respond(receive, send)
        finally:
            if self.on_close is not None:
                self.on_close()

    async def _respond(self, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        clock = asyncio.get_running_loop().time
        self.last = clock()
        lock = self.lock

        async def send_bytes(data: bytes) -> None:
            # The body makes its bytes before it waits here, and the lock is free
            # whenever nothing else is sending, so bytes go out in the order made.
            async with lock:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            self.last = clock()

        async def run() -> None:
            await self.body(send_bytes)
            async with lock:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        tasks = [asyncio.ensure_future(run()), asyncio.ensure_future(until_disconnect(receive))]
        if self.ping is not None:
            tasks.append(asyncio.ensure_future(self._keep_alive(send, clock)))
        try:
            await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        streamed = tasks[0]
        exc = None if streamed.cancelled() else streamed.exception()
        if exc is not None and not isinstance(exc, OSError):  # OSError: the client went away
            raise exc

    async def _keep_alive(self, send: Any, clock: Callable[[], float]) -> None:
        assert self.ping is not None
        while True:
            await asyncio.sleep(max(0.0, self.last + self.interval - clock()))
            async with self.lock:
                if clock() - self.last >= self.interval:
                    data = self.ping()
                    await send({"type": "http.response.body", "body": data, "more_body": True})
                    self.last = clock()


async def until_disconnect(receive: Any) -> None:
    """Return when the client has gone away (the request body is already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_client_leaves(receive: Any, work: Coroutine[Any, Any, None]) -> bool:
    """Run ``work``; stop it if the client disconnects first. True if it finished.

    A buffered response sends nothing until the end, so without this a client
    that gave up would leave the backend generating for no one.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(until_disconnect(receive))
    try:
        done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, gone):
            t.cancel()
        await asyncio.gather(task, gone, return_exceptions=True)
    if task in done:
        task.result()  # re-raises what the work raised
        return True
    return False
