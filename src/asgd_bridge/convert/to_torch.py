"""``--to torch``: ``paddle.optimizer.ASGD`` (SAG) -> ``asgd_bridge.torch.SAG``, and Paddle methods on it.

Arguments follow :data:`.rules.SAG_RULES`; regulariser and clip objects become SAG's tuple specs.
"""

from __future__ import annotations

from collections.abc import Iterator

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import Assignment, ParentNodeProvider, ScopeProvider

from .arglist import append_args, expr, float_arg, remove_args, with_keyword
from .command import ConvertCommand
from .rules import (
    PADDLE_ASGD_NAMES,
    RUNTIME_MODULE,
    SAG_RULES,
    SAG_TARGET,
    Action,
    positional_names,
    rule_for,
)

__all__ = ["PADDLE_LR_SCHEDULERS", "PADDLE_METHOD_RULES", "SPEC_RULES", "PaddleToTorch"]

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

#: Qualified-name prefix of Paddle's schedulers: ``learning_rate=`` one of them is reported, not carried.
PADDLE_LR_SCHEDULERS = "paddle.optimizer.lr."


class PaddleToTorch(ConvertCommand):
    """``paddle.optimizer.ASGD`` (SAG) -> ``asgd_bridge.torch.SAG``, following :data:`.rules.SAG_RULES`."""

    DESCRIPTION = "Migrate paddle.optimizer.ASGD to asgd_bridge.torch.SAG."
    SOURCE_NAMES = PADDLE_ASGD_NAMES

    def _convert_method(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        """A Paddle optimizer method called on a variable that holds only the converted SAG
        (:data:`PADDLE_METHOD_RULES`): renamed, or routed through a :mod:`.runtime` helper."""
        func, old = updated.func, original.func
        if not (isinstance(func, cst.Attribute) and isinstance(old, cst.Attribute)):
            return updated
        if self.analysis.assigned.get(self._code(old.value)) != {"asgd"}:
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
            new: cst.Call = updated.with_changes(func=expr(target), args=[cst.Arg(func.value), *updated.args])
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
        for rule in SAG_RULES:
            if rule.source not in bound:
                if rule.write_default:
                    extra.append(float_arg(rule.target or "", rule.default))
                    fates.append((rule.source, rule.target or "", "default written", rule.reason))
                continue
            i, arg = bound[rule.source]
            if rule.action is Action.DROP or rule.target is None:
                drop.add(i)
                fates.append((rule.source, "", "dropped", rule.reason))
                continue
            new = with_keyword(arg, rule.target)
            # metadata (qualified names, scopes) lives on the original nodes
            problem = None
            if rule.source == "learning_rate":
                problem = self._lr_scheduler(original_node.args[i].value)
            elif rule.source in ("weight_decay", "grad_clip"):
                spec, problem = self._spec(original_node.args[i].value, rule.source)
                new = new.with_changes(value=spec)
            if problem is not None:
                self._record(original_node, "report", "(unchanged)", problem)
                return updated_node
            args[i] = new
            fates.append((rule.source, rule.target, rule.action.value, rule.reason))
        AddImportsVisitor.add_needed_import(self.context, SAG_TARGET[0])
        self._record(
            original_node, "constructor", SAG_TARGET[1], "SAG kept: the same algorithm in torch", fates
        )
        return updated_node.with_changes(
            func=expr(SAG_TARGET[1]), args=append_args(remove_args(args, drop), extra)
        )

    def _lr_scheduler(self, node: cst.BaseExpression) -> str | None:
        """Why ``learning_rate=node`` cannot be carried: it is (or its variable is assigned) a Paddle
        LRScheduler; None otherwise."""
        values = list(self._assigned_values(node)) if isinstance(node, cst.Name) else [node]
        for value in values:
            if not isinstance(value, cst.Call):
                continue
            qnames = sorted(q for q in self._qnames(value.func) if q.startswith(PADDLE_LR_SCHEDULERS))
            qname = qnames[0] if qnames else None
            if qname is not None:
                return (
                    f"learning_rate={self._code(node)} is a {qname}: a Paddle LRScheduler has no torch"
                    " equivalent here: set lr to its initial value and attach a torch.optim.lr_scheduler"
                    " by hand"
                )
        return None

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

    def _reference_target(self, original: cst.BaseExpression) -> tuple[str, str]:
        return SAG_TARGET[1], "bare reference: calls through it must use torch's argument names"

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
