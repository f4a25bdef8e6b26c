"""Background responses (``background: true``): generated to their end whoever listens.

The create call answers at once (``queued``); a task of this process runs the
generation and writes everything to the records store (memory, SQLite or
Redis), so any replica sharing the store can serve the run:

- ``{id}`` is the response record, rewritten when an item is done and at the end,
  so ``GET /v1/responses/{id}`` shows progress and the final result;
- ``{id}:ev:{n}`` are the stream's events, in chunks written every ``_POLL``
  seconds (never per token), numbered like a live stream (``sequence_number``
  0, 1, …; no keep-alives among them), so ``GET …?stream=true&starting_after=N``
  replays the events after N and follows new chunks as they are written;
- ``{id}:cancel`` asks the process running it to stop (``POST …/cancel``, from
  any replica); the backend request is closed and the run ends ``cancelled``;
- ``{id}:beat`` is the time the running process last said it is alive. A
  proxy that stops marks its runs ``failed``; one that died cannot, so a run
  whose beat is older than ``BACKGROUND_LEASE_SECONDS`` is marked ``failed``
  by whoever looks at it next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.responses import Response

from ..errors import ProxyError
from ..metrics import Tracker
from ..request import Plan
from ..service import pump
from ..store import StoredTurn
from ..streaming import Send, SSEResponse
from ..turn import Turn
from . import RESPONSES, keep_response
from .conversations import store_call
from .items import normalised
from .writer import ResponsesStream

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..service import Proxy

__all__ = ["cancel", "follow", "follower", "forget", "runs_of", "settle", "start"]

log = logging.getLogger("proxy")
_enc = msgspec.json.Encoder().encode
_POLL = 0.1  # seconds between looks at the store (new events, the cancel flag)
_CANCEL_WAIT = 100  # polls a cancel waits for another replica's run to end
_LIVE = ("queued", "in_progress")
_ENDS = tuple(
    b"event: response." + kind for kind in (b"completed", b"incomplete", b"failed", b"cancelled")
)
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Run:
    """One background run of this process; ``reason`` says why its task was cancelled."""

    __slots__ = ("ending", "reason", "scope", "task")

    def __init__(self, scope: str) -> None:
        self.scope = scope  # whose it is: another key can neither stop nor delete it
        self.task: asyncio.Task[None] | None = None
        self.reason = ""  # "cancel", "delete" or "shutdown", set before the task is cancelled
        self.ending = False  # generated: only the records are left to write


class Runs:
    """The background runs of one app."""

    def __init__(self) -> None:
        self.running: dict[str, Run] = {}

    async def stop(self) -> None:
        """Stop every run as failed (the proxy is going away); wait until each is marked."""
        tasks = []
        for run in list(self.running.values()):
            if run.task is not None:
                run.reason = "shutdown"
                run.task.cancel()
                tasks.append(run.task)
        await asyncio.gather(*tasks, return_exceptions=True)


_RUNS: weakref.WeakKeyDictionary[Proxy, Runs] = weakref.WeakKeyDictionary()


def runs_of(proxy: Proxy) -> Runs:
    runs = _RUNS.get(proxy)
    if runs is None:
        runs = _RUNS[proxy] = Runs()
    return runs


class EventLog:
    """A run's events on their way to the store: gathered, then written in chunks."""

    def __init__(self, proxy: Proxy, scope: str, rid: str) -> None:
        self._records, self._scope, self._rid = proxy.records, scope, rid
        self._ttl = proxy.settings.responses_ttl_seconds
        self._pending: list[bytes] = []
        self._written = 0
        self._lock = asyncio.Lock()

    def add(self, data: bytes) -> None:
        if data:
            self._pending.append(data)

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            data = b"".join(self._pending)
            self._pending.clear()
            key = f"{self._rid}:ev:{self._written}"
            try:
                await self._records.put_record(self._scope, key, data.decode(), self._ttl)
            except Exception as exc:  # kept for the next flush; the run goes on
                log.warning("could not write the events of %s: %s", self._rid, exc)
                self._pending.insert(0, data)
                return
            self._written += 1


async def start(
    proxy: Proxy,
    plan: Plan,
    scope: str,
    rid: str,
    tracker: Tracker,
    turn: Turn,
    slots: list[Callable[[], None]],
    save: Callable[[StoredTurn], Awaitable[None]] | None,
) -> Response | SSEResponse:
    """Keep the response as ``queued``, start its run (``turn``: the request's, whose tokens
    count against the key's tpm), and answer: the queued response, or (``stream``) its events
    as they come.

    Raises:
        ProxyError: 503 when the store cannot keep it (nothing was started).
    """
    echo = plan.extra
    echo.items = normalised(echo.items)  # ids given once: the record and the end agree
    writer = RESPONSES.stream(plan, proxy.settings)
    assert isinstance(writer, ResponsesStream)
    queued = writer.snapshot("queued")
    record = {"response": queued, "input": echo.items}
    ttl = proxy.settings.responses_ttl_seconds
    await store_call(proxy.records.put_record(scope, writer.id, record, ttl))
    await store_call(proxy.records.put_record(scope, f"{writer.id}:beat", time.time(), ttl))
    run = Run(scope)
    runs_of(proxy).running[writer.id] = run
    shaper = RESPONSES.shaper(plan)
    job = _Job(proxy, plan, scope, writer, run)
    run.task = asyncio.create_task(job.run(turn, shaper, tracker, slots, save))
    headers = {"x-request-id": rid}
    if plan.stream:
        return follower(proxy, scope, writer.id, -1, headers)
    return Response(_enc(queued), media_type="application/json", headers=headers)


