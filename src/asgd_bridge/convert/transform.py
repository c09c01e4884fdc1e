"""libcst codemods migrating ASGD programs: torch.optim.ASGD -> Paddle, paddle.optimizer.ASGD -> torch.

Only the nodes that name the class (and the uses that would crash after migration) are rewritten; the rest of
the file round-trips byte for byte, comments included. Argument decisions come from :mod:`.rules`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import libcst as cst
from libcst.codemod import CodemodContext, VisitorBasedCodemodCommand
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor
from libcst.metadata import ParentNodeProvider, PositionProvider, QualifiedNameProvider

from .rules import (
    ASGD_RULES,
    ASGD_TARGET,
    GROUP_KEY_RULES,
    PADDLE_ASGD_NAMES,
    REQUIRED,
    RUNTIME_MODULE,
    SAG_RULES,
    SAG_TARGET,
    SGD_TARGET,
    TORCH_ASGD_NAMES,
    Action,
    ArgRule,
    positional_names,
    rule_for,
    sgd_weight_decay,
)

__all__ = ["Change", "ConvertResult", "convert_source", "PaddleToTorch", "TorchToPaddle"]

TORCH_ASGD_CLASS = f"{RUNTIME_MODULE}.TorchASGD"
PARAM_GROUPS_HELPER = f"{RUNTIME_MODULE}.param_groups"
TORCH_GROUPS_HELPER = f"{RUNTIME_MODULE}.torch_param_groups"

# Uses of an optimizer that plain paddle.optimizer.SGD serves exactly like torch's ASGD.
_SGD_SAFE_METHODS = frozenset({"step", "zero_grad", "clear_grad"})
# Attribute names that hold a layer's tensors, never a param-group dict.
_LAYER_TENSORS = frozenset({"weight", "bias"})


@dataclass
class Change:
    """One rewrite or finding, for the per-call summary and ``--report``.

    ``kind`` is what was met (constructor, subclass, super-init, reference, param_groups, report);
    ``arguments`` lists each source argument's fate as ``(source, target, action, reason)``.
    """

    line: int
    column: int
    kind: str
    source: str
    target: str
    reason: str
    arguments: list[tuple[str, str, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "line": self.line,
            "column": self.column,
            "kind": self.kind,
            "source": self.source,
            "target": self.target,
            "reason": self.reason,
            "arguments": [
                {"source": s, "target": t, "action": a, "reason": r} for s, t, a, r in self.arguments
            ],
        }

    def summary(self) -> str:
        """One line (plus one per argument) for humans."""
        head = f"{self.line}:{self.column}: {self.kind}: {self.source} -> {self.target} ({self.reason})"
        lines = [head]
        for s, t, a, r in self.arguments:
            lines.append(f"    {s} -> {t or '-'}: {a}" + (f" ({r})" if r else ""))
        return "\n".join(lines)


@dataclass
class ConvertResult:
    """Converted source and what was done to it."""

    code: str
    changes: list[Change]

    @property
    def reports(self) -> list[Change]:
        """The findings that were not converted and need the user's attention."""
        return [c for c in self.changes if c.kind == "report"]


def _expr(dotted: str) -> cst.BaseExpression:
    return cst.parse_expression(dotted)


def _literal(code: str) -> Any:
    """The value of a literal expression's source, or raise ValueError."""
    return ast.literal_eval(code)


def _kw(name: str) -> cst.Name:
    return cst.Name(name)


_EQ = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))


def _with_keyword(arg: cst.Arg, name: str) -> cst.Arg:
    if arg.keyword is not None and arg.keyword.value == name:
        return arg
    equal = arg.equal if isinstance(arg.equal, cst.AssignEqual) else _EQ
    return arg.with_changes(keyword=_kw(name), equal=equal)


def _layout(layout: cst.Comma, comment: cst.Comma | None) -> cst.Comma:
    """``layout``'s line break and indentation, with the trailing comment of ``comment`` (or none)."""
    ws = layout.whitespace_after
    if not isinstance(ws, cst.ParenthesizedWhitespace):
        return layout
    first, empty = cst.TrailingWhitespace(), ()
    if comment is not None and isinstance(comment.whitespace_after, cst.ParenthesizedWhitespace):
        first, empty = comment.whitespace_after.first_line, comment.whitespace_after.empty_lines
    return layout.with_changes(whitespace_after=ws.with_changes(first_line=first, empty_lines=empty))


def _comma(arg: cst.Arg) -> cst.Comma | None:
    return arg.comma if isinstance(arg.comma, cst.Comma) else None


