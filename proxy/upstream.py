"""The backend side: one streamed chat-completions request, read chunk by chunk.

The proxy always streams from the backend, also for a client that asked for
one buffered response: there is one pipeline, and a long generation is
guarded by an idle timeout rather than a total one.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Mapping
from typing import Any

import aiohttp
import msgspec

from .config import Settings
from .errors import ProxyError
from .sse import SSEDecoder, SSEError, SSEEvent

__all__ = [
    "NETWORK_ERRORS",
    "ChunkReader",
    "IdleWatch",
    "UpChunk",
    "UpDelta",
    "UpToolCall",
    "UpUsage",
    "backend_error",
    "backend_headers",
    "network_error",
    "open_stream",
    "release",
]

log = logging.getLogger("proxy.upstream")


class UpFunction(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class UpToolCall(msgspec.Struct, gc=False):
    index: int = 0
    id: str | None = None
    function: UpFunction | None = None


class UpDelta(msgspec.Struct, gc=False):
    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    tool_calls: list[UpToolCall] | None = None


class UpChoice(msgspec.Struct, gc=False):
    delta: UpDelta | None = None
    finish_reason: str | None = None
    stop_reason: str | int | None = None  # vLLM: the stop string that ended generation
    logprobs: msgspec.Raw = msgspec.Raw()  # passed through undecoded; b"null" when not asked


class UpPromptDetails(msgspec.Struct, gc=False):
    cached_tokens: int | None = None  # vLLM, SGLang: prompt tokens served from the prefix cache


class UpUsage(msgspec.Struct, gc=False):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: UpPromptDetails | None = None


class UpError(msgspec.Struct, gc=False):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class UpChunk(msgspec.Struct, gc=False):
    """The fields of a backend chunk the proxy reads; everything else is skipped unparsed."""

    choices: list[UpChoice] = []
    usage: UpUsage | None = None
    error: UpError | None = None


_decode_chunk = msgspec.json.Decoder(UpChunk).decode
_encode = msgspec.json.Encoder().encode
_MAX_ERROR_BODY = 64 * 1024
_END_WAIT = 1.0
_LARGE_BODY = 1024 * 1024


def backend_headers(settings: Settings, **extra: str) -> dict[str, str]:
    """JSON request headers for the backend, with its key when BACKEND_API_KEY is set."""
    headers = {"content-type": "application/json", **extra}
    if settings.backend_api_key:
        headers["authorization"] = f"Bearer {settings.backend_api_key}"
    return headers


async def open_stream(
    session: aiohttp.ClientSession,
    settings: Settings,
    body: dict[str, Any],
    extra: Mapping[str, str] | None = None,
) -> aiohttp.ClientResponse:
    """Send the request (with ``extra`` headers); return the response once the backend
    accepted it.

    A connection that fails before the backend answered is tried once more: nothing has
    reached the client, and behind a router or load balancer the second attempt may reach
    another replica (a pooled connection the backend had closed fails the same way). Once
    the backend answered, nothing is ever sent again.

    Raises:
        ProxyError: 502 unreachable, 504 timeout, or the backend's own error mapped.
    """
    headers = backend_headers(settings, accept="text/event-stream")
    if extra:
        headers.update(extra)
    data = _encode(body)
    try:
        try:
            resp = await _post(session, settings, data, headers)
        except aiohttp.ClientConnectionError as exc:
            if isinstance(exc, aiohttp.ServerTimeoutError):
                raise
            log.warning("the backend connection failed before an answer (%s); trying again", exc)
            resp = await _post(session, settings, data, headers)
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise ProxyError(504, "the backend did not answer in time", code="backend_timeout") from exc
    except aiohttp.ClientError as exc:
        raise ProxyError(
            502, f"the backend at {settings.backend_url} is unreachable", code="backend_unreachable"
        ) from exc
    if resp.status >= 400:
        try:
            raw = await resp.content.read(_MAX_ERROR_BODY)
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        finally:
            resp.close()
        raise backend_error(resp.status, raw, resp.headers.get("retry-after"))
    return resp


async def _post(
    session: aiohttp.ClientSession, settings: Settings, data: bytes, headers: dict[str, str]
) -> aiohttp.ClientResponse:
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=settings.backend_connect_timeout,
        sock_read=settings.backend_idle_timeout,
    )
    # aiohttp writes large bytes in one go (and warns); a file object goes out in pieces.
    payload: bytes | io.BytesIO = data if len(data) < _LARGE_BODY else io.BytesIO(data)
    url = settings.backend_url + "/v1/chat/completions"
    return await session.post(url, data=payload, headers=headers, timeout=timeout)


class IdleWatch:
    """The backend's idle timeout over a streamed body, taken over from aiohttp.

    aiohttp's ``sock_read`` timeout cancels and re-arms a loop timer on every network
    read: about 2 µs at every token of every stream. This timer instead looks at the
    body's byte count a few times per timeout, and fails the read once nothing came
    for between one and 1.25 timeouts while everything that came was taken: a reader
    that is slow to take the bytes (its own client reads slowly) is not a stalled
    backend. Add each read's length to :attr:`taken`; :meth:`stop` it when done.
    """

    __slots__ = ("_content", "_handle", "_seen", "_step", "_still", "taken")
    _CHECKS = 4  # looks per timeout: how late (1 / _CHECKS of it, at most) a stall is caught

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._handle: asyncio.TimerHandle | None = None
        self.taken = 0
        conn = resp.connection
        protocol = conn.protocol if conn is not None else None
        timeout = getattr(protocol, "read_timeout", None)
        if not timeout:
            return
        # The next read cancels the timer aiohttp set for it, and sets none again.
        protocol.read_timeout = None  # type: ignore[union-attr]
        self._content = resp.content
        self._step = timeout / self._CHECKS
        self._seen = -1
        self._still = 0
        self._handle = asyncio.get_running_loop().call_later(self._step, self._check)

    def _check(self) -> None:
        seen = self._content.total_bytes
        if seen != self._seen or seen != self.taken:
            self._seen, self._still = seen, 0
        else:
            self._still += 1
            if self._still >= self._CHECKS:
                self._handle = None
                err = aiohttp.ServerTimeoutError("Timeout on reading data from socket")
                self._content.set_exception(err)
                return
        self._handle = asyncio.get_running_loop().call_later(self._step, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def release(resp: aiohttp.ClientResponse) -> None:
    """Let the connection of a stream the backend ended (``[DONE]``) serve the next request.

    The end of the HTTP message usually came in the same read as ``[DONE]``, and aiohttp
    has put the connection back in its pool already. Otherwise the end has
    ``_END_WAIT`` seconds to come (aiohttp pools the connection when it does) before the
    connection is closed. A new connection per request would cost both sides a connect
    and an accept: when hundreds of requests arrive at once, that is time every stream waits.
    """
    if resp.connection is not None:
        asyncio.get_running_loop().call_later(_END_WAIT, resp.close)


def backend_error(status: int, raw: bytes, retry_after: str | None = None) -> ProxyError:
    """Map a backend error response to what the client should see."""
    message, code = _error_text(raw)
    if code == "context_length_exceeded" or "context length" in message.lower():
        return ProxyError(400, message, code="context_length_exceeded")
    if status in (400, 413, 422):
        return ProxyError(400, f"the backend rejected the request: {message}", code=code)
    if status == 404:
        return ProxyError(404, f"the backend answered 404: {message}", code=code)
    if status == 429:
        return ProxyError(429, f"the backend is rate limiting: {message}", retry_after=retry_after)
    if status == 503:
        return ProxyError(
            503, f"the backend is unavailable: {message}", retry_after=retry_after or "1"
        )
    if status in (401, 403):
        return ProxyError(
            502,
            f"the backend refused the proxy's credentials ({status}): {message}; "
            "check BACKEND_API_KEY",
            code="backend_auth",
        )
    return ProxyError(502, f"the backend failed ({status}): {message}", code="backend_error")


def _error_text(raw: bytes) -> tuple[str, str | None]:
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return (text[:500] or "no details"), None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = err.get("code")
            return str(err.get("message") or err), str(code) if code is not None else None
        if isinstance(err, str):
            return err, None
        detail = body.get("detail")  # FastAPI (TabbyAPI) shape
        if detail is not None:
            return (detail if isinstance(detail, str) else _encode(detail).decode()), None
    return raw.decode("utf-8", "replace")[:500], None


class ChunkReader:
    """Backend event-stream bytes in, chunks out (sans-IO): the steps of one network read.

    Raises ProxyError for an error event from the backend (502, or 400 for a context
    overflow), a malformed stream, or, at :meth:`close`, a stream that ended before
    the backend finished.
    """

    __slots__ = ("_decoder", "done", "finished")

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.done = False  # [DONE] seen: stop reading
        self.finished = False  # a finish_reason seen

    def feed(self, data: bytes) -> list[UpChunk]:
        try:
            events = self._decoder.feed(data)
        except SSEError as exc:
            raise ProxyError(502, f"the backend's stream is malformed: {exc}") from exc
        return self._chunks(events)

    def close(self) -> list[UpChunk]:
        chunks = [] if self.done else self._chunks(self._decoder.close())
        if not self.finished and not self.done:
            raise ProxyError(
                502, "the backend ended the stream without finishing", code="backend_cut"
            )
        return chunks

    def _chunks(self, events: list[SSEEvent]) -> list[UpChunk]:
        chunks: list[UpChunk] = []
        for event in events:
            if event.data.startswith("[DONE]"):
                self.done = True
                break
            chunk = _chunk(event.data)
            if chunk is None:
                continue
            if chunk.error is not None:
                raise _stream_error(chunk.error)
            if chunk.choices and chunk.choices[0].finish_reason:
                self.finished = True
            chunks.append(chunk)
        return chunks


# What reading the backend's body can raise, and what the client is told.
NETWORK_ERRORS = (
    TimeoutError,
    aiohttp.ServerTimeoutError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientConnectionError,
)


def network_error(exc: BaseException) -> ProxyError:
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return ProxyError(504, "the backend stalled mid-stream", code="backend_timeout")
    return ProxyError(502, "the backend closed the stream early", code="backend_cut")


def _chunk(data: str) -> UpChunk | None:
    try:
        return _decode_chunk(data)
    except msgspec.DecodeError:
        # One corrupt chunk should not end a long generation; it is logged.
        log.warning("skipping a backend chunk that is not valid JSON: %.200r", data)
        return None


def _stream_error(err: UpError) -> ProxyError:
    message = err.message or "the backend reported an error mid-stream"
    if err.code == "context_length_exceeded":
        return ProxyError(400, message, code="context_length_exceeded")
    return ProxyError(502, f"the backend failed mid-stream: {message}", code="backend_error")
