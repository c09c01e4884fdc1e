"""The base both directions' codemods share: qualified names, positions, change records, imports.

It runs :class:`.analysis.Analysis` first, rewrites bare references to the source class (each direction
says into what, :meth:`ConvertCommand.reference_target`), maps a call's arguments through the direction's
rules and value converters, and drops imports left unused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Literal

import libcst as cst
from libcst.codemod import CodemodContext, VisitorBasedCodemodCommand
from libcst.codemod.visitors import RemoveImportsVisitor
from libcst.metadata import (
    Assignment,
    ImportAssignment,
    MetadataWrapper,
    ParentNodeProvider,
    PositionProvider,
    QualifiedNameProvider,
    QualifiedNameSource,
    ScopeProvider,
)

from .analysis import Analysis
from .arglist import Bound, Converted, Fates, ValueConverter, bind, expr, map_arguments
from .changes import Change
from .imports import add_imports, drop_unused_from_imports
from .rules import ArgRule

__all__ = ["Binding", "ConvertCommand"]

#: Which bindings reach a name: only the source class (``"class"``), the class and something else
#: (``"mixed"``: a shadowing assignment, ``def``/``class`` of the same name, a ``torch`` that may be
#: another object), or never the class (None).
Binding = Literal["class", "mixed"] | None
_DEFINES = (cst.ClassDef, cst.FunctionDef)


class ConvertCommand(VisitorBasedCodemodCommand):
    """One direction's codemod: ``SOURCE_NAMES`` (the class to migrate), ``RULES`` (its arguments' rows),
    :meth:`reference_target` and the value converters its rows name (:attr:`converters`).

    Binding-precise: a node is converted only when every binding reaching it is the source class
    (:meth:`_binding`). A name some bindings of which are the class and some not is left as written;
    where ``KEPT_TARGET`` is set, the ``from ... import`` binding it holds is re-pointed there (a class
    with the source's signature), so every binding keeps its meaning; otherwise it is reported.
    """

    METADATA_DEPENDENCIES = (QualifiedNameProvider, PositionProvider, ParentNodeProvider, ScopeProvider)
    SOURCE_NAMES: frozenset[str] = frozenset()
    SOURCE_CLASS = ""  # how reports name the source class
    RULES: tuple[ArgRule, ...] = ()
    COLLECT_USES = False  # whether the first pass also classifies every use of an optimizer variable
    KEPT_TARGET: str | None = None  # what an import of the class binds when some uses must stay as written
    #: Attribute (or bare) names the direction's hooks act on besides the class's own names: the
    #: rewrite descends only into subtrees holding one of them, an import or a name of the class.
    WATCHED_NAMES: frozenset[str] = frozenset()
    analysis: Analysis

    def __init__(self, context: CodemodContext) -> None:
        super().__init__(context)
        self.changes: list[Change] = []
        self._handled: set[int] = set()  # ids of original reference nodes rewritten by their parent
        self.converters: dict[str, ValueConverter] = {}  # the rows' ``value`` names -> converters
        self._star_sources: list[bool] = []  # per ``from M import *``: whether M is the class's module
        self._needed: list[str] = []  # modules the rewrites name (``import M`` added where missing)
        self._kept: dict[int, tuple[cst.Name, cst.Name]] = {}  # id(kept new Name) -> (it, original)
        self._imports_out: dict[int, cst.ImportFrom] = {}  # id(ImportFrom written) -> its original
        self._keep_alive: list[cst.CSTNode] = []  # the new nodes _imports_out names by id

    def convert(self, module: cst.Module) -> cst.Module:
        """The converted module: metadata resolved once on ``module`` itself (not a copy: nothing here
        mutates a node), one transform, then the imports the rewrites need added and the imports of the
        class no reference reaches any more removed (:mod:`.imports`, from the same scopes)."""
        wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        with self.resolve(wrapper):
            self.context = replace(self.context, wrapper=wrapper)
            out = self.transform_module_impl(module)
            if self._needed:
                out = add_imports(out, self._needed)
            if self.changes:
                out = self._drop_unused(out)
        return out

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:  # noqa: D102
        self._module = tree
        self._collect_import_aliases(tree)
        self.analysis = Analysis(tree, self._binding, self._qnames)
        self.analysis.watched_strings = {n: False for n in self._removal_names()}
        self.analysis.watched_names = self.WATCHED_NAMES
        tree.visit(self.analysis)
        self._descend = self._ancestors(tree, self.analysis.marks)
        self._skipped: set[int] = set()
        self._from_imports: list[cst.ImportFrom] = []  # every ``from ... import`` (all are visited)
        if self.COLLECT_USES:
            self.analysis.collect_uses(tree, lambda node: self.get_metadata(ParentNodeProvider, node))
        return super().transform_module_impl(tree)

    def _ancestors(self, tree: cst.Module, marks: list[cst.CSTNode]) -> set[int]:
        """Ids of the nodes above ``marks``: the only ones whose children the rewrite visits (every
        other subtree comes back as it is, unvisited)."""
        descend = {id(tree)}
        for node in marks:
            parent = self.get_metadata(ParentNodeProvider, node, None)
            while parent is not None and id(parent) not in descend:
                descend.add(id(parent))
                parent = self.get_metadata(ParentNodeProvider, parent, None)
        return descend

    def on_visit(self, node: cst.CSTNode) -> bool:
        """The node's own ``visit_`` hook runs; its children only where a hook may act below."""
        if not super().on_visit(node):
            return False
        if id(node) in self._descend:
            return True
        self._skipped.add(id(node))  # comes back as it is: no Name of _kept inside
        return False

    # ------------------------------------------------------------------ helpers
    def _qnames(self, node: cst.CSTNode) -> set[str]:
        return {q.name for q in self.get_metadata(QualifiedNameProvider, node, set())}

    def _names_class(self, node: cst.CSTNode) -> bool:
        return self._binding(node) == "class"

    def _binding(self, node: cst.CSTNode) -> Binding:
        """Whether ``node`` names the source class under every binding that reaches it, some, or none.

        A binding is the class only when it is an import of one of ``SOURCE_NAMES`` (a local object
        that happens to be called ``torch`` is not the module); a name no binding reaches, in a module
        whose only ``import *`` is from the class's module, is the class too; ``getattr(M, "ASGD")``
        with M the class's module and a literal name is the class.
        """
        if isinstance(node, cst.Call):
            return self._getattr_binding(node)
        qnames = self.get_metadata(QualifiedNameProvider, node, set())
        ours = {q for q in qnames if q.source is QualifiedNameSource.IMPORT and q.name in self.SOURCE_NAMES}
        if not ours:
            if qnames or not isinstance(node, cst.Name) or node.value not in self._class_names:
                return None
            if not any(self._star_sources) or not self._unbound(node):
                return None
            return "class" if all(self._star_sources) else "mixed"
        if len(ours) < len(qnames):
            return "mixed"
        return "class"

    @property
    def _class_names(self) -> set[str]:
        return {q.rpartition(".")[2] for q in self.SOURCE_NAMES}

    @property
    def _class_modules(self) -> set[str]:
        return {q.rpartition(".")[0] for q in self.SOURCE_NAMES}

    def _unbound(self, name: cst.Name) -> bool:
        scope = self.get_metadata(ScopeProvider, name, None)
        return scope is not None and not any(True for _ in scope[name.value])

    def _getattr_binding(self, call: cst.Call) -> Binding:
        """``getattr(torch.optim, "ASGD")`` (a literal name): the class."""
        func = call.func
        if not (isinstance(func, cst.Name) and func.value == "getattr" and len(call.args) == 2):
            return None
        if {q.name for q in self.get_metadata(QualifiedNameProvider, func, set())} != {"builtins.getattr"}:
            return None
        owner, attr = call.args[0].value, call.args[1].value
        if not isinstance(attr, cst.SimpleString) or attr.evaluated_value not in self._class_names:
            return None
        qnames = self.get_metadata(QualifiedNameProvider, owner, set())
        ours = {q for q in qnames if q.source is QualifiedNameSource.IMPORT and q.name in self._class_modules}
        if not ours:
            return None
        return "class" if len(ours) == len(qnames) else "mixed"

    def _assigned_values(self, name: cst.Name) -> Iterator[cst.BaseExpression]:
        """Values given to ``name`` where it is read (``x = v``, ``x: T = v``, ``x := v``)."""
        scope = self.get_metadata(ScopeProvider, name, None)
        if scope is None:
            return
        for assignment in scope[name.value]:
            if not isinstance(assignment, Assignment):
                continue
            parent = self.get_metadata(ParentNodeProvider, assignment.node, None)
            if isinstance(parent, cst.AssignTarget):
                parent = self.get_metadata(ParentNodeProvider, parent, None)
            if isinstance(parent, (cst.Assign, cst.AnnAssign, cst.NamedExpr)) and parent.value is not None:
                yield parent.value

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
        self._needed.append(module or dotted.rpartition(".")[0])
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
        self._from_imports.append(node)
        return False

    def leave_ImportFrom(
        self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
    ) -> cst.ImportFrom | cst.FlattenSentinel[cst.BaseSmallStatement]:
        """Re-point ``from M import ASGD [as X]`` to :attr:`KEPT_TARGET` where X stays as written."""
        if self.KEPT_TARGET is None or isinstance(updated_node.names, cst.ImportStar):
            return updated_node
        module = self._code(updated_node.module) if updated_node.module is not None else ""
        if updated_node.relative:
            return updated_node
        kept, rest = [], []
        for alias in updated_node.names:
            local = alias.asname.name.value if alias.asname else self._code(alias.name)  # type: ignore[union-attr]
            qname = f"{module}.{self._code(alias.name)}"
            if qname in self.SOURCE_NAMES and local in self.analysis.mixed_names:
                kept.append(alias)
            else:
                rest.append(alias)
        if not kept:
            self._imports_out[id(updated_node)] = original_node
            return updated_node
        target_module, _, target_name = self.KEPT_TARGET.rpartition(".")
        space = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
        new_names = [a.with_changes(name=cst.Name(target_name), comma=space) for a in kept]
        new_names[-1] = new_names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        if not rest:
            return updated_node.with_changes(module=expr(target_module), names=new_names)
        repointed = cst.ImportFrom(module=expr(target_module), names=new_names)  # type: ignore[arg-type]
        rest[-1] = rest[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        remaining = updated_node.with_changes(names=rest)
        self._imports_out[id(remaining)] = original_node
        self._keep_alive.append(remaining)
        return cst.FlattenSentinel([remaining, repointed])

    def visit_Call(self, node: cst.Call) -> None:
        if self._names_class(node.func):
            self._handled.add(id(node.func))  # the constructor rule rewrites the name with its call

    # ------------------------------------------------------------------ bare references
    def reference_target(self, original: cst.BaseExpression) -> tuple[str, str]:
        """(what a bare reference to the source class becomes, why)."""
        raise NotImplementedError

    def _bare(self, original: cst.BaseExpression, updated: cst.BaseExpression) -> cst.BaseExpression:
        if id(original) in self._handled:
            return updated
        binding = self._binding(original)
        if binding is None:
            return updated
        parent = self.get_metadata(ParentNodeProvider, original, None)
        if isinstance(parent, _DEFINES) and parent.name is original:
            return updated  # ``class ASGD(...)`` / ``def ASGD(...)``: the name defined, never a reference
        if binding == "mixed":
            self._keep(original)
            return updated
        target, why = self.reference_target(original)
        self._record(original, "reference", target, why)
        return self._import(target).with_changes(lpar=updated.lpar, rpar=updated.rpar)  # type: ignore[attr-defined]

    def _keep(self, original: cst.BaseExpression) -> None:
        """A reference some bindings of which are the class and some not: left as written."""
        self._handled.add(id(original))
        if isinstance(original, cst.Name) and self.KEPT_TARGET is not None and self._imported(original):
            self._record(
                original,
                "reference",
                f"(as written; the import binds {self.KEPT_TARGET})",
                f"{self._code(original)} may be {self.SOURCE_CLASS} or another binding: left as written",
            )
            return
        root = original
        while isinstance(root, cst.Attribute):
            root = root.value
        what = f"{self._code(root)} may be another object than the module here" if root is not original else (
            f"{self._code(original)} may be {self.SOURCE_CLASS} or another object"
        )
        self._report(original, f"{what} (more than one binding reaches it): convert by hand")

    def _imported(self, name: cst.Name) -> bool:
        """Whether a ``from M import ASGD [as X]`` at module level binds ``name``."""
        return name.value in {
            alias or qname.rpartition(".")[2]
            for qname, aliases in self._import_aliases.items()
            for alias in aliases
        }

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        new = self._bare(original_node, updated_node)
        if new is updated_node and updated_node.value in self.analysis.watched_strings:
            self._kept[id(updated_node)] = (updated_node, original_node)  # still referenced, if it stays
        return new

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        return self._bare(original_node, updated_node)

    # ------------------------------------------------------------------ imports
    def _removal_requests(self) -> list[tuple[str, str, str | None]]:
        """``from <module> import ASGD [as X]`` to drop where no use is left: each module-level alias,
        or the unaliased import at any depth."""
        requests = []
        for qname in sorted(self.SOURCE_NAMES):
            module, _, obj = qname.rpartition(".")
            for alias in sorted(self._import_aliases.get(qname, {None}), key=lambda a: a or ""):
                requests.append((module, obj, alias))
        return requests

    def _removal_names(self) -> set[str]:
        return {alias or obj for _, obj, alias in self._removal_requests()}

    def _drop_unused(self, out: cst.Module) -> cst.Module:
        """Drop the :meth:`_removal_requests` imports no reference reaches in ``out``.

        An alias is in use where an access of an import of its name in its scope (the original file's
        scopes: the conversion binds no new names) is still in ``out``; libcst's RemoveImportsVisitor
        (which resolves scopes on ``out`` again) decides the rare case of a string that may name it
        (``__all__``, a string annotation) or a rewrite whose new root is that name.
        """
        requests = self._removal_requests()
        modules = {module for module, _, _ in requests}
        if not any(
            node.module is not None and not node.relative and self._code(node.module) in modules
            for node in self._from_imports
        ):
            return out  # no ``from <module> import`` of the class anywhere
        roots = {n.partition(".")[0] for n in self._needed}
        if any(self.analysis.watched_strings.values()) or roots & self._removal_names():
            return RemoveImportsVisitor(self.context, requests).transform_module(out)
        present: set[int] | None = None

        def unused(node: cst.ImportFrom, alias: cst.ImportAlias) -> bool:
            nonlocal present
            original = self._imports_out.get(id(node), node)
            scope = self.get_metadata(ScopeProvider, original, None)
            if scope is None:
                return False
            if present is None:
                present = self._present_names(out)
            local = alias.evaluated_alias or alias.evaluated_name
            for assignment in scope[local]:
                if not isinstance(assignment, ImportAssignment):
                    continue
                for access in assignment.references:
                    if not isinstance(access.node, cst.Name) or id(access.node) in present:
                        return False
            return True

        return drop_unused_from_imports(out, requests, unused, self.context.full_package_name or "")

    def _present_names(self, out: cst.Module) -> set[int]:
        """Ids of the original Names (:attr:`_kept`) still in ``out``."""
        found: set[int] = set()
        stack: list[cst.CSTNode] = [out]
        while stack:
            node = stack.pop()
            kept = self._kept.get(id(node))
            if kept is not None and kept[0] is node:
                found.add(id(kept[1]))
            if id(node) not in self._skipped:  # a skipped subtree holds no Name of _kept below its root
                stack.extend(node.children)
        return found

    def _collect_import_aliases(self, tree: cst.Module) -> None:
        self._import_aliases: dict[str, set[str | None]] = defaultdict(set)
        for stmt in tree.body:
            for small in stmt.body if isinstance(stmt, cst.SimpleStatementLine) else ():
                if not isinstance(small, cst.ImportFrom):
                    continue
                module = self._code(small.module) if small.module is not None else ""
                if isinstance(small.names, cst.ImportStar):
                    self._star_sources.append(not small.relative and module in self._class_modules)
                    continue
                for alias in small.names:
                    qname = f"{module}.{self._code(alias.name)}"
                    if qname in self.SOURCE_NAMES:
                        asname = alias.asname.name.value if alias.asname else None  # type: ignore[union-attr]
                        self._import_aliases[qname].add(asname)
