"""A tiny, safe, three-valued expression language for rule conditions, evaluated over numpy arrays.

Expressions are parsed with :mod:`ast` and only a whitelist of nodes is accepted; nothing is ever passed
to ``eval``. Every value is a pair ``(values, known)`` of equal-shaped arrays, so one code path serves a
single decision (arrays of length 1) and a whole cohort at once.

Logic is Kleene's: ``unknown and False`` is False, ``unknown or True`` is True, otherwise unknown.

Size limits (:data:`MAX_CHARS`, :data:`MAX_NODES`, :data:`MAX_DEPTH`) are checked before anything is built:
a rule file is input, and a 100,000-term expression must be an :class:`ExpressionError`, not a
``RecursionError`` or ``MemoryError`` deep in the parser. The packaged rules use at most 65 characters,
25 nodes and depth 6.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from sepsis_sdk.errors import DataError

MAX_CHARS = 4000
"""Longest rule expression accepted, in characters."""
MAX_NODES = 1000
"""Most syntax-tree nodes (names, numbers, operators) in one rule expression."""
MAX_DEPTH = 40
"""Deepest nesting of one rule expression (operators inside operators)."""

_CMP: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ARITH: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


class ExpressionError(DataError):
    """An expression uses syntax or names the rule language does not allow, or is too large.

    A :class:`~sepsis_sdk.errors.DataError` (and so still a ``ValueError``): rule files are input.
    """


def _short(text: str, n: int = 80) -> str:
    """``text`` quoted for an error message, cut to ``n`` characters (a rule can be huge)."""
    return repr(text) if len(text) <= n else repr(text[:n]) + f"... ({len(text)} characters)"


def _parse_bounded(text: str) -> ast.Expression:
    """``ast.parse`` behind the size limits; every failure is an ExpressionError."""
    if len(text) > MAX_CHARS:
        raise ExpressionError(
            f"{_short(text)}: a rule expression may have at most {MAX_CHARS} characters, this one has {len(text)}"
        )
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse {_short(text)}: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"{_short(text)}: nested too deeply (at most {MAX_DEPTH} levels)") from None
    # Iterative walk: the size checks must not recurse themselves.
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ExpressionError(f"{_short(text)}: more than {MAX_NODES} terms; split the rule")
        if depth > MAX_DEPTH:
            raise ExpressionError(f"{_short(text)}: nested more than {MAX_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


@dataclass(frozen=True)
class Value:
    """Array values with a ``known`` mask (False where the input was missing)."""

    values: np.ndarray
    known: np.ndarray


_Fn = Callable[[Mapping[str, Value]], Value]


@dataclass(frozen=True)
class Expression:
    """A parsed, validated expression.

    Attributes:
        text: the source text.
        names: every variable the expression reads.
        missing_names: variables tested with ``missing(...)``.
    """

    text: str
    tree: ast.Expression
    names: frozenset[str]
    missing_names: frozenset[str]
    fn: _Fn = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def evaluate(self, env: Mapping[str, Value]) -> Value:
        """Evaluate on arrays; returns a boolean or numeric :class:`Value`."""
        # NaN comparisons and 0-divisions are expected (missing values); `known` carries them.
        with np.errstate(all="ignore"):
            return self.fn(env)


def parse(text: str, allowed: set[str] | frozenset[str]) -> Expression:
    """Parse ``text`` and check that it only uses allowed syntax and variable names."""
    tree = _parse_bounded(str(text))
    names: set[str] = set()
    in_missing: set[str] = set()

    def visit(node: ast.AST, under_missing: bool) -> None:
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                visit(v, under_missing)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            visit(node.operand, under_missing)
        elif isinstance(node, ast.Compare):
            if not all(type(op) in _CMP for op in node.ops):
                raise ExpressionError(f"{_short(text)}: only < <= > >= == != comparisons are allowed")
            visit(node.left, under_missing)
            for c in node.comparators:
                visit(c, under_missing)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITH:
                raise ExpressionError(f"{_short(text)}: only + - * / arithmetic is allowed")
            visit(node.left, under_missing)
            visit(node.right, under_missing)
        elif isinstance(node, ast.Call):
            if not (
                isinstance(node.func, ast.Name)
                and node.func.id == "missing"
                and len(node.args) == 1
                and not node.keywords
                and isinstance(node.args[0], ast.Name)
            ):
                raise ExpressionError(f"{_short(text)}: the only function is missing(<variable>)")
            visit(node.args[0], True)
        elif isinstance(node, ast.Name):
            if node.id not in allowed:
                raise ExpressionError(
                    f"{_short(text)}: unknown variable {node.id!r}; known: {sorted(allowed)}"
                )
            names.add(node.id)
            if under_missing:
                in_missing.add(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(
                    f"{_short(text)}: only numeric constants are allowed, got {node.value!r}"
                )
        else:
            raise ExpressionError(
                f"{_short(text)}: {type(node).__name__} is not allowed in a rule expression"
            )

    visit(tree.body, False)
    return Expression(
        text=str(text),
        tree=tree,
        names=frozenset(names),
        missing_names=frozenset(in_missing),
        fn=_compile(tree.body, str(text)),
    )


def _as_bool(v: Value, text: str) -> Value:
    if v.values.dtype != bool:
        raise ExpressionError(f"{_short(text)}: a number was used where a condition is needed")
    return v


def _compile(node: ast.AST, text: str) -> _Fn:
    """The validated tree as nested closures: the node dispatch happens once, at parse time."""
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v, text) for v in node.values]
        conj = isinstance(node.op, ast.And)

        def boolop(env: Mapping[str, Value]) -> Value:
            out = _as_bool(parts[0](env), text)
            for part in parts[1:]:
                p = _as_bool(part(env), text)
                a_true, a_false = out.known & out.values, out.known & ~out.values
                b_true, b_false = p.known & p.values, p.known & ~p.values
                if conj:
                    out = Value(a_true & b_true, (out.known & p.known) | a_false | b_false)
                else:
                    out = Value(a_true | b_true, (out.known & p.known) | a_true | b_true)
            return out

        return boolop
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand, text)
        if isinstance(node.op, ast.Not):

            def negate(env: Mapping[str, Value]) -> Value:
                v = _as_bool(operand(env), text)
                return Value(~v.values, v.known)

            return negate

        def minus(env: Mapping[str, Value]) -> Value:
            v = operand(env)
            return Value(-v.values, v.known)

        return minus
    if isinstance(node, ast.Compare):
        first = _compile(node.left, text)
        chain = [
            (_CMP[type(op)], _compile(c, text)) for op, c in zip(node.ops, node.comparators, strict=True)
        ]

        def compare(env: Mapping[str, Value]) -> Value:
            left = first(env)
            val: np.ndarray | None = None
            known: np.ndarray | None = None
            for op, comp in chain:
                right = comp(env)
                r, k = op(left.values, right.values), left.known & right.known
                val = r if val is None else val & r
                known = k if known is None else known & k
                left = right
            return Value(np.asarray(val, dtype=bool), np.asarray(known, dtype=bool))

        return compare
    if isinstance(node, ast.BinOp):
        lhs, rhs, arith = _compile(node.left, text), _compile(node.right, text), _ARITH[type(node.op)]

        def binop(env: Mapping[str, Value]) -> Value:
            a, b = lhs(env), rhs(env)
            return Value(arith(a.values, b.values), a.known & b.known)

        return binop
    if isinstance(node, ast.Call):
        name = node.args[0].id  # type: ignore[attr-defined]

        def missing(env: Mapping[str, Value]) -> Value:
            v = env[name]
            return Value(~v.known, np.ones_like(v.known))

        return missing
    if isinstance(node, ast.Name):
        var = node.id
        return lambda env: env[var]
    if isinstance(node, ast.Constant):
        const = Value(np.asarray(float(node.value)), np.asarray(True))
        return lambda env: const
    raise ExpressionError(f"{_short(text)}: cannot evaluate {type(node).__name__}")  # pragma: no cover
