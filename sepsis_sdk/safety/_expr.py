"""A tiny, safe, three-valued expression language for rule conditions, evaluated over numpy arrays.

Expressions are parsed with :mod:`ast` and only a whitelist of nodes is accepted; nothing is ever passed
to ``eval``. Every value is a pair ``(values, known)`` of equal-shaped arrays, so one code path serves a
single decision (arrays of length 1) and a whole cohort at once.

Logic is Kleene's: ``unknown and False`` is False, ``unknown or True`` is True, otherwise unknown.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

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


class ExpressionError(ValueError):
    """An expression uses syntax or names the rule language does not allow."""


@dataclass(frozen=True)
class Value:
    """Array values with a ``known`` mask (False where the input was missing)."""

    values: np.ndarray
    known: np.ndarray


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

    def evaluate(self, env: Mapping[str, Value]) -> Value:
        """Evaluate on arrays; returns a boolean or numeric :class:`Value`."""
        return _eval(self.tree.body, env, self.text)


def parse(text: str, allowed: set[str] | frozenset[str]) -> Expression:
    """Parse ``text`` and check that it only uses allowed syntax and variable names."""
    try:
        tree = ast.parse(str(text), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse {text!r}: {exc.msg}") from None
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
                raise ExpressionError(f"{text!r}: only < <= > >= == != comparisons are allowed")
            visit(node.left, under_missing)
            for c in node.comparators:
                visit(c, under_missing)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITH:
                raise ExpressionError(f"{text!r}: only + - * / arithmetic is allowed")
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
                raise ExpressionError(f"{text!r}: the only function is missing(<variable>)")
            visit(node.args[0], True)
        elif isinstance(node, ast.Name):
            if node.id not in allowed:
                raise ExpressionError(f"{text!r}: unknown variable {node.id!r}; known: {sorted(allowed)}")
            names.add(node.id)
            if under_missing:
                in_missing.add(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"{text!r}: only numeric constants are allowed, got {node.value!r}")
        else:
            raise ExpressionError(f"{text!r}: {type(node).__name__} is not allowed in a rule expression")

    visit(tree.body, False)
    return Expression(text=str(text), tree=tree, names=frozenset(names), missing_names=frozenset(in_missing))


def _as_bool(v: Value, text: str) -> Value:
    if v.values.dtype != bool:
        raise ExpressionError(f"{text!r}: a number was used where a condition is needed")
    return v


def _eval(node: ast.AST, env: Mapping[str, Value], text: str) -> Value:
    if isinstance(node, ast.BoolOp):
        parts = [_as_bool(_eval(v, env, text), text) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            a_true, a_false = out.known & out.values, out.known & ~out.values
            b_true, b_false = p.known & p.values, p.known & ~p.values
            if isinstance(node.op, ast.And):
                val = a_true & b_true
                known = (out.known & p.known) | a_false | b_false
            else:
                val = a_true | b_true
                known = (out.known & p.known) | a_true | b_true
            out = Value(val, known)
        return out
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, env, text)
        if isinstance(node.op, ast.Not):
            v = _as_bool(v, text)
            return Value(~v.values, v.known)
        return Value(-v.values, v.known)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env, text)
        val: np.ndarray | None = None
        known: np.ndarray | None = None
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, env, text)
            with np.errstate(invalid="ignore"):
                r = _CMP[type(op)](left.values, right.values)
            k = left.known & right.known
            val = r if val is None else val & r
            known = k if known is None else known & k
            left = right
        assert val is not None and known is not None
        return Value(np.asarray(val, dtype=bool), np.asarray(known, dtype=bool))
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env, text), _eval(node.right, env, text)
        with np.errstate(all="ignore"):
            return Value(_ARITH[type(node.op)](a.values, b.values), a.known & b.known)
    if isinstance(node, ast.Call):
        v = env[node.args[0].id]  # type: ignore[attr-defined]
        return Value(~v.known, np.ones_like(v.known))
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.Constant):
        return Value(np.asarray(float(node.value)), np.asarray(True))
    raise ExpressionError(f"{text!r}: cannot evaluate {type(node).__name__}")  # pragma: no cover
