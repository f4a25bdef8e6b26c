"""The public parser class: one name for every grammar.

``StreamParser(tools, starts_in_think, grammar)`` builds the machine of the
grammar asked for: each grammar's machine is a subclass that registers itself
under its name (``class M2Parser(StreamParser, grammar="m2")``). So
``isinstance(p, StreamParser)`` holds for every machine, and a machine's
``feed()`` is called directly, with no forwarding layer in between.

The subclasses share the output buffering below: text of one kind that arrives
in one ``feed()`` becomes one event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from ._errors import ParserUsageError
from ._events import ContentText, Event, ThinkText, ToolArgs
from ._tokens import TokenFilter

__all__ = ["StreamParser"]


class StreamParser:
    """Turns raw model output, fed as deltas of any size, into events.

    Args:
        tools: the request's tool definitions (OpenAI ``{"type": "function",
            "function": {...}}`` or ``{"name", "parameters"|"input_schema"}``);
            their JSON schemas type the argument values.
        starts_in_think: the prompt ended inside reasoning (the MiniMax-M2
            template's ``<think>``, MiniMax-M3's ``thinking_mode=enabled``),
            so output starts as reasoning.
        grammar: ``"m2"`` (MiniMax-M2, M2.1, M2.5, M2.7) or ``"m3"`` (MiniMax-M3).

    Raises:
        ParserUsageError: for an unknown grammar.
    """

    _grammars: ClassVar[dict[str, type[StreamParser]]] = {}
    #: The machine's scanner of each of its states (see ``_run``).
    _scanners: ClassVar[Mapping[Any, Callable[[Any, str, int], int]]] = {}

    #: How many times markup was given back as text (malformed tool-call markup).
    fallbacks: int
    _state: Any  # the machine's own State enum
    _tokens: TokenFilter
    _hold: str
    _index: int
    _out: list[Event]
    _pending_kind: type | None
    _pending: list[str]

    def __init_subclass__(cls, grammar: str = "", **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if grammar:
            StreamParser._grammars[grammar] = cls

    def __new__(
        cls,
        tools: Iterable[Any] | None = None,
        starts_in_think: bool = True,
        grammar: str = "m2",
    ) -> StreamParser:
        if cls is StreamParser:
            machine = StreamParser._grammars.get(grammar)
            if machine is None:
                known = ", ".join(sorted(StreamParser._grammars))
                raise ParserUsageError(f"unknown grammar {grammar!r} (known: {known})")
            cls = machine
        return object.__new__(cls)

    def feed(self, delta: str) -> list[Event]:
        """Parse the next piece of output.

        Args:
            delta: the next text, split anywhere (inside tags, names, values).

        Returns:
            The events this text completes, in order.

        Raises:
            ParserUsageError: after :meth:`close`.
        """
        raise NotImplementedError

    def close(self) -> list[Event]:
        """End of output: flush what is held back and close what is open.

        Returns:
            The remaining events.

        Raises:
            ParserUsageError: if called twice.
        """
        raise NotImplementedError

    # -- the driver and the output, shared by the machines --------------------

    def _closing(self, closed: Any) -> tuple[list[Event], str]:
        """The start of ``close()``: refuse a second one, parse what the token filter
        held back; returns the events so far and the text the machine still holds."""
        if self._state is closed:
            raise ParserUsageError("close() after close()")
        tail = self._tokens.close()
        out = self._run(tail) if tail else []
        self._out = out
        held, self._hold = self._hold, ""
        return out, held

    def _init_common(self) -> None:
        """What every machine starts with: the token filter, the hold-back and the output."""
        self.fallbacks = 0
        self._tokens = TokenFilter()
        self._hold = ""  # text that may still become a tag
        self._out = []
        # Text waiting to become one event: kind (ThinkText, ContentText or
        # ToolArgs) and pieces, so that a feed yields one event per run.
        self._pending_kind = None
        self._pending = []
        self._index = 0  # the call being parsed, counted from 0

    def _run(self, delta: str) -> list[Event]:
        """Scan the held-back text and ``delta``: the scanner of the current state consumes
        text from a cursor and returns the new cursor (see the machines' scanner contract)."""
        buf = self._hold + delta if self._hold else delta
        self._hold = ""
        out: list[Event] = []
        self._out = out
        scanners = self._scanners
        i, n = 0, len(buf)
        while i < n:
            i = scanners[self._state](self, buf, i)
        self._flush()
        return out

    def _put(self, kind: type, text: str) -> None:
        if kind is not self._pending_kind:
            self._flush()
            self._pending_kind = kind
        self._pending.append(text)

    def _flush(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending = []
            kind = self._pending_kind
            if kind is ToolArgs:
                self._out.append(ToolArgs(self._index, text))
            elif kind is ThinkText:
                self._out.append(ThinkText(text))
            else:
                self._out.append(ContentText(text))
        self._pending_kind = None

    def _emit(self, event: Event) -> None:
        self._flush()
        self._out.append(event)