def _append_args(args: list[cst.Arg], extra: list[cst.Arg]) -> list[cst.Arg]:
    """Append ``extra`` in the layout of the existing call (one line, or one argument per line).

    Comments stay on the argument they follow; the new arguments get none.
    """
    if not extra:
        return args
    space = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    if not args:
        return [e.with_changes(comma=space) for e in extra[:-1]] + [extra[-1]]
    last, last_comma = args[-1], _comma(args[-1])
    if last_comma is None:
        inner = _comma(args[-2]) if len(args) > 1 else None
        sep = inner if inner is not None else space
        return [
            *args[:-1],
            last.with_changes(comma=sep),
            *(e.with_changes(comma=sep) for e in extra[:-1]),
            extra[-1],
        ]
    # trailing comma: keep its style; on multi-line calls each new argument gets its own line
    inner_src = _comma(args[-2]) if len(args) > 1 else None
    inner_src = inner_src if inner_src is not None else last_comma
    inner = _layout(inner_src, None)
    body = [*args[:-1], last.with_changes(comma=_layout(inner_src, last_comma))]
    body += [e.with_changes(comma=inner) for e in extra[:-1]]
    return [*body, extra[-1].with_changes(comma=_layout(last_comma, None))]


def _remove_args(args: list[cst.Arg], drop: set[int]) -> list[cst.Arg]:
    """Remove the args at indices ``drop``; the new last argument takes over the old last one's layout
    (trailing comma or not) and keeps its own comment."""
    if not drop:
        return args
    kept = [a for i, a in enumerate(args) if i not in drop]
    if kept and len(args) - 1 in drop:
        old_last = _comma(args[-1])
        new_comma = _layout(old_last, _comma(kept[-1])) if old_last is not None else cst.MaybeSentinel.DEFAULT
        kept[-1] = kept[-1].with_changes(comma=new_comma)
    return kept


def _fmt(value: Any) -> str:
    return repr(value)


class _Analysis(cst.CSTVisitor):
    """First pass: which expressions hold an ASGD, what else they hold, and how they are used."""

    def __init__(self, module: cst.Module, names: frozenset[str], resolve: Any) -> None:
        self._module = module
        self.names = names
        self._qnames = resolve  # node -> set of qualified names
        self.assigned: dict[str, set[str]] = defaultdict(set)  # key -> {"asgd", "other"}
        self.call_key: dict[int, str] = {}  # id(ASGD call) -> key it is assigned to
        self.uses: dict[str, list[str]] = defaultdict(list)  # key -> use kinds
        self.mentions = False  # the class is named outside imports (called, subclassed, referenced)

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.mentions = self.mentions or bool(self._qnames(node) & self.names)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.mentions = self.mentions or bool(self._qnames(node) & self.names)

    def _is_asgd_call(self, node: cst.BaseExpression) -> bool:
        return isinstance(node, cst.Call) and bool(self._qnames(node.func) & self.names)

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            if isinstance(target.target, (cst.Name, cst.Attribute)):
                key = self._module.code_for_node(target.target)
                if self._is_asgd_call(node.value):
                    self.assigned[key].add("asgd")
                    if len(node.targets) == 1:
                        self.call_key[id(node.value)] = key
                else:
                    self.assigned[key].add("other")

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None and isinstance(node.target, (cst.Name, cst.Attribute)):
            key = self._module.code_for_node(node.target)
            if self._is_asgd_call(node.value):
                self.assigned[key].add("asgd")
                self.call_key[id(node.value)] = key
            else:
                self.assigned[key].add("other")

    def collect_uses(self, module: cst.Module, parents: Any) -> None:
        """Classify every load of an ASGD-holding expression (second pass, after keys are known)."""
        keys = {k for k, kinds in self.assigned.items() if "asgd" in kinds}
        if not keys:
            return
        roots = {k.split(".")[0] for k in keys}
        finder = _UseFinder(module, keys, roots, parents, self.uses)
        module.visit(finder)


class _ParentLookup:
    """``parents[node]`` through a codemod's resolved ParentNodeProvider."""

    def __init__(self, command: VisitorBasedCodemodCommand) -> None:
        self.command = command

    def __getitem__(self, node: cst.CSTNode) -> cst.CSTNode:
        return self.command.get_metadata(ParentNodeProvider, node)


class _UseFinder(cst.CSTVisitor):
    def __init__(
        self, module: cst.Module, keys: set[str], roots: set[str], parents: Any, uses: dict[str, list[str]]
    ) -> None:
        self._module, self.keys, self.roots, self.parents, self.uses = module, keys, roots, parents, uses

    def _record(self, node: cst.BaseExpression) -> None:
        key = self._module.code_for_node(node)
        if key not in self.keys:
            return
        parent = self.parents[node]
        if isinstance(parent, cst.AssignTarget) or (
            isinstance(parent, cst.AnnAssign) and parent.target is node
        ):
            return
        if isinstance(parent, cst.Attribute) and parent.value is node:
            grand = self.parents[parent]
            if (
                parent.attr.value in _SGD_SAFE_METHODS
                and isinstance(grand, cst.Call)
                and grand.func is parent
                and not grand.args
            ):
                self.uses[key].append("simple")
            else:
                self.uses[key].append(f".{parent.attr.value}")
        else:
            self.uses[key].append("passed")

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.roots:
            self._record(node)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        root: cst.BaseExpression = node
        while isinstance(root, cst.Attribute):
            root = root.value
        if isinstance(root, cst.Name) and root.value in self.roots:
            self._record(node)


