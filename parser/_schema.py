"""Typing parameter values by the request's JSON schema.

MiniMax-M2 writes every parameter value as raw text. The tool's JSON schema
says what the text means: ``3`` is the integer 3 for an integer parameter and
the string "3" for a string one (schema-less guessing turns "007" into 7 and
sends agents into validation loops). Only ``type``, ``enum``, ``const`` and
``anyOf``/``oneOf``/``allOf`` are read; ``$ref`` is not followed. A parameter
with no type information is a string.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SILENT",
    "STRING_ONLY",
    "Shape",
    "convert",
    "shape_of",
    "tool_param_types",
    "tool_schemas",
]

Types = frozenset[str]
STRING_ONLY: Types = frozenset({"string"})

# The order in which a value's text is tried against the allowed types.
_CANDIDATES = ("null", "integer", "number", "boolean", "object", "array", "string")
_KNOWN = frozenset(_CANDIDATES)
_MAX_SCHEMA_DEPTH = 32
_MAX_VALUE_DEPTH = 200

_INT = re.compile(r"[-+]?[0-9]+")
_NUMBER = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def tool_param_types(tools: Iterable[Any] | None) -> dict[str, dict[str, Types]]:
    """Map tool name → parameter name → the JSON types its value may take.

    Accepts OpenAI tool definitions (``{"type": "function", "function": {...}}``)
    and bare ``{"name", "parameters"}`` or ``{"name", "input_schema"}`` objects.
    Anything unreadable is skipped: its values are then strings.
    """
    table: dict[str, dict[str, Types]] = {}
    for name, schema in tool_schemas(tools):
        props = schema.get("properties")
        if isinstance(props, Mapping):
            table[name] = {str(k): _schema_types(v, 0) or STRING_ONLY for k, v in props.items()}
    return table


def tool_schemas(tools: Iterable[Any] | None) -> list[tuple[str, Mapping[str, Any]]]:
    """(tool name, JSON schema of its arguments) of each readable tool definition."""
    found: list[tuple[str, Mapping[str, Any]]] = []
    for tool in tools or ():
        if not isinstance(tool, Mapping):
            continue
        fn = tool.get("function")
        spec = fn if isinstance(fn, Mapping) else tool
        name = spec.get("name")
        schema = spec.get("parameters", spec.get("input_schema"))
        if isinstance(name, str) and isinstance(schema, Mapping):
            found.append((name, schema))
    return found


@dataclass(frozen=True, slots=True, eq=False)
class Shape:
    """What a schema says about a value and, for nested values, its parts.

    ``types`` is empty when the schema is silent. ``props`` gives the shape of
    an object's members, ``items`` that of an array's elements.
    """

    types: Types
    props: Mapping[str, Shape]
    items: Shape | None

    def member(self, key: str) -> Shape:
        return self.props.get(key, SILENT)


SILENT = Shape(frozenset(), {}, None)


def shape_of(schema: Any, depth: int = 0) -> Shape:
    """The :class:`Shape` of a JSON schema (``anyOf``/``oneOf``/``allOf`` merged)."""
    if not isinstance(schema, Mapping) or depth > _MAX_SCHEMA_DEPTH:
        return SILENT
    props: dict[str, Shape] = {}
    items: Shape | None = None
    for part in _alternatives(schema, depth):
        found = part.get("properties")
        if isinstance(found, Mapping):
            for key, sub in found.items():
                props.setdefault(str(key), shape_of(sub, depth + 1))
        if items is None and isinstance(part.get("items"), Mapping):
            items = shape_of(part["items"], depth + 1)
    return Shape(_schema_types(schema, depth), props, items)


def _alternatives(schema: Mapping[str, Any], depth: int) -> list[Mapping[str, Any]]:
    """``schema`` and, depth first, the subschemas of its ``anyOf``/``oneOf``/``allOf``."""
    found = [schema]
    if depth <= _MAX_SCHEMA_DEPTH:
        for key in ("anyOf", "oneOf", "allOf"):
            subs = schema.get(key)
            if isinstance(subs, list):
                for sub in subs:
                    if isinstance(sub, Mapping):
                        found += _alternatives(sub, depth + 1)
    return found


def _schema_types(schema: Any, depth: int) -> Types:
    if not isinstance(schema, Mapping) or depth > _MAX_SCHEMA_DEPTH:
        return frozenset()
    found: set[str] = set()
    t = schema.get("type")
    if isinstance(t, str):
        found.add(t)
    elif isinstance(t, list):
        found.update(x for x in t if isinstance(x, str))
    enum = schema.get("enum")
    if isinstance(enum, list):
        found.update(_json_type(v) for v in enum)
    if "const" in schema:
        found.add(_json_type(schema["const"]))
    for key in ("anyOf", "oneOf", "allOf"):
        subs = schema.get(key)
        if isinstance(subs, list):
            for sub in subs:
                found |= _schema_types(sub, depth + 1)
    return frozenset(found) & _KNOWN


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def convert(raw: str, types: Types) -> Any:
    """The value ``raw`` stands for, given the types its schema allows.

    Non-string candidates see the trimmed text; when none fits, the raw text
    is kept, verbatim, as a string.
    """
    text = raw.strip()
    for kind in _CANDIDATES:
        if kind not in types:
            continue
        if kind == "string":
            return raw
        ok, value = _CONVERTERS[kind](text)
        if ok:
            return value
    return raw


def _to_null(text: str) -> tuple[bool, Any]:
    return text == "null", None


def _to_integer(text: str) -> tuple[bool, Any]:
    if _INT.fullmatch(text):
        return _to_int(text)
    ok, value = _to_number(text)
    if ok and isinstance(value, float) and value.is_integer():
        return True, int(value)
    return False, None


def _to_number(text: str) -> tuple[bool, Any]:
    if not _NUMBER.fullmatch(text):
        return False, None
    if _INT.fullmatch(text):
        return _to_int(text)
    value = float(text)
    return math.isfinite(value), value


def _to_int(text: str) -> tuple[bool, Any]:
    try:
        return True, int(text)
    except ValueError:  # more digits than int() converts (sys.set_int_max_str_digits)
        return False, None


def _to_boolean(text: str) -> tuple[bool, Any]:
    low = text.lower()
    return low in ("true", "false"), low == "true"


def _to_object(text: str) -> tuple[bool, Any]:
    value = _load_structure(text, "{")
    return isinstance(value, dict), value


def _to_array(text: str) -> tuple[bool, Any]:
    value = _load_structure(text, "[")
    return isinstance(value, list), value


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _load_structure(text: str, opener: str) -> Any:
    if not text.startswith(opener):
        return None
    try:
        # 1e999 loads as inf, which has no JSON form: _jsonable rejects it.
        return _jsonable(json.loads(text, parse_constant=_reject_constant), 0)
    except (ValueError, RecursionError):
        pass
    # Models trained on Python sometimes write {'a': True}; accept the literal.
    try:
        return _jsonable(ast.literal_eval(text), 0)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def _jsonable(value: Any, depth: int) -> Any:
    """``value`` as JSON data, or ValueError when it has no JSON form."""
    if depth > _MAX_VALUE_DEPTH:
        raise ValueError("too deep")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not finite")
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _jsonable(v, depth + 1) for k, v in value.items()}
    raise ValueError(f"no JSON form for {type(value).__name__}")


_CONVERTERS = {
    "null": _to_null,
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
    "object": _to_object,
    "array": _to_array,
}
