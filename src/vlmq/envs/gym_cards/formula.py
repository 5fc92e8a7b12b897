"""Safe arithmetic for the Points games: an AST-restricted evaluator and an exhaustive solver.

:func:`evaluate` never calls ``eval``: it parses with :mod:`ast` and walks a tree that may contain
only numbers, ``+ - * /`` (binary and unary ``+``/``-``) and parentheses, computing exactly with
:class:`fractions.Fraction`. Anything else, division by zero included, gives ``None``.

:func:`solutions` lists every formula (as tokens) that reaches a target using each card value once,
in two spellings per expression tree: minimal parentheses and fully parenthesised. The Points
expert follows one of them from whatever prefix the formula already has.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from fractions import Fraction
from functools import cache, lru_cache

MAX_FORMULA_CHARS = 1000

_BINARY: dict[type, Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_UNARY: dict[type, Callable[[Fraction], Fraction]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class _Rejected(Exception):
    """A node outside the allowed grammar."""


def _walk(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Constant):
        if type(node.value) in (int, float):
            return Fraction(node.value)
        raise _Rejected
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_walk(node.left), _walk(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_walk(node.operand))
    raise _Rejected


def evaluate(formula: str) -> Fraction | None:
    """Exact value of an arithmetic formula such as ``"(3 + 5) * 3"``, or ``None`` if it is not one.

    ``None`` for: empty or malformed text, anything but numbers/``+ - * /``/parentheses (names,
    calls, ``**``, ``%``, ...), division by zero, and inputs longer than ``MAX_FORMULA_CHARS``.
    Two numbers side by side (``"3 4"``) are malformed, never concatenated.
    """
    if not isinstance(formula, str) or len(formula) > MAX_FORMULA_CHARS or not formula.strip():
        return None
    try:
        tree = ast.parse(formula.strip(), mode="eval")
        return _walk(tree.body)
    except (SyntaxError, ValueError, TypeError, OverflowError, RecursionError, MemoryError):
        return None
    except (_Rejected, ZeroDivisionError):
        return None


# --------------------------------------------------------------------------- solver

_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
_FLOAT_OPS: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}
# An expression tree: (float value, top operator or "" for a number, left, right); a number's
# ``left`` is its text. The search runs on floats; every hit is then checked exactly by evaluate().
_Node = tuple[float, str, object, object]


@cache
def _trees(seq: tuple[int, ...], ops: str) -> tuple[_Node, ...]:
    """Every expression tree over ``seq`` in this order (all bracketings, all operators)."""
    if len(seq) == 1:
        return ((float(seq[0]), "", str(seq[0]), None),)
    out: list[_Node] = []
    for i in range(1, len(seq)):
        for left in _trees(seq[:i], ops):
            for right in _trees(seq[i:], ops):
                for op in ops:
                    if op == "/" and right[0] == 0:
                        continue
                    out.append((_FLOAT_OPS[op](left[0], right[0]), op, left, right))
    return tuple(out)


def _tokens(node: _Node, full: bool) -> tuple[str, ...]:
    """Token spelling of a tree: minimal parentheses, or every sub-expression parenthesised."""
    _, op, left, right = node
    if not op:
        return (str(left),)
    lt, rt = _tokens(left, full), _tokens(right, full)  # type: ignore[arg-type]
    lop, rop, p = left[1], right[1], _PREC[op]  # type: ignore[index]
    if lop and (full or _PREC[lop] < p):
        lt = ("(", *lt, ")")
    if rop and (full or _PREC[rop] < p or (_PREC[rop] == p and op in "-/")):
        rt = ("(", *rt, ")")
    return (*lt, op, *rt)


def _permutations(values: tuple[int, ...]) -> set[tuple[int, ...]]:
    if len(values) <= 1:
        return {values}
    out: set[tuple[int, ...]] = set()
    for i in range(len(values)):
        for rest in _permutations(values[:i] + values[i + 1 :]):
            out.add((values[i], *rest))
    return out


@lru_cache(maxsize=4096)
def solutions(values: tuple[int, ...], target: int, ops: str = "+-*/") -> tuple[tuple[str, ...], ...]:
    """All token sequences using each of ``values`` once that evaluate exactly to ``target``.

    Two spellings per expression tree (minimal and full parentheses), sorted shortest first, then
    lexicographically, so ``solutions(...)[0]`` is a simplest one. Call with sorted ``values`` to
    share the cache between hands that hold the same cards.
    """
    found: set[tuple[str, ...]] = set()
    goal = Fraction(target)
    for perm in _permutations(tuple(values)):
        n = len(perm)
        splits = [(perm, None)] if n == 1 else [(perm[:i], perm[i:]) for i in range(1, n)]
        for lseq, rseq in splits:
            lefts = _trees(lseq, ops)
            if rseq is None:
                candidates: list[_Node] = [t for t in lefts if abs(t[0] - target) < 1e-6]
            else:
                candidates = []
                for left in lefts:
                    for right in _trees(rseq, ops):
                        for op in ops:
                            if op == "/" and right[0] == 0:
                                continue
                            if abs(_FLOAT_OPS[op](left[0], right[0]) - target) < 1e-6:
                                candidates.append((float(target), op, left, right))
            for node in candidates:
                for full in (False, True):
                    tokens = _tokens(node, full)
                    if tokens not in found and evaluate(" ".join(tokens)) == goal:
                        found.add(tokens)
    return tuple(sorted(found, key=lambda t: (len(t), t)))


def solvable(values: tuple[int, ...], target: int, ops: str = "+-*/") -> bool:
    """Whether some formula over ``values`` (each used once) reaches ``target``."""
    return bool(solutions(tuple(sorted(values)), target, ops))