class _Base(VisitorBasedCodemodCommand):
    """Shared machinery: qualified-name lookup, positions, change records, bare-reference bookkeeping."""

    METADATA_DEPENDENCIES = (QualifiedNameProvider, PositionProvider, ParentNodeProvider)
    SOURCE_NAMES: frozenset[str] = frozenset()

    def __init__(self, context: CodemodContext) -> None:
        super().__init__(context)
        self.changes: list[Change] = []
        self._handled: set[int] = set()  # ids of original reference nodes rewritten by their parent
        self._typed_context = 0  # inside an annotation or isinstance()/issubclass() second argument

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

    def visit_Module(self, node: cst.Module) -> None:
        self._module = node

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def visit_Annotation(self, node: cst.Annotation) -> None:
        self._typed_context += 1

    def leave_Annotation(self, original_node: cst.Annotation, updated_node: cst.Annotation) -> cst.Annotation:
        self._typed_context -= 1
        return updated_node

    def _remove_from_imports(self) -> None:
        """Drop ``from <module> import ASGD [as X]`` where no use is left."""
        for qname in self.SOURCE_NAMES:
            module, _, obj = qname.rpartition(".")
            for alias in self._import_aliases.get(qname, {None}):
                RemoveImportsVisitor.remove_unused_import(self.context, module, obj, alias)

    def _collect_import_aliases(self, tree: cst.Module) -> None:
        self._import_aliases: dict[str, set[str | None]] = defaultdict(set)
        for stmt in tree.body:
            if not isinstance(stmt, cst.SimpleStatementLine):
                continue
            for small in stmt.body:
                if isinstance(small, cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
                    module = self._code(small.module) if small.module is not None else ""
                    for alias in small.names:
                        qname = f"{module}.{self._code(alias.name)}"
                        if qname in self.SOURCE_NAMES:
                            asname = alias.asname.name.value if alias.asname else None  # type: ignore[union-attr]
                            self._import_aliases[qname].add(asname)


class TorchToPaddle(_Base):
    """``torch.optim.ASGD``, however spelled -> ``asgd_bridge.paddle.ASGD`` (or exact plain Paddle SGD).

    Rules, each small: constructor calls (:meth:`_convert_call`), subclasses and their ``super().__init__``,
    bare references, and ``X.param_groups`` on an expression that holds an ASGD and something else.
    """

    DESCRIPTION = "Migrate torch.optim.ASGD to asgd_bridge.paddle.ASGD."
    SOURCE_NAMES = TORCH_ASGD_NAMES

    def __init__(self, context: CodemodContext) -> None:
        super().__init__(context)
        self._class_stack: list[str | None] = []  # per class: its new base (or None if not an ASGD subclass)
        self._analysis: _Analysis | None = None

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:  # noqa: D102
        self._module = tree
        self._collect_import_aliases(tree)
        analysis = _Analysis(tree, self.SOURCE_NAMES, self._qnames)
        tree.visit(analysis)
        analysis.collect_uses(tree, _ParentLookup(self))
        self._analysis = analysis
        out = super().transform_module_impl(tree)
        if self.changes:
            self._remove_from_imports()
        return out

    # ------------------------------------------------------------------ decisions
    def _wraps_param_groups(self, key: str) -> bool:
        """Whether ``key.param_groups`` needs :func:`.runtime.param_groups`.

        In a program that uses torch's ASGD, any expression not known to hold only an ASGD may hold a
        Paddle optimizer once PaConvert has run (the AWD-LSTM habit asks ``'t0' in
        optimizer.param_groups[0]`` of a ``torch.optim.SGD``, however the ASGD is later made), and Paddle
        optimizers have no ``param_groups``. The helper returns ``param_groups`` itself where it exists.
        """
        assert self._analysis is not None
        if key == "self" and self._class_stack and self._class_stack[-1] is not None:
            return False  # inside an ASGD subclass: self is the averaged-SGD optimizer
        return self._analysis.mentions and self._analysis.assigned.get(key) != {"asgd"}

    def _sgd_reason_against(self, call: cst.Call, values: dict[str, cst.Arg]) -> str | None:
        """Why plain paddle.optimizer.SGD would not be exact for this call (None: it is exact)."""
        assert self._analysis is not None
        if self._class_stack and self._class_stack[-1] is not None:
            return "inside an ASGD subclass"
        key = self._analysis.call_key.get(id(call))
        if key is None:
            return "the optimizer is not assigned to a variable the converter can follow"
        if self._analysis.assigned[key] != {"asgd"}:
            return f"{key} also holds another optimizer"
        others = sorted({u for u in self._analysis.uses[key] if u != "simple"})
        if others:
            return f"{key} is used beyond step()/zero_grad(): " + ", ".join(others)
        params = values.get("params")
        if params is not None and not self._tensor_params(params.value):
            return "params may hold param groups"
        lits: dict[str, Any] = {}
        for rule in ASGD_RULES:
            if rule.source in ("lambd", "alpha", "weight_decay", "maximize"):
                arg = values.get(rule.source)
                try:
                    lits[rule.source] = _literal(self._code(arg.value)) if arg else rule.default
                except (ValueError, SyntaxError):
                    return f"{rule.source} is known only at run time"
        if sgd_weight_decay(lits) is None:
            return "eta decays (lambd != 0 and alpha != 0)" if lits.get("maximize") is False else "maximize"
        self._sgd_decay = sgd_weight_decay(lits)
        return None

    @staticmethod
    def _tensor_params(node: cst.BaseExpression) -> bool:
        """Statically known to be tensors (not param-group dicts, not named pairs).

        ``model.parameters()`` and lists of layer tensors (``[lin.weight, lin.bias]``) only: a list of
        plain names (``[body, head]``) may hold group dicts with their own ``lr``, which plain SGD ignores.
        """
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            return node.func.attr.value == "parameters"
        if isinstance(node, (cst.List, cst.Tuple)):
            return all(
                isinstance(e, cst.Element)
                and isinstance(e.value, cst.Attribute)
                and e.value.attr.value in _LAYER_TENSORS
                for e in node.elements
            )
        return False

    # ------------------------------------------------------------------ param groups
    def _convert_params(
        self, node: cst.BaseExpression, original: cst.BaseExpression
    ) -> tuple[cst.BaseExpression, str]:
        """Translate torch's params expression; returns the new expression and what was done.

        ``original`` is the same expression in the source tree, where positions for reports live.

        asgd_bridge.paddle.ASGD takes tensors and torch's group dicts (``lr`` included) as they are, so
        only named parameters and group keys the rules drop need a rewrite.
        """
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            if node.func.attr.value == "named_parameters":
                AddImportsVisitor.add_needed_import(self.context, RUNTIME_MODULE)
                helper = cst.Call(func=_expr(TORCH_GROUPS_HELPER), args=[cst.Arg(node)])
                return helper, "named parameters: names stripped by torch_param_groups()"
            return node, "tensors"
        if isinstance(node, (cst.List, cst.Tuple)) and any(
            isinstance(e, cst.Element) and isinstance(e.value, cst.Dict) for e in node.elements
        ):
            elements = []
            notes: list[str] = []
            old = original.elements if isinstance(original, (cst.List, cst.Tuple)) else node.elements
            for el, old_el in zip(node.elements, old, strict=True):
                if isinstance(el, cst.Element) and isinstance(el.value, cst.Dict):
                    old_group = old_el.value if isinstance(old_el.value, cst.Dict) else el.value
                    el = el.with_changes(value=self._static_group(el.value, old_group, notes))
                elements.append(el)
            note = "param-group dicts carried (lr is absolute, as in torch)"
            return node.with_changes(elements=elements), "; ".join([note, *notes])
        return node, "passed as is (tensors or torch-style group dicts are both taken)"

    def _static_group(self, group: cst.Dict, original: cst.Dict, notes: list[str]) -> cst.Dict:
        """Remove the keys the rules drop from one group dict; report keys the target does not take."""
        elements: list[cst.BaseDictElement] = []
        dropped_last = False
        for el, old_el in zip(group.elements, original.elements, strict=True):
            dropped_last = False
            key = (
                el.key.evaluated_value
                if isinstance(el, cst.DictElement) and isinstance(el.key, cst.SimpleString)
                else None
            )
            rule = rule_for(GROUP_KEY_RULES, key) if isinstance(key, str) else None
            if rule is not None and rule.action is Action.DROP:
                dropped_last = True
                notes.append(f"group key {key!r} dropped: {rule.reason}")
                continue
            if rule is None and isinstance(key, str):
                self._record(
                    old_el,
                    "report",
                    "(carried)",
                    f"param-group key {key!r} has no rule: asgd_bridge.paddle.ASGD will refuse it",
                )
            elements.append(el)
        if dropped_last and elements:
            elements[-1] = elements[-1].with_changes(comma=group.elements[-1].comma)
        return group.with_changes(elements=elements)

    # ------------------------------------------------------------------ calls
    def _bind(self, args: list[cst.Arg], skip: int = 0) -> tuple[dict[str, tuple[int, cst.Arg]], str | None]:
        """Map each argument to its torch name; the second value names a problem (dynamic, unknown)."""
        names = positional_names(ASGD_RULES)
        bound: dict[str, tuple[int, cst.Arg]] = {}
        for i, arg in enumerate(args):
            if i < skip:
                continue
            if arg.star:
                return bound, "dynamic"
            if arg.keyword is None:
                pos = i - skip
                if pos >= len(names):
                    return bound, "too many positional arguments for torch.optim.ASGD"
                bound[names[pos]] = (i, arg)
            else:
                name = arg.keyword.value
                if rule_for(ASGD_RULES, name) is None:
                    return bound, f"unknown argument {name!r} (torch.optim.ASGD does not take it)"
                bound[name] = (i, arg)
        return bound, None

    def _map_args(
        self, args: list[cst.Arg], bound: dict[str, tuple[int, cst.Arg]], originals: list[cst.Arg]
    ) -> tuple[list[cst.Arg], list[tuple[str, str, str, str]]]:
        """Rewrite bound torch arguments into asgd_bridge.paddle.ASGD keywords, following ASGD_RULES."""
        new_args = list(args)
        drop: set[int] = set()
        fates: list[tuple[str, str, str, str]] = []
        extra: list[cst.Arg] = []
        for rule in ASGD_RULES:
            if rule.source not in bound:
                if rule.write_default and rule.default is not REQUIRED:
                    extra.append(
                        cst.Arg(
                            keyword=_kw(rule.target or rule.source),
                            equal=_EQ,
                            value=cst.Float(_fmt(float(rule.default))),
                        )
                    )
                    fates.append((rule.source, rule.target or "", "default written", rule.reason))
                continue
            i, arg = bound[rule.source]
            if rule.action is Action.DROP:
                drop.add(i)
                fates.append((rule.source, "", "dropped", rule.reason))
                continue
            assert rule.target is not None
            new = _with_keyword(arg, rule.target)
            how = rule.action.value
            if rule.source == "params":
                value, note = self._convert_params(arg.value, originals[i].value)
                new = new.with_changes(value=value)
                how = f"{how}; {note}"
            new_args[i] = new
            fates.append((rule.source, rule.target, how, rule.reason if rule.source != "params" else ""))
        return _append_args(_remove_args(new_args, drop), extra), fates

    def _convert_call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        bound, problem = self._bind(list(updated.args))
        if problem == "dynamic":
            AddImportsVisitor.add_needed_import(self.context, RUNTIME_MODULE)
            self._record(
                original,
                "constructor",
                TORCH_ASGD_CLASS,
                "*args/**kwargs known only at run time: TorchASGD applies the same rules then",
            )
            return updated.with_changes(func=_expr(TORCH_ASGD_CLASS))
        if problem is not None:
            self._record(original, "report", "(unchanged)", problem)
            return updated
        if "params" not in bound:
            self._record(original, "report", "(unchanged)", "params is missing")
            return updated
        against = self._sgd_reason_against(original, {k: a for k, (_, a) in bound.items()})
        if against is None:
            return self._to_sgd(original, updated, bound)
        args, fates = self._map_args(list(updated.args), bound, list(original.args))
        AddImportsVisitor.add_needed_import(self.context, ASGD_TARGET[0])
        self._record(original, "constructor", ASGD_TARGET[1], f"averaged SGD kept: {against}", fates)
        return updated.with_changes(func=_expr(ASGD_TARGET[1]), args=args)

    def _to_sgd(
        self, original: cst.Call, updated: cst.Call, bound: dict[str, tuple[int, cst.Arg]]
    ) -> cst.Call:
        """Exact plain SGD: ``learning_rate=lr, parameters=params, weight_decay=lambd + weight_decay``."""
        decay = self._sgd_decay
        lr = bound["lr"][1].value if "lr" in bound else cst.Float(_fmt(float(ASGD_RULES[1].default)))
        keep = {"lr": "learning_rate", "params": "parameters"}
        new_args = list(updated.args)
        drop: set[int] = set()
        fates = []
        for name, (i, arg) in bound.items():
            if name in keep:
                new_args[i] = _with_keyword(arg, keep[name])
                fates.append((name, keep[name], "rename", ""))
            elif name == "weight_decay":
                new_args[i] = _with_keyword(arg, "weight_decay").with_changes(
                    value=cst.Float(_fmt(float(decay)))
                )
                fates.append((name, "weight_decay", "folded", "weight_decay = lambd + weight_decay"))
            else:
                drop.add(i)
                fates.append(
                    (name, "", "dropped", "no effect on plain SGD's numbers (eta constant, ax unused)")
                )
        extra = []
        if "lr" not in bound:
            extra.append(cst.Arg(keyword=_kw("learning_rate"), equal=_EQ, value=lr))
            fates.append(("lr", "learning_rate", "default written", ASGD_RULES[1].reason))
        if "weight_decay" not in bound:
            extra.append(cst.Arg(keyword=_kw("weight_decay"), equal=_EQ, value=cst.Float(_fmt(float(decay)))))
            fates.append(("weight_decay", "weight_decay", "folded", "weight_decay = lambd + weight_decay"))
        AddImportsVisitor.add_needed_import(self.context, SGD_TARGET[0])
        self._record(
            original,
            "constructor",
            SGD_TARGET[1],
            "exact: eta is constant (lambd == 0 or alpha == 0), ax and param_groups unused",
            fates,
        )
        return updated.with_changes(
            func=_expr(SGD_TARGET[1]), args=_append_args(_remove_args(new_args, drop), extra)
        )

    # ------------------------------------------------------------------ subclasses
    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        is_sub = any(self._names_class(base.value) for base in node.bases)
        if not is_sub:
            self._class_stack.append(None)
            return
        for base in node.bases:
            if self._names_class(base.value):
                self._handled.add(id(base.value))
        # super().__init__ with *args/**kwargs cannot be mapped statically: keep torch's signature instead.
        dynamic = False
        for call in _super_init_calls(node, self):
            if any(a.star for a in call.args):
                dynamic = True
        self._class_stack.append(TORCH_ASGD_CLASS if dynamic else ASGD_TARGET[1])

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        target = self._class_stack.pop()
        if target is None:
            return updated_node
        AddImportsVisitor.add_needed_import(self.context, target.rpartition(".")[0])
        bases = [
            b.with_changes(value=_expr(target)) if self._names_class(ob.value) else b
            for b, ob in zip(updated_node.bases, original_node.bases, strict=True)
        ]
        why = (
            "super().__init__ passes *args/**kwargs: TorchASGD keeps torch's signature"
            if target == TORCH_ASGD_CLASS
            else "subclass of averaged SGD; super().__init__ mapped"
        )
        self._record(original_node.name, "subclass", target, why)
        return updated_node.with_changes(bases=bases)

    def _super_init_skip(self, call: cst.Call) -> int | None:
        """1 for ``torch.optim.ASGD.__init__(self, ...)``, 0 for ``super().__init__(...)``, else None."""
        func = call.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "__init__"):
            return None
        if isinstance(func.value, cst.Call) and isinstance(func.value.func, cst.Name):
            return 0 if func.value.func.value == "super" else None
        if self._names_class(func.value):
            return 1
        return None

    # ------------------------------------------------------------------ visits
    def visit_Call(self, node: cst.Call) -> None:
        if self._names_class(node.func):
            self._handled.add(id(node.func))
        elif (
            isinstance(node.func, cst.Name)
            and node.func.value in ("isinstance", "issubclass")
            and len(node.args) == 2
        ):
            self._typed_args = getattr(self, "_typed_args", set()) | {id(node.args[1].value)}
        skip = self._super_init_skip(node)
        if skip == 1 and isinstance(node.func, cst.Attribute):
            self._handled.add(id(node.func.value))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if self._names_class(original_node.func):
            return self._convert_call(original_node, updated_node)
        skip = self._super_init_skip(original_node)
        target = (
            next((t for t in reversed(self._class_stack) if t is not None), None)
            if self._class_stack
            else None
        )
        in_sub = bool(self._class_stack) and self._class_stack[-1] is not None
        if skip is None or not (in_sub or skip == 1):
            return updated_node
        if skip == 1 and not in_sub:
            target = ASGD_TARGET[1]
        if target == TORCH_ASGD_CLASS:
            if skip == 1:
                return updated_node.with_changes(
                    func=updated_node.func.with_changes(value=_expr(TORCH_ASGD_CLASS))  # type: ignore[union-attr]
                )
            return updated_node
        bound, problem = self._bind(list(updated_node.args), skip)
        if problem is not None or "params" not in bound:
            self._record(original_node, "report", "(unchanged)", problem or "params is missing")
            return updated_node
        args, fates = self._map_args(list(updated_node.args), bound, list(original_node.args))
        self._record(original_node, "super-init", ASGD_TARGET[1], "arguments of the averaged-SGD base", fates)
        if skip == 1:
            AddImportsVisitor.add_needed_import(self.context, ASGD_TARGET[0])
            func = updated_node.func.with_changes(value=_expr(ASGD_TARGET[1]))  # type: ignore[union-attr]
            return updated_node.with_changes(func=func, args=args)
        return updated_node.with_changes(args=args)

    def _bare(self, original: cst.BaseExpression, updated: cst.BaseExpression) -> cst.BaseExpression:
        if id(original) in self._handled or not self._names_class(original):
            return updated
        typed = self._typed_context > 0 or id(original) in getattr(self, "_typed_args", set())
        target = ASGD_TARGET[1] if typed else TORCH_ASGD_CLASS
        AddImportsVisitor.add_needed_import(self.context, target.rpartition(".")[0])
        why = (
            "type check/annotation: the Paddle class"
            if typed
            else "bare reference: TorchASGD takes torch's arguments when called later"
        )
        self._record(original, "reference", target, why)
        return _expr(target).with_changes(lpar=updated.lpar, rpar=updated.rpar)  # type: ignore[attr-defined]

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        return self._bare(original_node, updated_node)

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        if (
            original_node.attr.value == "param_groups"
            and self._wraps_param_groups(self._code(original_node.value))
            and not isinstance(self.get_metadata(ParentNodeProvider, original_node, None), cst.AssignTarget)
        ):
            AddImportsVisitor.add_needed_import(self.context, RUNTIME_MODULE)
            self._record(
                original_node,
                "param_groups",
                PARAM_GROUPS_HELPER,
                f"{self._code(original_node.value)} may hold a Paddle optimizer (no param_groups)",
            )
            return cst.Call(
                func=_expr(PARAM_GROUPS_HELPER),
                args=[cst.Arg(updated_node.value)],
                lpar=updated_node.lpar,
                rpar=updated_node.rpar,
            )
        return self._bare(original_node, updated_node)


