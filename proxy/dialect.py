"""What every API the proxy speaks provides: the seam between the pipeline and an API.

A dialect reads a request into a :class:`Plan`, says how to shape the
output, makes its stream and buffered writers, and renders errors. The
pipeline between them (backend, parser, shaper) is one and the same; each
API lives in its own package (``chat``, ``messages``, ``responses``) with
its reader and writer, and none of them imports another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from starlette.responses import Response

from .config import Settings
from .errors import ProxyError
from .request import Plan
from .shape import Op, Shaper
from .turn import Turn

if TYPE_CHECKING:
    from .service import Proxy

__all__ = ["Dialect", "Result", "Stateless", "StreamWriter"]


class StreamWriter(Protocol):
    def start(self) -> bytes: ...
    def ping(self) -> bytes: ...
    def ops(self, ops: list[Op]) -> bytes: ...
    def end(self, turn: Turn, calls: int) -> bytes: ...
    def error(self, err: ProxyError) -> bytes: ...


class Result(Protocol):
    def ops(self, ops: list[Op]) -> None: ...
    def body(self, turn: Turn, calls: int) -> bytes: ...


class Dialect(Protocol):
    name: str
    id_headers: tuple[str, ...]  # response headers that carry the request id

    def plan(self, body: Any, settings: Settings, backend_model: str | None) -> Plan: ...
    def shaper(self, plan: Plan) -> Shaper: ...
    def stream(self, plan: Plan, settings: Settings) -> StreamWriter: ...
    def result(self, plan: Plan, settings: Settings) -> Result: ...
    def error(self, err: ProxyError, rid: str) -> Response: ...

    async def prepare(self, plan: Plan, proxy: Proxy, scope: str) -> None:
        """Complete the plan from server state before the backend is asked."""

    async def keep(self, plan: Plan, proxy: Proxy, scope: str, answer: Any) -> None:
        """Keep what a later request may refer to; runs before the answer's last bytes."""


class Stateless:
    """The hooks of an API that keeps nothing between requests."""

    async def prepare(self, plan: Plan, proxy: Proxy, scope: str) -> None:
        return None

    async def keep(self, plan: Plan, proxy: Proxy, scope: str, answer: Any) -> None:
        return None
