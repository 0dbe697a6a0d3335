"""A prefix validator for JSON under a (subset of) JSON Schema, used for constrained decoding.

``JsonPrefix(schema).check(text)`` says whether ``text`` is ``"invalid"``, a valid ``"partial"`` prefix of
some JSON value that satisfies ``schema``, or a ``"complete"`` such value. The local provider calls it on
"text so far + candidate token" to keep only tokens that can still lead to a valid reply, and stops the
row once the value is complete (see :mod:`sepsis_sdk.llm._local`).

Supported (what pydantic emits for ordinary models): ``type`` (object, array, string, integer, number,
boolean, null, or a list of them), ``properties`` / ``required`` / ``additionalProperties``, ``items``,
``minItems`` / ``maxItems``, ``enum`` / ``const``, ``anyOf`` / ``oneOf`` / single-item ``allOf``, ``$ref``
into ``$defs`` / ``definitions``, ``minLength`` / ``maxLength``, ``minimum`` / ``maximum`` /
``exclusiveMinimum`` / ``exclusiveMaximum``. Not enforced while decoding (pydantic still validates the
result, and instructor re-asks): ``pattern``, ``format``, ``multipleOf``, ``uniqueItems``, ``not``,
``if/then/else``, ``dependencies``, ``patternProperties``. Unknown keys are ignored (treated as "any").

To keep small models from rambling inside the structure, at most ``max_ws`` whitespace characters are
allowed between tokens, strings hold at most ``max_string`` characters unless the schema says otherwise,
and numbers at most 16 digits. Object keys may come in any order; each at most once; required keys must
be present before ``}``.

The parser is written in continuation style with generators, so alternatives (``anyOf``) backtrack
correctly; it re-parses the whole text on each check (texts are short: a structured reply).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Literal

INC = -1  # "the text ended inside a valid prefix"
_NUM = re.compile(r"-?(?:0|[1-9][0-9]*)?(?:\.[0-9]*)?(?:[eE][+-]?[0-9]*)?")
_WS = " \t\n\r"
_ESC = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

Status = Literal["invalid", "partial", "complete"]


class JsonPrefix:
    """Prefix checks of JSON text against a schema.

    Args:
        schema: a JSON Schema dict (e.g. ``Model.model_json_schema()``); ``None`` or ``{}`` accepts any JSON
            object.
        max_ws: most whitespace characters allowed in a row outside strings.
        max_string: default most characters in a string (``maxLength`` overrides).
        top_object: require the top-level value to be an object (what chat structured outputs expect).
    """

    def __init__(
        self,
        schema: dict[str, Any] | None = None,
        *,
        max_ws: int = 1,
        max_string: int = 2000,
        top_object: bool = True,
    ):
        self.schema: dict[str, Any] = dict(schema or {})
        if top_object and not self.schema:
            self.schema = {"type": "object"}
        self.defs: dict[str, Any] = {**self.schema.get("definitions", {}), **self.schema.get("$defs", {})}
        self.max_ws = int(max_ws)
        self.max_string = int(max_string)

    # ------------------------------------------------------------------ public
    def check(self, text: str) -> Status:
        """``"complete"``, ``"partial"`` or ``"invalid"`` for ``text``."""
        partial = False
        for end in self._value(text, self._skip_ws_start(text), self.schema, 0):
            if end == INC:
                partial = True
            elif end == len(text):
                return "complete"
        return "partial" if partial else "invalid"

    def _skip_ws_start(self, s: str) -> int:
        return 0

    # ------------------------------------------------------------------ helpers
    def _resolve(self, schema: Any, depth: int) -> dict[str, Any]:
        if schema is True or schema is None:
            return {}
        if schema is False:
            return {"not": {}}
        seen = 0
        while isinstance(schema, dict) and "$ref" in schema and seen < 32:
            ref = schema["$ref"]
            name = ref.split("/")[-1]
            target = self.defs.get(name)
            if target is None:
                return {}
            extra = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **extra}
            seen += 1
        if isinstance(schema, dict) and isinstance(schema.get("allOf"), list) and len(schema["allOf"]) == 1:
            inner = self._resolve(schema["allOf"][0], depth)
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return {**inner, **rest}
        return schema if isinstance(schema, dict) else {}

    def _ws(self, s: str, i: int) -> Iterator[int]:
        """Positions after 0..max_ws whitespace characters (INC when the text ends)."""
        n = 0
        while True:
            if i == len(s):
                yield INC
                yield i
                return
            yield i
            if s[i] in _WS and n < self.max_ws:
                i += 1
                n += 1
            else:
                return

    def _lit(self, s: str, i: int, word: str) -> Iterator[int]:
        rest = s[i : i + len(word)]
        if word.startswith(rest) and len(rest) < len(word) and i + len(rest) == len(s):
            yield INC
        elif rest == word:
            yield i + len(word)

    # ------------------------------------------------------------------ values
    def _value(self, s: str, i: int, schema: Any, depth: int) -> Iterator[int]:
        if depth > 40:
            return
        sch = self._resolve(schema, depth)
        if "not" in sch and sch["not"] == {}:
            return
        if i >= len(s):
            yield INC
            return
        if "const" in sch:
            yield from self._lit(s, i, json.dumps(sch["const"], ensure_ascii=False))
            return
        if "enum" in sch:
            for option in sch["enum"]:
                yield from self._lit(s, i, json.dumps(option, ensure_ascii=False))
            return
        for key in ("anyOf", "oneOf"):
            if isinstance(sch.get(key), list):
                base = {k: v for k, v in sch.items() if k != key}
                for alt in sch[key]:
                    yield from self._value(
                        s, i, {**base, **self._resolve(alt, depth)} if base else alt, depth + 1
                    )
                return
        types = sch.get("type")
        if types is None:
            types = _infer_types(sch)
        if isinstance(types, str):
            types = [types]
        c = s[i]
        for t in types:
            if t == "object" and c == "{":
                yield from self._object(s, i, sch, depth)
            elif t == "array" and c == "[":
                yield from self._array(s, i, sch, depth)
            elif t == "string" and c == '"':
                yield from self._string(s, i, sch)
            elif t in ("integer", "number") and (c == "-" or c.isdigit()):
                yield from self._number(s, i, sch, integer=(t == "integer"))
            elif t == "boolean" and c in "tf":
                yield from self._lit(s, i, "true")
                yield from self._lit(s, i, "false")
            elif t == "null" and c == "n":
                yield from self._lit(s, i, "null")

    def _string(self, s: str, i: int, sch: dict[str, Any]) -> Iterator[int]:
        max_len = int(sch.get("maxLength", self.max_string))
        min_len = int(sch.get("minLength", 0))
        j = i + 1
        chars = 0
        while True:
            if j >= len(s):
                yield INC
                return
            c = s[j]
            if c == '"':
                if chars >= min_len:
                    yield j + 1
                return
            if c == "\\":
                if j + 1 >= len(s):
                    yield INC
                    return
                e = s[j + 1]
                if e in _ESC:
                    j += 2
                elif e == "u":
                    hexpart = s[j + 2 : j + 6]
                    if not all(h in "0123456789abcdefABCDEF" for h in hexpart):
                        return
                    if len(hexpart) < 4:
                        yield INC
                        return
                    j += 6
                else:
                    return
            elif ord(c) < 0x20:
                return
            else:
                j += 1
            chars += 1
            if chars > max_len:
                return

    def _number(self, s: str, i: int, sch: dict[str, Any], *, integer: bool) -> Iterator[int]:
        m = _NUM.match(s, i)
        text = m.group(0) if m else ""
        j = i + len(text)
        digits = sum(ch.isdigit() for ch in text)
        if not text or digits > 16:
            return
        if integer and any(ch in text for ch in ".eE"):
            return
        if not _num_prefix_ok(text):
            return
        lo, hi = _bounds(sch)
        if lo is not None and lo >= 0 and text.startswith("-"):
            return
        if (lo is not None or hi is not None) and ("e" in text or "E" in text):
            return  # with bounds, exponents only open dead ends (digits pruned below cannot be checked)
        # The integer part only grows in magnitude as digits arrive: prune once it passes a bound. A
        # positive integer part equal to an exclusive maximum cannot be rescued by a fraction (4.x >= 4).
        int_part = text.lstrip("-").split(".")[0]
        if int_part:
            val = int(int_part) * (-1 if text.startswith("-") else 1)
            x_hi, x_lo = sch.get("exclusiveMaximum"), sch.get("exclusiveMinimum")
            if val >= 0 and not text.startswith("-"):
                if isinstance(sch.get("maximum"), (int, float)) and val > sch["maximum"]:
                    return
                if isinstance(x_hi, (int, float)) and not isinstance(x_hi, bool) and val >= x_hi:
                    return
            if val < 0:
                if isinstance(sch.get("minimum"), (int, float)) and val < sch["minimum"]:
                    return
                if isinstance(x_lo, (int, float)) and not isinstance(x_lo, bool) and val <= x_lo:
                    return
        if j == len(s):
            yield INC
        if _num_complete(text):
            value = float(text)
            if _in_bounds(value, sch):
                yield j

    def _array(self, s: str, i: int, sch: dict[str, Any], depth: int) -> Iterator[int]:
        items = sch.get("items", {})
        prefix = sch.get("prefixItems")
        min_items = int(sch.get("minItems", 0))
        max_items = sch.get("maxItems")
        max_items = int(max_items) if max_items is not None else None

        def item_schema(k: int) -> Any:
            if isinstance(prefix, list) and k < len(prefix):
                return prefix[k]
            return items

        def after_item(j: int, count: int) -> Iterator[int]:
            for k in self._ws(s, j):
                if k == INC:
                    yield INC
                    continue
                if k >= len(s):
                    continue
                if s[k] == "]" and count >= min_items:
                    yield k + 1
                elif s[k] == "," and (max_items is None or count < max_items):
                    for m in self._ws(s, k + 1):
                        if m == INC:
                            yield INC
                            continue
                        for e in self._value(s, m, item_schema(count), depth + 1):
                            if e == INC:
                                yield INC
                            else:
                                yield from after_item(e, count + 1)

        for k in self._ws(s, i + 1):
            if k == INC:
                yield INC
                continue
            if k >= len(s):
                continue
            if s[k] == "]":
                if min_items == 0:
                    yield k + 1
                continue
            if max_items == 0:
                continue
            for e in self._value(s, k, item_schema(0), depth + 1):
                if e == INC:
                    yield INC
                else:
                    yield from after_item(e, 1)

    def _object(self, s: str, i: int, sch: dict[str, Any], depth: int) -> Iterator[int]:
        props: dict[str, Any] = sch.get("properties") or {}
        required = set(sch.get("required") or [])
        additional = sch.get("additionalProperties", None if props else True)
        if additional is None:
            additional = not props

        def key_options(used: frozenset[str]) -> list[str] | None:
            # None: any key allowed (additionalProperties); else the unused declared names.
            if additional is not False and additional is not None:
                return None
            return [k for k in props if k not in used]

        def parse_key(j: int, used: frozenset[str]) -> Iterator[tuple[int, str | None]]:
            options = key_options(used)
            if options is None:
                for e in self._string(s, j, {}):
                    if e == INC:
                        yield INC, None
                    else:
                        try:
                            name = json.loads(s[j:e])
                        except ValueError:
                            continue
                        if name not in used:
                            yield e, name
                return
            for name in options:
                for e in self._lit(s, j, json.dumps(name, ensure_ascii=False)):
                    yield e, (None if e == INC else name)

        def members(j: int, used: frozenset[str], first: bool) -> Iterator[int]:
            # j: after "{" or after ","; expects a key (or "}" when first).
            for k in self._ws(s, j):
                if k == INC:
                    yield INC
                    continue
                if k >= len(s):
                    continue
                if first and s[k] == "}":
                    if required <= used:
                        yield k + 1
                    continue
                if s[k] != '"':
                    continue
                for e, name in parse_key(k, used):
                    if e == INC:
                        yield INC
                        continue
                    assert name is not None
                    value_schema = props.get(name, additional if isinstance(additional, dict) else {})
                    for c in self._ws(s, e):
                        if c == INC:
                            yield INC
                            continue
                        if c >= len(s) or s[c] != ":":
                            continue
                        for v in self._ws(s, c + 1):
                            if v == INC:
                                yield INC
                                continue
                            for end in self._value(s, v, value_schema, depth + 1):
                                if end == INC:
                                    yield INC
                                else:
                                    yield from after_member(end, used | {name})

        def after_member(j: int, used: frozenset[str]) -> Iterator[int]:
            for k in self._ws(s, j):
                if k == INC:
                    yield INC
                    continue
                if k >= len(s):
                    continue
                if s[k] == "}" and required <= used:
                    yield k + 1
                elif s[k] == "," and key_options(used) != []:
                    yield from members(k + 1, used, False)

        yield from members(i + 1, frozenset(), True)


def _infer_types(sch: dict[str, Any]) -> list[str]:
    if "properties" in sch or "additionalProperties" in sch:
        return ["object"]
    if "items" in sch or "prefixItems" in sch:
        return ["array"]
    return ["object", "array", "string", "number", "boolean", "null"]


def _num_prefix_ok(text: str) -> bool:
    # The regex accepts partial forms such as "-", "1.", "1e", "1e+"; reject impossible ones like ".5".
    body = text.lstrip("-")
    return not body.startswith(".") and body[:1] not in ("e", "E")


def _num_complete(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _bounds(sch: dict[str, Any]) -> tuple[float | None, float | None]:
    lo = sch.get("minimum", sch.get("exclusiveMinimum"))
    hi = sch.get("maximum", sch.get("exclusiveMaximum"))
    lo = lo if isinstance(lo, (int, float)) and not isinstance(lo, bool) else None
    hi = hi if isinstance(hi, (int, float)) and not isinstance(hi, bool) else None
    return lo, hi


def _in_bounds(value: float, sch: dict[str, Any]) -> bool:
    checks = (
        ("minimum", lambda b: value >= b),
        ("maximum", lambda b: value <= b),
        ("exclusiveMinimum", lambda b: value > b),
        ("exclusiveMaximum", lambda b: value < b),
    )
    for key, ok in checks:
        bound = sch.get(key)
        if isinstance(bound, (int, float)) and not isinstance(bound, bool) and not ok(bound):
            return False
    return True