def _super_init_calls(node: cst.ClassDef, cmd: TorchToPaddle) -> list[cst.Call]:
    """``super().__init__(...)`` and ``<ASGD>.__init__(self, ...)`` calls in a class body."""
    found: list[cst.Call] = []

    class _Finder(cst.CSTVisitor):
        def visit_ClassDef(self, inner: cst.ClassDef) -> bool:
            return inner is node

        def visit_Call(self, call: cst.Call) -> None:
            if cmd._super_init_skip(call) is not None:
                found.append(call)

    node.visit(_Finder())
    return found


class PaddleToTorch(_Base):
    """``paddle.optimizer.ASGD`` (SAG) -> ``asgd_bridge.torch.SAG``, following :data:`.rules.SAG_RULES`."""

    DESCRIPTION = "Migrate paddle.optimizer.ASGD to asgd_bridge.torch.SAG."
    SOURCE_NAMES = PADDLE_ASGD_NAMES

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:  # noqa: D102
        self._module = tree
        self._collect_import_aliases(tree)
        analysis = _Analysis(tree, self.SOURCE_NAMES, self._qnames)
        tree.visit(analysis)
        self._sag_keys = {k for k, kinds in analysis.assigned.items() if kinds == {"asgd"}}
        out = super().transform_module_impl(tree)
        if self.changes:
            self._remove_from_imports()
        return out

    def visit_Call(self, node: cst.Call) -> None:
        if self._names_class(node.func):
            self._handled.add(id(node.func))

    def _convert_method(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        """A Paddle optimizer method called on a variable that holds only the converted SAG
        (:data:`PADDLE_METHOD_RULES`): renamed, or routed through a :mod:`.runtime` helper."""
        func, old = updated.func, original.func
        if not (isinstance(func, cst.Attribute) and isinstance(old, cst.Attribute)):
            return updated
        if self._code(old.value) not in self._sag_keys:
            return updated
        rule = PADDLE_METHOD_RULES.get(func.attr.value)
        if rule is None:
            return updated
        target, reason = rule
        if target is None:
            self._record(original, "report", "(unchanged)", reason)
            return updated
        if target.startswith(RUNTIME_MODULE):
            AddImportsVisitor.add_needed_import(self.context, RUNTIME_MODULE)
            new: cst.Call = updated.with_changes(
                func=_expr(target), args=[cst.Arg(func.value), *updated.args]
            )
            if updated.args:
                first = new.args[0].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                new = new.with_changes(args=[first, *new.args[1:]])
        else:
            new = updated.with_changes(func=func.with_changes(attr=cst.Name(target)))
            if target == "zero_grad":
                new = new.with_changes(args=[])  # set_to_zero only chooses zeros or None: same numbers
        self._record(original, "method", self._code(new.func), reason)
        return new

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if not self._names_class(original_node.func):
            return self._convert_method(original_node, updated_node)
        names = positional_names(SAG_RULES)
        bound: dict[str, tuple[int, cst.Arg]] = {}
        for i, arg in enumerate(updated_node.args):
            if arg.star:
                self._record(original_node, "report", "(unchanged)", "*args/**kwargs: map them by hand")
                return updated_node
            name = (
                names[i]
                if arg.keyword is None and i < len(names)
                else (arg.keyword.value if arg.keyword else "")
            )
            if rule_for(SAG_RULES, name) is None:
                self._record(original_node, "report", "(unchanged)", f"unknown argument {name!r}")
                return updated_node
            bound[name] = (i, arg)
        if "parameters" not in bound or self._code(bound["parameters"][1].value) == "None":
            self._record(
                original_node,
                "report",
                "(unchanged)",
                "parameters missing (static graph): torch needs the parameters",
            )
            return updated_node
        args = list(updated_node.args)
        drop: set[int] = set()
        extra: list[cst.Arg] = []
        fates = []
        rule: ArgRule
        for rule in SAG_RULES:
            if rule.source not in bound:
                if rule.write_default:
                    extra.append(
                        cst.Arg(
                            keyword=_kw(rule.target or ""), equal=_EQ, value=cst.Float(_fmt(rule.default))
                        )
                    )
                    fates.append((rule.source, rule.target or "", "default written", rule.reason))
                continue
            i, arg = bound[rule.source]
            if rule.action is Action.DROP or rule.target is None:
                drop.add(i)
                fates.append((rule.source, "", "dropped", rule.reason))
                continue
            new = _with_keyword(arg, rule.target)
            if rule.source in ("weight_decay", "grad_clip"):
                # metadata (qualified names) lives on the original nodes
                spec, problem = self._spec(original_node.args[i].value, rule.source)
                if problem is not None:
                    self._record(original_node, "report", "(unchanged)", problem)
                    return updated_node
                new = new.with_changes(value=spec)
            args[i] = new
            fates.append((rule.source, rule.target, rule.action.value, rule.reason))
        AddImportsVisitor.add_needed_import(self.context, SAG_TARGET[0])
        self._record(
            original_node, "constructor", SAG_TARGET[1], "SAG kept: the same algorithm in torch", fates
        )
        return updated_node.with_changes(
            func=_expr(SAG_TARGET[1]), args=_append_args(_remove_args(args, drop), extra)
        )

    def _spec(self, node: cst.BaseExpression, what: str) -> tuple[cst.BaseExpression, str | None]:
        """A Paddle regulariser or clip object as asgd_bridge.torch.SAG's spec (:data:`SPEC_RULES`)."""
        if self._code(node) == "None":
            return (cst.Float("0.0") if what == "weight_decay" else node), None
        if not isinstance(node, cst.Call):
            return node, None  # a number, or a value known at run time: SAG validates it
        kind = next((SPEC_RULES[q] for q in self._qnames(node.func) if q in SPEC_RULES), None)
        if kind is None or any(a.star for a in node.args):
            return node, f"{what}={self._code(node)}: no rule to carry it to torch"
        tag, names = kind
        values = []
        for i, arg in enumerate(node.args):
            if arg.keyword is None and i < len(names):
                values.append((names[i], arg.value))
            elif arg.keyword is not None and arg.keyword.value in names:
                values.append((arg.keyword.value, arg.value))
            else:
                return node, f"{what}={self._code(node)}: argument {self._code(arg)} has no torch counterpart"
        by_name = dict(values)
        ordered = [by_name[n] for n in names if n in by_name]
        if tag == "value" and "min" in by_name:
            ordered = [by_name["min"], by_name["max"]]
        items = [cst.SimpleString(f'"{tag}"'), *ordered]
        return cst.Tuple([cst.Element(v) for v in items]), None

    def _bare(self, original: cst.BaseExpression, updated: cst.BaseExpression) -> cst.BaseExpression:
        if id(original) in self._handled or not self._names_class(original):
            return updated
        AddImportsVisitor.add_needed_import(self.context, SAG_TARGET[0])
        self._record(
            original,
            "reference",
            SAG_TARGET[1],
            "bare reference: calls through it must use torch's argument names",
        )
        return _expr(SAG_TARGET[1]).with_changes(lpar=updated.lpar, rpar=updated.rpar)  # type: ignore[attr-defined]

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        return self._bare(original_node, updated_node)

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        return self._bare(original_node, updated_node)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        for base in node.bases:
            if self._names_class(base.value):
                self._handled.add(id(base.value))
                self._record(
                    base.value,
                    "report",
                    "(unchanged)",
                    "subclass of paddle.optimizer.ASGD: Paddle internals do not carry to torch",
                )


#: Paddle regulariser/clip classes -> (asgd_bridge.torch.SAG spec tag, their argument names in order).
SPEC_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "paddle.regularizer.L2Decay": ("l2", ("coeff",)),
    "paddle.regularizer.L1Decay": ("l1", ("coeff",)),
    "paddle.nn.ClipGradByNorm": ("norm", ("clip_norm",)),
    "paddle.nn.ClipGradByGlobalNorm": ("global_norm", ("clip_norm",)),
    "paddle.nn.ClipGradByValue": ("value", ("max", "min")),
}