class _Job:
    """The task of one run: the generation, its events and records, its end."""

    def __init__(
        self, proxy: Proxy, plan: Plan, scope: str, writer: ResponsesStream, run: Run
    ) -> None:
        self.proxy, self.plan, self.scope, self.writer, self.state = proxy, plan, scope, writer, run
        self.events = EventLog(proxy, scope, writer.id)
        # The watcher is stopped by this, never cancelled: a store write cut in the
        # middle could lose a chunk of events or land after the final record.
        self.stop = asyncio.Event()

    async def run(
        self,
        turn: Any,
        shaper: Any,
        tracker: Tracker,
        slots: list[Callable[[], None]],
        save: Callable[[StoredTurn], Awaitable[None]] | None,
    ) -> None:
        writer, events = self.writer, self.events
        status, info = 200, {}
        events.add(writer.start())
        watcher = asyncio.create_task(self._watch(asyncio.current_task()))
        try:
            try:
                await self._generate(turn, shaper, tracker, save)
            finally:
                self.state.ending = True  # a cancel from now on waits for the end instead
                self.stop.set()
                await asyncio.gather(watcher, return_exceptions=True)
            end = writer.end(turn, shaper.calls)
            assert writer.final is not None
            await keep_response(self.proxy, self.scope, self.plan, writer.final)
            events.add(end)
        except Exception as exc:  # a backend failure (ProxyError), or a fault of ours
            err = exc if isinstance(exc, ProxyError) else _internal(exc)
            status, info = err.status, {"error": err.code or err.message}
            events.add(writer.error(err))
            await self._put_final()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # this task ends normally: the run is over, not lost
            reason = self.state.reason
            status, info = 499, {"error": reason or "cancelled"}
            events.add(writer.cancelled() if reason in ("cancel", "delete") else self._stopped())
            if reason != "delete":
                await self._put_final()
            else:  # deleted while it ran: what the watcher wrote last goes too
                with contextlib.suppress(Exception):
                    await self.proxy.records.delete_record(self.scope, writer.id)
        finally:
            await events.flush()
            runs_of(self.proxy).running.pop(writer.id, None)
            for release in slots:  # the key's slot, held while the run lasts
                release()
            tracker.done(status, info)

    def _stopped(self) -> bytes:
        message = "the proxy stopped (a restart or shutdown) before this background response ended"
        return self.writer.error(ProxyError(503, message, code="server_error"))

    async def _generate(
        self,
        turn: Any,
        shaper: Any,
        tracker: Tracker,
        save: Callable[[StoredTurn], Awaitable[None]] | None,
    ) -> None:
        writer, events = self.writer, self.events

        async def sink(ops: list[Any]) -> None:
            events.add(writer.ops(ops))
            tracker.chunk()

        resp = await self.proxy.open(self.plan)
        # The pump closes the backend response as it ends: a cancelled run stops at once.
        last = await pump(resp, turn, shaper, sink, save)
        if last:
            await sink(last)

    async def _put_final(self) -> None:
        record = {"response": self.writer.final, "input": self.plan.extra.items}
        await _put(self.proxy, self.scope, self.writer.id, record)

    async def _watch(self, main: asyncio.Task[Any] | None) -> None:
        """Every ``_POLL``: write the new events, the progress, the beat; obey a cancel."""
        proxy, scope, rid = self.proxy, self.scope, self.writer.id
        beat_every = proxy.settings.background_lease_seconds / 3
        next_beat, shown = 0.0, -1
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), _POLL)
            if self.stop.is_set():
                return
            await self.events.flush()
            if len(self.writer.items) != shown:
                shown = len(self.writer.items)
                record = {
                    "response": self.writer.snapshot("in_progress"),
                    "input": self.plan.extra.items,
                }
                await _put(proxy, scope, rid, record)
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + beat_every
                await _put(proxy, scope, f"{rid}:beat", time.time())
            with contextlib.suppress(Exception):
                flag = await proxy.records.get_record(scope, f"{rid}:cancel")
                if flag and main is not None:
                    self.state.reason = "delete" if flag == "delete" else "cancel"
                    main.cancel()
                    return


def _internal(exc: Exception) -> ProxyError:
    log.error("background run failed", exc_info=exc)
    return ProxyError(500, "internal proxy error; see the proxy log")


