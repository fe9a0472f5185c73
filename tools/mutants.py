"""Mutants of one Python module: small AST changes a test suite should notice, each with a stable name.

Operators: comparisons flipped at their boundary and negated, `and`/`or` swapped, `not` dropped, integer
constants moved by one, True/False swapped, `raise` removed, returned values replaced by None, `+`/`-`,
`*`/`/` and `//` swapped, `break`/`continue` swapped. Docstrings, f-string parts (message text) and type
annotations are left alone. A mutant is applied to a fresh parse of the source, so no file is ever written.
"""

from __future__ import annotations

import ast
import copy
from dataclasses import dataclass
from typing import Callable, Iterator

_COMPARE_SWAPS: dict[type, tuple[type, ...]] = {
    ast.Lt: (ast.LtE, ast.GtE), ast.LtE: (ast.Lt, ast.Gt), ast.Gt: (ast.GtE, ast.LtE), ast.GtE: (ast.Gt, ast.Lt),
    ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,), ast.In: (ast.NotIn,), ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,),
}
_BINOP_SWAPS: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
    ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
}
_SYMBOLS: dict[type, str] = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.In: "in",
    ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
    ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**", ast.And: "and", ast.Or: "or",
}


@dataclass(frozen=True)
class Mutant:
    """One change: `key` names it stably (function, operator, what became what, occurrence) across edits
    elsewhere in the module; `site` is its position in the walk that applies it."""

    key: str
    site: int
    line: int
    operator: str
    original: str
    replacement: str


# A variant: (operator name, replacement text, function making the replacement node from a copy of the node)
Variant = tuple[str, str, Callable[[ast.AST], ast.AST]]


def _compare_variants(node: ast.Compare) -> Iterator[Variant]:
    for position, op in enumerate(node.ops):
        for swap in _COMPARE_SWAPS.get(type(op), ()):
            def make(copied: ast.AST, position: int = position, swap: type = swap) -> ast.AST:
                copied.ops[position] = swap()  # type: ignore[attr-defined]
                return copied
            yield "compare", f"{_SYMBOLS[type(op)]} -> {_SYMBOLS[swap]}", make


def _boolop_variants(node: ast.BoolOp) -> Iterator[Variant]:
    swap = ast.Or if isinstance(node.op, ast.And) else ast.And

    def make(copied: ast.AST) -> ast.AST:
        copied.op = swap()  # type: ignore[attr-defined]
        return copied
    yield "boolean", f"{_SYMBOLS[type(node.op)]} -> {_SYMBOLS[swap]}", make


def _unary_variants(node: ast.UnaryOp) -> Iterator[Variant]:
    if isinstance(node.op, ast.Not):
        yield "not-dropped", "not x -> x", lambda copied: copied.operand  # type: ignore[attr-defined]
    elif isinstance(node.op, ast.USub):
        yield "sign-dropped", "-x -> x", lambda copied: copied.operand  # type: ignore[attr-defined]


def _constant_variants(node: ast.Constant) -> Iterator[Variant]:
    value = node.value
    if isinstance(value, bool):
        yield "bool", f"{value} -> {not value}", lambda copied: ast.Constant(not value)
    elif isinstance(value, int):
        for moved in (value + 1, value - 1):
            yield "number", f"{value} -> {moved}", lambda copied, moved=moved: ast.Constant(moved)


def _binop_variants(node: ast.BinOp) -> Iterator[Variant]:
    swap = _BINOP_SWAPS.get(type(node.op))
    if swap is not None:
        def make(copied: ast.AST) -> ast.AST:
            copied.op = swap()  # type: ignore[attr-defined]
            return copied
        yield "arithmetic", f"{_SYMBOLS[type(node.op)]} -> {_SYMBOLS[swap]}", make


def _augassign_variants(node: ast.AugAssign) -> Iterator[Variant]:
    yield from (("augmented", text.replace(" ", "= ", 1) + "=", make)
                for _, text, make in _binop_variants(node))  # type: ignore[arg-type]


def _statement_variants(node: ast.AST) -> Iterator[Variant]:
    if isinstance(node, ast.Raise):
        yield "raise-removed", "pass", lambda copied: ast.Pass()
    elif isinstance(node, ast.Return) and node.value is not None and not _is_none(node.value):
        yield "return-none", "return None", lambda copied: ast.Return(ast.Constant(None))
    elif isinstance(node, ast.Break):
        yield "break-continue", "continue", lambda copied: ast.Continue()
    elif isinstance(node, ast.Continue):
        yield "break-continue", "break", lambda copied: ast.Break()


def _is_none(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


_VARIANTS: dict[type, Callable[..., Iterator[Variant]]] = {
    ast.Compare: _compare_variants, ast.BoolOp: _boolop_variants, ast.UnaryOp: _unary_variants,
    ast.Constant: _constant_variants, ast.BinOp: _binop_variants, ast.AugAssign: _augassign_variants,
    ast.Raise: _statement_variants, ast.Return: _statement_variants, ast.Break: _statement_variants,
    ast.Continue: _statement_variants,
}


class _Walker(ast.NodeTransformer):
    """Visits mutation sites in a fixed order; lists them, or replaces the one numbered `target`."""

    def __init__(self, source: str, target: int | None = None) -> None:
        self.source = source
        self.target = target
        self.site = 0
        self.scope: list[str] = []
        self.found: list[Mutant] = []
        self.counts: dict[str, int] = {}

    def visit(self, node: ast.AST) -> ast.AST:
        replaced = None
        for operator, replacement, make in _VARIANTS.get(type(node), lambda _: iter(()))(node):
            if self.target is None:
                self._record(node, operator, replacement)
            elif self.site == self.target:
                replaced = ast.copy_location(make(copy.deepcopy(node)), node)
            self.site += 1
        return replaced if replaced is not None else super().visit(node)

    def _record(self, node: ast.AST, operator: str, replacement: str) -> None:
        original = " ".join((ast.get_source_segment(self.source, node) or type(node).__name__).split())[:60]
        name = f"{'.'.join(self.scope) or '<module>'}:{operator}:{original}:{replacement}"
        occurrence = self.counts.get(name, 0)
        self.counts[name] = occurrence + 1
        self.found.append(Mutant(f"{name}#{occurrence}", self.site, getattr(node, "lineno", 0), operator, original,
                                 replacement))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._scoped(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        return self._scoped(node, node.name)

    def _scoped(self, node: ast.AST, name: str) -> ast.AST:
        self.scope.append(name)
        body = node.body  # type: ignore[attr-defined]
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        for field in ("decorator_list", "args"):
            if hasattr(node, field):
                setattr(node, field, self._visit_field(getattr(node, field)))
        node.body[len(node.body) - len(body):] = [self.visit(statement) for statement in body]  # type: ignore
        self.scope.pop()
        return node

    def _visit_field(self, value: object) -> object:
        if isinstance(value, list):
            return [self.visit(item) for item in value]
        return self.visit(value) if isinstance(value, ast.AST) else value

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return node  # an annotation

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        return node  # message text

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node  # a docstring or a bare string
        return self.generic_visit(node)


def list_mutants(source: str) -> list[Mutant]:
    """Every mutant of the module source, in walk order."""
    walker = _Walker(source)
    walker.visit(ast.parse(source))
    return walker.found


def mutated_tree(source: str, mutant: Mutant) -> ast.Module:
    """The module's syntax tree with this one mutant applied."""
    walker = _Walker(source, mutant.site)
    tree = walker.visit(ast.parse(source))
    return ast.fix_missing_locations(tree)  # type: ignore[arg-type]