#: Paddle optimizer methods on a converted SAG -> (torch method or runtime helper, why); None: reported.
PADDLE_METHOD_RULES: dict[str, tuple[str | None, str]] = {
    "clear_grad": ("zero_grad", "torch's name; zeros or None, the same numbers"),
    "clear_gradients": ("zero_grad", "torch's name; zeros or None, the same numbers"),
    "set_state_dict": ("load_state_dict", "torch's name (the dict is the torch optimizer's own)"),
    "get_lr": (f"{RUNTIME_MODULE}.get_lr", "Paddle's global learning rate"),
    "set_lr": (f"{RUNTIME_MODULE}.set_lr", "Paddle's global learning rate; groups keep their ratio"),
    "minimize": (None, "minimize(loss) has no torch counterpart: call loss.backward(); opt.step()"),
    "set_lr_scheduler": (None, "attach a torch lr scheduler instead"),
}

DIRECTIONS: dict[str, type[_Base]] = {"paddle": TorchToPaddle, "torch": PaddleToTorch}


def convert_source(code: str, to: str = "paddle", filename: str = "<string>") -> ConvertResult:
    """Convert one file's source. Files that never spell ``ASGD`` are returned as they are, unparsed.

    Raises:
        libcst.ParserSyntaxError: the source is not valid Python.
    """
    if "ASGD" not in code:
        return ConvertResult(code, [])
    module = cst.parse_module(code)
    command = DIRECTIONS[to](CodemodContext(filename=filename))
    new = command.transform_module(module)
    return ConvertResult(new.code, command.changes)
