"""The imports a conversion adds and drops, from the metadata the codemod resolved once.

libcst's ``AddImportsVisitor`` and ``RemoveImportsVisitor`` each copy the module and resolve scopes again
(two more metadata passes over the whole file). The converter needs two of their cases, done here with
their semantics:

- :func:`add_imports`: ``import M`` for each module a rewrite names, unless the module's top-of-file
  import block already has it; the new lines go after that block (after a docstring or ``__strict__``),
  sorted, and the next statement is set off by an empty line (``AddImportsVisitor``'s layout).
- :func:`drop_unused_from_imports`: remove ``from M import X [as Y]`` aliases no reference reaches any
  more (``RemoveImportsVisitor``'s comma and parenthesis handling); *whether* a reference is left is
  the caller's answer, from the original file's scopes (:class:`.command.ConvertCommand`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import libcst as cst
from libcst.codemod.visitors._remove_imports import _merge_whitespace_after
from libcst.helpers import get_absolute_module_from_package_for_import

__all__ = ["add_imports", "drop_unused_from_imports", "top_imports_end"]

Statement = cst.SimpleStatementLine | cst.BaseCompoundStatement


def _skips_first(module: cst.Module) -> bool:
    """A docstring or ``__strict__ = ...`` first: imports go after it."""
    if not module.body or not isinstance(module.body[0], cst.SimpleStatementLine):
        return False
    body = module.body[0].body
    if len(body) != 1:
        return False
    small = body[0]
    if isinstance(small, cst.Expr):
        return isinstance(small.value, cst.SimpleString)
    return (
        isinstance(small, cst.Assign)
        and len(small.targets) == 1
        and isinstance(small.targets[0].target, cst.Name)
        and small.targets[0].target.value == "__strict__"
    )


def _is_import_line(statement: Statement) -> bool:
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], (cst.Import, cst.ImportFrom))
    )


def top_imports_end(module: cst.Module) -> tuple[int, int]:
    """(index of the first statement of the top import block, index after its last line)."""
    start = end = 1 if _skips_first(module) else 0
    for i, statement in enumerate(module.body[start:], start):
        if not _is_import_line(statement):
            break
        end = i + 1
    return start, end


def add_imports(module: cst.Module, needed: Iterable[str]) -> cst.Module:
    """``module`` with ``import M`` for each of ``needed`` its top import block does not have."""
    start, end = top_imports_end(module)
    present: set[str] = set()
    for statement in module.body[start:end]:
        small = statement.body[0]  # type: ignore[union-attr]
        if isinstance(small, cst.Import):
            present.update(a.evaluated_name for a in small.names if a.evaluated_alias is None)
    missing = sorted(set(needed) - present)
    if not missing:
        return module
    after = list(module.body[end:])
    if after and (not after[0].leading_lines or after[0].leading_lines[0].comment is not None):
        after[0] = after[0].with_changes(leading_lines=(cst.EmptyLine(), *after[0].leading_lines))
    config = module.config_for_parsing
    new = [cst.parse_statement(f"import {name}", config=config) for name in missing]
    return module.with_changes(body=(*module.body[:end], *new, *after))


def _without(node: cst.ImportFrom, unused: Callable[[cst.ImportAlias], bool]) -> cst.ImportFrom | None:
    """``node`` less the aliases ``unused`` names (None: none left), as RemoveImportsVisitor writes it."""
    assert not isinstance(node.names, cst.ImportStar)
    names, keep, updates = node.names, [], {}
    for alias in names:
        if not unused(alias):
            keep.append(alias)
            continue
        comma = alias.comma
        if isinstance(comma, cst.Comma):
            if keep:
                prev = keep[-1]
                if isinstance(prev.comma, cst.Comma):
                    prev = prev.with_deep_changes(
                        prev.comma,
                        whitespace_after=_merge_whitespace_after(
                            prev.comma.whitespace_after, comma.whitespace_after
                        ),
                    )
                else:
                    prev = prev.with_changes(comma=comma)
                keep[-1] = prev
            elif isinstance(node.lpar, cst.LeftParen):
                merged = _merge_whitespace_after(node.lpar.whitespace_after, comma.whitespace_after)
                updates["lpar"] = node.lpar.with_changes(whitespace_after=merged)
    if len(keep) == len(names) and all(a is b for a, b in zip(keep, names, strict=True)):
        return node
    if not keep:
        return None
    if keep[-1] is not names[-1]:
        keep[-1] = keep[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return node.with_changes(names=keep, **updates)


class _Dropper(cst.CSTTransformer):
    def __init__(self, targets: dict[int, cst.ImportFrom | None], path: set[int]) -> None:
        self.targets, self.path = targets, path

    def on_visit(self, node: cst.CSTNode) -> bool:
        return id(node) in self.path

    def on_leave(  # type: ignore[override]
        self, original_node: cst.CSTNode, updated_node: cst.CSTNode
    ) -> cst.CSTNode | cst.RemovalSentinel:
        if id(original_node) in self.targets:
            new = self.targets[id(original_node)]
            return cst.RemoveFromParent() if new is None else new
        return updated_node


def drop_unused_from_imports(
    module: cst.Module,
    requests: Iterable[tuple[str, str, str | None]],
    unused: Callable[[cst.ImportFrom, cst.ImportAlias], bool],
    package: str = "",
) -> cst.Module:
    """``module`` without the ``from M import X [as Y]`` aliases of ``requests`` ((M, X, Y) triples)
    for which ``unused(import_node, alias)`` holds, wherever those imports are (any depth)."""
    wanted: dict[str, set[tuple[str, str | None]]] = {}
    for mod, obj, asname in requests:
        wanted.setdefault(mod, set()).add((obj, asname))
    targets: dict[int, cst.ImportFrom | None] = {}
    path: set[int] = set()

    def walk(node: cst.CSTNode, stack: list[int]) -> None:
        if isinstance(node, cst.ImportFrom):
            if isinstance(node.names, cst.ImportStar):
                return
            mod = get_absolute_module_from_package_for_import(package or None, node)
            if mod is None or mod not in wanted:
                return
            pairs = wanted[mod]
            new = _without(
                node,
                lambda a: (a.evaluated_name, a.evaluated_alias) in pairs and unused(node, a),
            )
            if new is not node:
                targets[id(node)] = new
                path.update(stack)
            return
        if isinstance(node, (cst.BaseExpression, cst.Import)):
            return  # no ImportFrom inside an expression
        stack.append(id(node))
        for child in node.children:
            walk(child, stack)
        stack.pop()

    walk(module, [])
    if not targets:
        return module
    return module.visit(_Dropper(targets, path))  # type: ignore[return-value]