async def _put(proxy: Proxy, scope: str, key: str, value: Any) -> None:
    try:
        await proxy.records.put_record(scope, key, value, proxy.settings.responses_ttl_seconds)
    except Exception as exc:  # the run goes on; the next write may get through
        log.warning("could not write %s: %s", key, exc)


async def settle(proxy: Proxy, scope: str, record: Any) -> Any:
    """The record, marked ``failed`` if its run is live but its process is gone."""
    response = record["response"]
    rid = response["id"]
    if response["status"] not in _LIVE or rid in runs_of(proxy).running:
        return record
    beat = await store_call(proxy.records.get_record(scope, f"{rid}:beat"))
    if isinstance(beat, (int, float)) and time.time() - beat <= (
        proxy.settings.background_lease_seconds
    ):
        return record
    message = "the proxy running this background response stopped before it ended"
    error = {"code": "server_error", "message": message}
    record = {**record, "response": {**response, "status": "failed", "error": error}}
    await store_call(
        proxy.records.put_record(scope, rid, record, proxy.settings.responses_ttl_seconds)
    )
    return record


async def _stop_here(proxy: Proxy, scope: str, rid: str, reason: str) -> bool:
    """Stop the run of ``rid`` if this process runs it for this key; False if not."""
    run = runs_of(proxy).running.get(rid)
    if run is None or run.task is None or run.scope != scope:
        return False
    if not run.ending:
        run.reason = reason
        run.task.cancel()
    await asyncio.wait([run.task])
    return True


async def forget(proxy: Proxy, scope: str, rid: str) -> bool:
    """Delete a kept response (False: there was none); its background run, if one is
    going, is stopped first and leaves nothing behind."""
    here = await _stop_here(proxy, scope, rid, "delete")
    # A run stopped here has deleted its record itself.
    deleted = await store_call(proxy.records.delete_record(scope, rid)) or here
    if deleted and not here:  # perhaps running on another replica: it stops and deletes
        ttl = proxy.settings.responses_ttl_seconds
        await store_call(proxy.records.put_record(scope, f"{rid}:cancel", "delete", ttl))
    return deleted


async def cancel(proxy: Proxy, scope: str, record: Any) -> Any:
    """Stop a background run; the response as it ended (a finished one as it was)."""
    rid = record["response"]["id"]
    here = await _stop_here(proxy, scope, rid, "cancel")
    if not here and record["response"]["status"] in _LIVE:
        ttl = proxy.settings.responses_ttl_seconds
        await store_call(proxy.records.put_record(scope, f"{rid}:cancel", True, ttl))
    for _ in range(_CANCEL_WAIT):
        found = await store_call(proxy.records.get_record(scope, rid))
        if found is None:
            break
        record = await settle(proxy, scope, found)
        if record["response"]["status"] not in _LIVE:
            break
        await asyncio.sleep(_POLL)
    return record["response"]


def follower(
    proxy: Proxy, scope: str, rid: str, after: int, headers: dict[str, str]
) -> SSEResponse:
    """The events of a background run after ``sequence_number`` ``after``, as they come."""

    async def body(send: Send) -> None:
        await follow(proxy, scope, rid, after, send)

    return SSEResponse(
        body,
        {**_SSE_HEADERS, **headers},
        lambda: b": keep-alive\n\n",  # a comment: the events' numbering stays the run's
        proxy.settings.ping_interval,
    )


async def follow(proxy: Proxy, scope: str, rid: str, after: int, send: Send) -> None:
    """Send the run's events after ``after`` until its last one.

    A run whose process died never writes its end: once the record says it is over
    (``settle``), the end is made from the record.
    """
    records = proxy.records
    chunk_no, seq, polls = 0, 0, 0
    while True:
        chunk = await store_call(records.get_record(scope, f"{rid}:ev:{chunk_no}"))
        if chunk is not None:
            chunk_no += 1
            data = chunk.encode()
            count = data.count(b"\n\n")
            if seq > after:
                await send(data)
            elif seq + count - 1 > after:
                events = data.split(b"\n\n")[after + 1 - seq : -1]
                await send(b"".join(e + b"\n\n" for e in events))
            seq += count
            if data[:-2].rsplit(b"\n\n", 1)[-1].startswith(_ENDS):
                return
            continue
        polls += 1
        if polls % 10 == 0:  # about every second: is the run still going?
            record = await store_call(records.get_record(scope, rid))
            if record is None:
                return
            record = await settle(proxy, scope, record)
            over = record["response"]["status"] not in _LIVE
            last = await store_call(records.get_record(scope, f"{rid}:ev:{chunk_no}"))
            if over and last is None:
                if seq > after:
                    kind = "response." + record["response"]["status"]
                    end = {"type": kind, "sequence_number": seq, "response": record["response"]}
                    await send(b"event: " + kind.encode() + b"\ndata: " + _enc(end) + b"\n\n")
                return
            continue
        await asyncio.sleep(_POLL)
