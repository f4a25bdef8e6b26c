"""The ASGI response that streams SSE to the client.

Three things Starlette's StreamingResponse does not do for us:
- the body is cancelled the moment the client goes away, so its ``finally``
  drops the backend connection at once (no orphaned generation);
- it sends a keep-alive (``: ping`` or Anthropic's ``ping`` event) after
  ``interval`` seconds without output, so proxies and clients do not cut a
  stream that waits on a long prefill;
- per chunk it does nothing but send and note the time.

What a response costs before its first chunk is paid hundreds of times over when
many requests arrive at once, so the body runs in the server's own task (one
task watches for the client leaving), the keep-alive is a loop timer rather
than a task, and the opening events go out with the first output instead of
in a write of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

__all__ = ["RAW_SEND", "SSEResponse", "unless_client_leaves", "until_disconnect"]

Message = dict[str, Any]
Send = Callable[[bytes], Awaitable[None]]

# The scope key under which the app puts the server's own ``send`` (see app.py): body
# messages skip Starlette's wrappers, which only watch for the response's start.
RAW_SEND = "proxy.raw_send"
# How long the opening events wait for the first output to go out with it.
HEAD_WAIT = 0.5


class SSEResponse:
    """Streams what ``body(send)`` sends, after ``head``.

    Args:
        body: writes the stream by awaiting ``send(bytes)``; cancelled if the client leaves.
        headers: response headers besides the content type.
        ping: makes the keep-alive, sent after ``interval`` seconds without output (None:
            off). It is made when it is due, so what it numbers (Responses events carry
            a sequence number) is in order with what the body made before and after.
        head: the stream's opening events; they go out with the body's first bytes, or
            alone after ``HEAD_WAIT`` seconds without any.
    """

    def __init__(
        self,
        body: Callable[[Send], Awaitable[None]],
        headers: dict[str, str],
        ping: Callable[[], bytes] | None = None,
        interval: float = 15.0,
        head: bytes = b"",
    ) -> None:
        self.body = body
        self.headers = [(b"content-type", b"text/event-stream; charset=utf-8")] + [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
        ]
        self.ping = ping
        self.interval = interval
        self.head = head
        self.last = 0.0  # loop time of the last chunk sent
        self.on_close: Callable[[], None] | None = None  # called once the response has ended
        self._raw: Any = None
        self._sending = False  # a body send is under way: the stream is not idle
        self._pinging: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._gone = False  # the client left and the body was cancelled for it
        self._ended = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._respond(scope, receive, send)
        finally:
            if self.on_close is not None:
                self.on_close()

    async def _respond(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        raw = self._raw = scope.get(RAW_SEND, send)
        loop = asyncio.get_running_loop()
        clock = loop.time
        self.last = clock()
        task = asyncio.current_task()
        assert task is not None
        watcher = loop.create_task(self._watch(receive, task))
        if self.head or self.ping is not None:
            wait = min(HEAD_WAIT, self.interval) if self.head else self.interval
            self._timer = loop.call_later(wait, self._tick)

        async def send_bytes(data: bytes) -> None:
            if self._pinging is not None:  # made before ``data``: it goes out first
                await self._pinging
            if self.head:
                data = self.head + data
                self.head = b""
            self._sending = True
            try:
                await raw({"type": "http.response.body", "body": data, "more_body": True})
            finally:
                self._sending = False
            self.last = clock()

        try:
            await self.body(send_bytes)
            if self._pinging is not None:
                await self._pinging
            await raw({"type": "http.response.body", "body": self.head, "more_body": False})
        except asyncio.CancelledError:
            if not self._gone:
                raise
            task.uncancel()  # our own cancellation, for the client that left: handled
        except OSError:  # the client went away mid-write
            pass
        finally:
            self._ended = True
            watcher.cancel()
            if self._timer is not None:
                self._timer.cancel()
            if self._pinging is not None:
                self._pinging.cancel()

    async def _watch(self, receive: Any, task: asyncio.Task[Any]) -> None:
        await until_disconnect(receive)
        if not self._ended:
            self._gone = True
            task.cancel()

    def _tick(self) -> None:
        """The keep-alive timer: the head, or a ping, if nothing has gone out meanwhile."""
        loop = asyncio.get_running_loop()
        self._timer = None
        if self._ended:
            return
        if self._sending or self._pinging is not None:  # not idle: look again later
            self._timer = loop.call_later(self.interval, self._tick)
            return
        if self.head:
            data, self.head = self.head, b""
        else:
            if self.ping is None:
                return
            idle = loop.time() - self.last
            if idle < self.interval:
                self._timer = loop.call_later(self.interval - idle, self._tick)
                return
            data = self.ping()
        self._pinging = loop.create_task(self._send_alone(data))

    async def _send_alone(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._raw({"type": "http.response.body", "body": data, "more_body": True})
        except OSError:
            return
        finally:
            self._pinging = None
        self.last = loop.time()
        if self.ping is not None and not self._ended:
            self._timer = loop.call_later(self.interval, self._tick)


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
