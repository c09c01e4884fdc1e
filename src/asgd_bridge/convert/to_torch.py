"""``--to torch``: ``paddle.optimizer.ASGD`` (SAG) -> ``asgd_bridge.torch.SAG``, and Paddle methods on it.

Arguments follow :data:`.rules.SAG_RULES`; their value converters carry ``learning_rate`` (a Paddle
scheduler is reported) and turn regulariser and clip objects into SAG's tuple specs
(:data:`.rules.SPEC_RULES`). Methods follow :data:`.rules.PADDLE_METHOD_RULES`.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
from libcst.codemod import CodemodContext

from .arglist import Converted
from .command import ConvertCommand
from .rules import (
    PADDLE_ASGD_NAMES,
    PADDLE_LR_SCHEDULERS,
    PADDLE_METHOD_RULES,
    RUNTIME_MODULE,
    SAG_RULES,
    SAG_TARGET,
    SPEC_RULES,
    ArgRule,
)

__all__ = ["PaddleToTorch"]

_NONE = m.Name("None")


class PaddleToTorch(ConvertCommand):
    """``paddle.optimizer.ASGD`` (SAG) -> ``asgd_bridge.torch.SAG``, following :data:`.rules.SAG_RULES`.

    Hooks: constructor calls and Paddle methods on the converted optimizer (:meth:`leave_Call`), bare
    references, subclasses (reported).
    """

    DESCRIPTION = "Migrate paddle.optimizer.ASGD to asgd_bridge.torch.SAG."
    SOURCE_NAMES = PADDLE_ASGD_NAMES
    SOURCE_CLASS = "paddle.optimizer.ASGD"
    RULES = SAG_RULES
    WATCHED_NAMES = frozenset(PADDLE_METHOD_RULES)  # leave_Call: Paddle methods on the converted optimizer

    def __init__(self, context: CodemodContext) -> None:
        super().__init__(context)
        self.converters = {"lr": self._lr_value, "spec": self._spec_value}

    # ------------------------------------------------------------------ calls
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if not self._names_class(original_node.func):
            return self._convert_method(original_node, updated_node)
        bound = self._bind(updated_node)
        if bound == "dynamic":
            bound = "*args/**kwargs: map them by hand"
        if not isinstance(bound, str) and (
            "parameters" not in bound or m.matches(updated_node.args[bound["parameters"]].value, _NONE)
        ):
            bound = "parameters missing (static graph): torch needs the parameters"
        mapped = bound if isinstance(bound, str) else self._map(original_node, updated_node, bound)
        if isinstance(mapped, str):
            self._report(original_node, mapped)
            return updated_node
        args, fates = mapped
        self._record(
            original_node, "constructor", SAG_TARGET[1], "SAG kept: the same algorithm in torch", fates
        )
        return updated_node.with_changes(func=self._import(SAG_TARGET[1]), args=args)

    def _convert_method(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        """A Paddle optimizer method called on a variable that holds only the converted SAG
        (:data:`.rules.PADDLE_METHOD_RULES`): renamed, or routed through a :mod:`.runtime` helper."""
        func, old = updated.func, original.func
        if not (isinstance(func, cst.Attribute) and isinstance(old, cst.Attribute)):
            return updated
        rule = PADDLE_METHOD_RULES.get(func.attr.value)
        if rule is None or self.analysis.assigned.get(self._code(old.value)) != {"asgd"}:
            return updated
        target, reason = rule
        if target is None:
            self._report(original, reason)
            return updated
        if target.startswith(RUNTIME_MODULE):
            new: cst.Call = updated.with_changes(
                func=self._import(target), args=[cst.Arg(func.value), *updated.args]
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

    # ------------------------------------------------------------------ value converters
    def _lr_value(self, rule: ArgRule, arg: cst.Arg | None, original: cst.Arg | None) -> Converted:
        """``learning_rate`` carried, unless it is (or its variable is assigned) a Paddle LRScheduler."""
        if original is None:
            return Converted()
        node = original.value  # metadata (qualified names, scopes) lives on the original nodes
        values = list(self._assigned_values(node)) if isinstance(node, cst.Name) else [node]
        for value in values:
            if not isinstance(value, cst.Call):
                continue
            qnames = sorted(q for q in self._qnames(value.func) if q.startswith(PADDLE_LR_SCHEDULERS))
            if qnames:
                return Converted(
                    problem=f"learning_rate={self._code(node)} is a {qnames[0]}: a Paddle LRScheduler has no"
                    " torch equivalent here: set lr to its initial value and attach a"
                    " torch.optim.lr_scheduler by hand"
                )
        return Converted()

    def _spec_value(self, rule: ArgRule, arg: cst.Arg | None, original: cst.Arg | None) -> Converted:
        """A Paddle regulariser or clip object as asgd_bridge.torch.SAG's spec (:data:`.rules.SPEC_RULES`)."""
        assert original is not None  # a spec row writes no default
        node, what = original.value, rule.source
        if m.matches(node, _NONE):
            return Converted(cst.Float("0.0") if what == "weight_decay" else None)
        if not isinstance(node, cst.Call):
            return Converted()  # a number, or a value known at run time: SAG validates it
        kind = next((SPEC_RULES[q] for q in self._qnames(node.func) if q in SPEC_RULES), None)
        if kind is None or any(a.star for a in node.args):
            return Converted(problem=f"{what}={self._code(node)}: no rule to carry it to torch")
        tag, names = kind
        by_name: dict[str, cst.BaseExpression] = {}
        for i, a in enumerate(node.args):
            name = a.keyword.value if a.keyword is not None else (names[i] if i < len(names) else "")
            if name not in names:
                return Converted(
                    problem=f"{what}={self._code(node)}: argument {self._code(a)} has no torch counterpart"
                )
            by_name[name] = a.value
        ordered = [by_name[n] for n in names if n in by_name]
        if tag == "value" and "min" in by_name:
            ordered = [by_name["min"], by_name["max"]]
        return Converted(cst.Tuple([cst.Element(v) for v in (cst.SimpleString(f'"{tag}"'), *ordered)]))

    # ------------------------------------------------------------------ references and subclasses
    def reference_target(self, original: cst.BaseExpression) -> tuple[str, str]:  # noqa: D102
        return SAG_TARGET[1], "bare reference: calls through it must use torch's argument names"

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        for base in node.bases:
            if self._names_class(base.value):
                self._handled.add(id(base.value))
                self._report(
                    base.value, "subclass of paddle.optimizer.ASGD: Paddle internals do not carry to torch"
                )
