"""One MiniMax-M3 call's arguments, built and streamed as its elements open and close.

Each open element is a :class:`_Frame` on a stack under the call's arguments
object (the root). The JSON text of the arguments is written forward only:
nothing emitted is ever taken back, so a frame writes its part only once it
knows what it is.

* A string (the schema says string) streams at once: ``"key": "`` when the
  element opens, then its text, JSON-escaped, as it arrives.
* An element the schema is silent about, or one that may hold a container,
  is *pending* while only whitespace follows its opening tag (that whitespace
  is held). Its first child element makes it a container: ``"key": {`` (or
  ``[``) is written then, so a client sees nested values open as soon as their
  first child begins. Its first other character makes it text: a string when
  the schema is silent (it streams from there, the held whitespace first),
  else a scalar kept until its closing tag and typed by the schema then.
* A member whose schema says array (and nothing else) is a *collection*:
  ``"key": [`` opens at its first element and ``]`` waits until a sibling with
  another name or the parent's end, so the same name repeated right after adds
  elements to the same list.

Values are assigned to their parent when they close; siblings open and close in
turn, so the dicts' key order is the order the JSON text was written in.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

from ._schema import SILENT, STRING_ONLY, Shape, Types, convert

__all__ = ["MAX_DEPTH", "CallArgs", "escape"]

MAX_DEPTH = 64  # elements nested deeper are malformed markup
_NULL = frozenset({"null"})
_ARRAY_ONLY = frozenset({"array"})


def escape(text: str) -> str:
    """``text`` as the inside of a JSON string (ensure_ascii=False escaping)."""
    escaped: str = encode_basestring(text)
    return escaped[1:-1]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class Kind(enum.Enum):
    PENDING = enum.auto()  #: only whitespace so far
    STRING = enum.auto()  #: text, streaming as a JSON string
    SCALAR = enum.auto()  #: text, typed by the schema at the closing tag
    OBJECT = enum.auto()
    ARRAY = enum.auto()


class Sink(enum.Enum):
    KEY = enum.auto()  #: a member of the parent object
    ELEM = enum.auto()  #: an element of the parent array
    COLLECT = enum.auto()  #: elements of the parent's list for this key (schema says array)


_PENDING, _STRING, _SCALAR, _OBJECT, _ARRAY = Kind
_KEY, _ELEM, _COLLECT = Sink


def _only_array(types: Types) -> bool:
    return types - _NULL == _ARRAY_ONLY


def _objectish(shape: Shape | None) -> bool:
    return shape is not None and ("object" in shape.types or bool(shape.props))


def _empty_value(raw: str, types: Types) -> Any:
    """An element with nothing but whitespace: "" (verbatim), or {} / [] by schema."""
    if not types or "string" in types:
        return raw
    if "object" in types:
        return {}
    if "array" in types:
        return []
    return convert(raw, types)


class _Frame:
    __slots__ = ("coll_key", "key", "kind", "parent", "shape", "sink", "skip", "text", "value")

    def __init__(self, parent: _Frame | None, key: str | None, shape: Shape, sink: Sink) -> None:
        self.parent = parent
        self.key = key  # the element's name; None for the root and implicit objects
        self.shape = shape
        self.sink = sink
        self.kind = _PENDING
        self.skip = False  # a repeated name: parsed, never written
        self.text: list[str] = []
        self.value: Any = None  # dict (object) or list (array) once a container
        self.coll_key: str | None = None  # object: the key whose "]" is still to come


class CallArgs:
    """The arguments of one call. ``put`` receives the JSON text, in order."""

    def __init__(self, shape: Shape, put: Callable[[str], None]) -> None:
        self._put = put
        root = _Frame(None, None, shape, _KEY)
        root.kind = _OBJECT
        root.value = {}
        self.arguments: dict[str, Any] = root.value
        self._root = root
        self._opened = False  # the root's "{" is written
        self._top = root
        self._depth = 0
        #: The text pieces of the open element.
        self.top_text: list[str] = root.text
        #: The same, while the open element is a string being written (its text goes
        #: straight out), else None.
        self.sink: list[str] | None = None

    # -- what the machine asks ------------------------------------------------

    @property
    def pending(self) -> bool:
        return self._top.kind is _PENDING

    def is_open(self, key: str) -> bool:
        f: _Frame | None = self._top
        while f is not None:
            if f.key == key:
                return True
            f = f.parent
        return False

    # -- elements -------------------------------------------------------------

    def open(self, key: str) -> bool:
        """A child element named ``key`` opens in the top frame; False when too deep."""
        if self._depth >= MAX_DEPTH:
            return False
        top = self._top
        if top.kind is _PENDING:
            self._become_container(top, key)
        elif top is self._root and not self._opened:
            self._opened = True
            self._put("{")
        if top.kind is _ARRAY and key != "item" and _objectish(top.shape.items):
            # Named children in an array of objects: they are one object's members.
            top = self._push(top, None, top.shape.items or SILENT, _ELEM)
            self._start_container(top, _OBJECT)
        if top.kind is _ARRAY:
            child = self._push(top, key, top.shape.items or SILENT, _ELEM)
        else:
            shape = top.shape.member(key)
            child = self._push(top, key, shape, _COLLECT if _only_array(shape.types) else _KEY)
            if child.sink is _KEY:
                child.skip = child.skip or key in top.value
            elif top.coll_key != key and key in top.value:
                child.skip = True
        if child.shape.types == STRING_ONLY:
            self._start_string(child)
        return True

    def text(self, text: str) -> None:
        """Text of the top element; a pending element becomes a string or a scalar."""
        f = self._top
        if f.kind is _PENDING:
            if f.shape.types:
                f.kind = _SCALAR
            else:
                self._start_string(f)
        if self.sink is not None:
            self._put(escape(text))
        f.text.append(text)

    def close(self, key: str) -> None:
        """The closing tag of ``key``: closes it and any element left open inside it."""
        while True:
            f = self._top
            self._finish(f)
            self._pop()
            if f.key == key:
                return

    def end(self, eof: bool) -> None:
        """The call ends: close what is open. At end of output a value that is not a
        string or a container (pending or scalar, so not written yet) is dropped."""
        while self._top is not self._root:
            f = self._top
            if not eof or f.kind not in (_PENDING, _SCALAR):
                self._finish(f)
            self._pop()
        root = self._root
        if self._opened:
            self._put(self._end_collection(root) + "}")
        else:
            self._put("{}")

    # -- frames ---------------------------------------------------------------

    def _push(self, parent: _Frame, key: str | None, shape: Shape, sink: Sink) -> _Frame:
        child = _Frame(parent, key, shape, sink)
        child.skip = parent.skip
        self._top = child
        self.top_text = child.text
        self._depth += 1
        self.sink = None
        return child

    def _pop(self) -> None:
        parent = self._top.parent
        assert parent is not None
        self._top = parent
        self.top_text = parent.text
        self._depth -= 1
        self.sink = None

    def _become_container(self, f: _Frame, first_child: str) -> None:
        types = f.shape.types
        has_object, has_array = "object" in types, "array" in types
        if f.sink is _COLLECT or _only_array(types) or (has_array and not has_object):
            kind = _ARRAY
        elif has_object and not has_array:
            kind = _OBJECT
        else:
            kind = _ARRAY if first_child == "item" else _OBJECT
        self._start_container(f, kind)

    def _start_container(self, f: _Frame, kind: Kind) -> None:
        f.kind = kind
        if f.skip:
            f.value = {} if kind is _OBJECT else []
        elif kind is _OBJECT:
            f.value = {}
            self._put(self._prefix(f) + "{")
        elif f.sink is _COLLECT:
            f.value = self._collection(f)  # its elements join the parent's list
        else:
            f.value = []
            self._put(self._prefix(f) + "[")

    def _start_string(self, f: _Frame) -> None:
        f.kind = _STRING
        if not f.skip:
            self.sink = f.text
            self._put(self._prefix(f) + '"' + escape("".join(f.text)))

    def _prefix(self, f: _Frame) -> str:
        """What precedes ``f``'s value in its parent: a separator and, in an object, the key."""
        p = f.parent
        assert p is not None
        if f.sink is _ELEM:
            return ", " if p.value else ""
        assert f.key is not None
        end = self._end_collection(p)
        return end + (", " if p.value else "") + encode_basestring(f.key) + ": "

    def _end_collection(self, p: _Frame) -> str:
        if p.coll_key is None:
            return ""
        p.coll_key = None
        return "]"

    def _collection(self, f: _Frame) -> list[Any]:
        """The parent's list for ``f``'s key, opened (``"key": [``) if it is not yet."""
        p = f.parent
        assert p is not None and f.key is not None
        if p.coll_key != f.key:
            self._put(self._prefix(f) + "[")
            p.coll_key = f.key
            p.value[f.key] = []
        found: list[Any] = p.value[f.key]
        return found

    def _finish(self, f: _Frame) -> None:
        """``f`` is complete: write its end (or, for text, its value) and assign it."""
        if f.skip:
            return
        kind = f.kind
        if kind is _STRING:
            self._put('"')
            self._assign(f, "".join(f.text))
        elif kind is _OBJECT:
            self._put(self._end_collection(f) + "}")
            self._assign(f, f.value)
        elif kind is _ARRAY:
            if f.sink is not _COLLECT:
                self._put("]")
                self._assign(f, f.value)
        elif f.sink is _COLLECT:
            self._finish_collected(f)
        else:
            raw = "".join(f.text)
            types = f.shape.types
            value = convert(raw, types) if kind is _SCALAR else _empty_value(raw, types)
            if kind is _SCALAR and _only_array(types) and not isinstance(value, list):
                value = [self._element(raw, f)]
            self._put(self._prefix(f) + _dumps(value))
            self._assign(f, value)

    def _finish_collected(self, f: _Frame) -> None:
        """A pending or scalar element of a collection: its text adds elements."""
        found = self._collection(f)
        if f.kind is _PENDING:
            return  # empty: no element
        raw = "".join(f.text)
        value = convert(raw, f.shape.types)
        for element in value if isinstance(value, list) else [self._element(raw, f)]:
            self._put((", " if found else "") + _dumps(element))
            found.append(element)

    def _element(self, raw: str, f: _Frame) -> Any:
        """Text that is not a JSON array, for an array: one element, typed by ``items``."""
        items = f.shape.items
        return convert(raw, items.types if items is not None and items.types else STRING_ONLY)

    def _assign(self, f: _Frame, value: Any) -> None:
        p = f.parent
        assert p is not None
        if f.sink is _ELEM:
            p.value.append(value)
        else:
            p.value[f.key] = value
