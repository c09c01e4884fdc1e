"""The base both directions' codemods share: qualified names, positions, change records, imports.

It runs :class:`.analysis.Analysis` first, rewrites bare references to the source class (each direction
says into what, :meth:`ConvertCommand.reference_target`), maps a call's arguments through the direction's
rules and value converters, and drops imports left unused.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import libcst as cst
from libcst.codemod import CodemodContext, VisitorBasedCodemodCommand
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor
from libcst.metadata import ParentNodeProvider, PositionProvider, QualifiedNameProvider, ScopeProvider

from .analysis import Analysis
from .arglist import Bound, Converted, Fates, ValueConverter, bind, expr, map_arguments
from .changes import Change
from .rules import ArgRule

__all__ = ["ConvertCommand"]


class ConvertCommand(VisitorBasedCodemodCommand):
    """One direction's codemod: ``SOURCE_NAMES`` (the class to migrate), ``RULES`` (its arguments' rows),
    :meth:`reference_target` and the value converters its rows name (:attr:`converters`)."""

    METADATA_DEPENDENCIES = (QualifiedNameProvider, PositionProvider, ParentNodeProvider, ScopeProvider)
    SOURCE_NAMES: frozenset[str] = frozenset()
    SOURCE_CLASS = ""  # how reports name the source class
    RULES: tuple[ArgRule, ...] = ()
    COLLECT_USES = False  # whether the first pass also classifies every use of an optimizer variable
    analysis: Analysis

    def __init__(self, context: CodemodContext) -> None:
        super().__init__(context)
        self.changes: list[Change] = []
        self._handled: set[int] = set()  # ids of original reference nodes rewritten by their parent
        self.converters: dict[str, ValueConverter] = {}  # the rows' ``value`` names -> converters

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:  # noqa: D102
        self._module = tree
        self._collect_import_aliases(tree)
        self.analysis = Analysis(tree, self.SOURCE_NAMES, self._qnames)
        tree.visit(self.analysis)
        if self.COLLECT_USES:
            self.analysis.collect_uses(tree, lambda node: self.get_metadata(ParentNodeProvider, node))
        out = super().transform_module_impl(tree)
        if self.changes:
            self._remove_from_imports()
        return out

    # ------------------------------------------------------------------ helpers
    def _qnames(self, node: cst.CSTNode) -> set[str]:
        return {q.name for q in self.get_metadata(QualifiedNameProvider, node, set())}

    def _names_class(self, node: cst.CSTNode) -> bool:
        return bool(self._qnames(node) & self.SOURCE_NAMES)

    def _pos(self, node: cst.CSTNode) -> tuple[int, int]:
        pos = self.get_metadata(PositionProvider, node, None)
        return (pos.start.line, pos.start.column + 1) if pos else (0, 0)

    def _code(self, node: cst.CSTNode) -> str:
        return self._module.code_for_node(node)

    def _record(self, node: cst.CSTNode, kind: str, target: str, reason: str, arguments: Any = ()) -> None:
        line, col = self._pos(node)
        source = self._code(node)
        if "\n" in source or len(source) > 80:
            source = source.split("\n")[0][:77] + "..."
        self.changes.append(Change(line, col, kind, source, target, reason, list(arguments)))

    def _report(self, node: cst.CSTNode, reason: str) -> None:
        """A finding the rules cannot carry: the code stays as it is."""
        self._record(node, "report", "(unchanged)", reason)

    def _import(self, dotted: str, module: str | None = None) -> cst.BaseExpression:
        """The expression ``dotted``, ``module`` (default: all of ``dotted`` but its last name) imported."""
        AddImportsVisitor.add_needed_import(self.context, module or dotted.rpartition(".")[0])
        return expr(dotted)

    # ------------------------------------------------------------------ arguments
    def _bind(self, call: cst.Call, skip: int = 0) -> Bound | str:
        """Each argument's source name after :attr:`RULES`, or why the call cannot be bound
        (``"dynamic"``: ``*args``/``**kwargs``)."""
        return bind(call.args, self.RULES, self.SOURCE_CLASS, skip)

    def _map(
        self, original: cst.Call, updated: cst.Call, bound: Bound, rules: tuple[ArgRule, ...] | None = None
    ) -> tuple[list[cst.Arg], Fates] | str:
        """The call's arguments after ``rules`` (default :attr:`RULES`) and their value converters, or
        the problem one of the converters found."""
        return map_arguments(updated, original, bound, self.RULES if rules is None else rules, self._convert)

    def _convert(self, rule: ArgRule, arg: cst.Arg | None, original: cst.Arg | None) -> Converted:
        return self.converters[rule.value](rule, arg, original)  # type: ignore[index]

    # ------------------------------------------------------------------ visits
    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def visit_Call(self, node: cst.Call) -> None:
        if self._names_class(node.func):
            self._handled.add(id(node.func))  # the constructor rule rewrites the name with its call

    # ------------------------------------------------------------------ bare references
    def reference_target(self, original: cst.BaseExpression) -> tuple[str, str]:
        """(what a bare reference to the source class becomes, why)."""
        raise NotImplementedError

    def _bare(self, original: cst.BaseExpression, updated: cst.BaseExpression) -> cst.BaseExpression:
        if id(original) in self._handled or not self._names_class(original):
            return updated
        target, why = self.reference_target(original)
        self._record(original, "reference", target, why)
        return self._import(target).with_changes(lpar=updated.lpar, rpar=updated.rpar)  # type: ignore[attr-defined]

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        return self._bare(original_node, updated_node)

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        return self._bare(original_node, updated_node)

    # ------------------------------------------------------------------ imports
    def _remove_from_imports(self) -> None:
        """Drop ``from <module> import ASGD [as X]`` where no use is left."""
        for qname in self.SOURCE_NAMES:
            module, _, obj = qname.rpartition(".")
            for alias in self._import_aliases.get(qname, {None}):
                RemoveImportsVisitor.remove_unused_import(self.context, module, obj, alias)

    def _collect_import_aliases(self, tree: cst.Module) -> None:
        self._import_aliases: dict[str, set[str | None]] = defaultdict(set)
        for stmt in tree.body:
            for small in stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ():
                if not isinstance(small, cst.ImportFrom) or isinstance(small.names, cst.ImportStar):
                    continue
                module = self._code(small.module) if small.module is not None else ""
                for alias in small.names:
                    qname = f"{module}.{self._code(alias.name)}"
                    if qname in self.SOURCE_NAMES:
                        asname = alias.asname.name.value if alias.asname else None  # type: ignore[union-attr]
                        self._import_aliases[qname].add(asname)
