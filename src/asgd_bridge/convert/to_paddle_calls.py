"""The constructor rule of ``--to paddle``: ``torch.optim.ASGD(...)`` -> ``asgd_bridge.paddle.ASGD(...)``.

Arguments follow :data:`.rules.ASGD_RULES`; where provably exact it becomes ``paddle.optimizer.SGD``.
"""

from __future__ import annotations

from typing import Any

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor

from .arglist import append_args, expr, float_arg, literal, remove_args, with_keyword
from .command import ConvertCommand
from .rules import (
    ASGD_RULES,
    ASGD_TARGET,
    GROUP_KEY_RULES,
    REQUIRED,
    RUNTIME_MODULE,
    SGD_TARGET,
    Action,
    positional_names,
    rule_for,
    sgd_weight_decay,
)

__all__ = ["TORCH_ASGD_CLASS", "TorchCallRewrite"]

TORCH_ASGD_CLASS = f"{RUNTIME_MODULE}.TorchASGD"
TORCH_GROUPS_HELPER = f"{RUNTIME_MODULE}.torch_param_groups"

# Attribute names that hold a layer's tensors, never a param-group dict.
_LAYER_TENSORS = frozenset({"weight", "bias"})

Bound = dict[str, tuple[int, cst.Arg]]
Fates = list[tuple[str, str, str, str]]


class TorchCallRewrite(ConvertCommand):
    """Constructor calls of torch's ASGD; :class:`.to_paddle.TorchToPaddle` adds the rules for its uses."""

    SOURCE_NAMES = frozenset()

    def __init__(self, context: CodemodContext) -> None:
        super().__init__(context)
        # per enclosing class: its new base (None: not an ASGD subclass); pushed by the subclass rule
        self._class_stack: list[str | None] = []

    def _in_asgd_subclass(self) -> bool:
        return bool(self._class_stack) and self._class_stack[-1] is not None

    # ------------------------------------------------------------------ decisions
    def _sgd_reason_against(self, call: cst.Call, values: dict[str, cst.Arg]) -> tuple[str | None, float]:
        """Why plain paddle.optimizer.SGD would not be exact for this call (None: it is exact, with the
        returned weight decay)."""
        if self._in_asgd_subclass():
            return "inside an ASGD subclass", 0.0
        key = self.analysis.call_key.get(id(call))
        if key is None:
            return "the optimizer is not assigned to a variable the converter can follow", 0.0
        if self.analysis.assigned[key] != {"asgd"}:
            return f"{key} also holds another optimizer", 0.0
        others = sorted({u for u in self.analysis.uses[key] if u != "simple"})
        if others:
            return f"{key} is used beyond step()/zero_grad(): " + ", ".join(others), 0.0
        params = values.get("params")
        if params is not None and not self._tensor_params(params.value):
            return "params may hold param groups", 0.0
        lits: dict[str, Any] = {}
        for rule in ASGD_RULES:
            if rule.source in ("lambd", "alpha", "weight_decay", "maximize"):
                arg = values.get(rule.source)
                try:
                    lits[rule.source] = literal(self._code(arg.value)) if arg else rule.default
                except (ValueError, SyntaxError):
                    return f"{rule.source} is known only at run time", 0.0
        decay = sgd_weight_decay(lits)
        if decay is None:
            why = "eta decays (lambd != 0 and alpha != 0)" if lits.get("maximize") is False else "maximize"
            return why, 0.0
        return None, decay

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
                helper = cst.Call(func=expr(TORCH_GROUPS_HELPER), args=[cst.Arg(node)])
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
    def _bind(self, args: list[cst.Arg], skip: int = 0) -> tuple[Bound, str | None]:
        """Map each argument to its torch name; the second value names a problem (dynamic, unknown)."""
        names = positional_names(ASGD_RULES)
        bound: Bound = {}
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
        self, args: list[cst.Arg], bound: Bound, originals: list[cst.Arg]
    ) -> tuple[list[cst.Arg], Fates]:
        """Rewrite bound torch arguments into asgd_bridge.paddle.ASGD keywords, following ASGD_RULES."""
        new_args = list(args)
        drop: set[int] = set()
        fates: Fates = []
        extra: list[cst.Arg] = []
        for rule in ASGD_RULES:
            if rule.source not in bound:
                if rule.write_default and rule.default is not REQUIRED:
                    extra.append(float_arg(rule.target or rule.source, rule.default))
                    fates.append((rule.source, rule.target or "", "default written", rule.reason))
                continue
            i, arg = bound[rule.source]
            if rule.action is Action.DROP:
                drop.add(i)
                fates.append((rule.source, "", "dropped", rule.reason))
                continue
            assert rule.target is not None
            new = with_keyword(arg, rule.target)
            how = rule.action.value
            if rule.source == "params":
                value, note = self._convert_params(arg.value, originals[i].value)
                new = new.with_changes(value=value)
                how = f"{how}; {note}"
            new_args[i] = new
            fates.append((rule.source, rule.target, how, rule.reason if rule.source != "params" else ""))
        return append_args(remove_args(new_args, drop), extra), fates

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
            return updated.with_changes(func=expr(TORCH_ASGD_CLASS))
        if problem is not None:
            self._record(original, "report", "(unchanged)", problem)
            return updated
        if "params" not in bound:
            self._record(original, "report", "(unchanged)", "params is missing")
            return updated
        against, decay = self._sgd_reason_against(original, {k: a for k, (_, a) in bound.items()})
        if against is None:
            return self._to_sgd(original, updated, bound, decay)
        args, fates = self._map_args(list(updated.args), bound, list(original.args))
        AddImportsVisitor.add_needed_import(self.context, ASGD_TARGET[0])
        self._record(original, "constructor", ASGD_TARGET[1], f"averaged SGD kept: {against}", fates)
        return updated.with_changes(func=expr(ASGD_TARGET[1]), args=args)

    def _to_sgd(self, original: cst.Call, updated: cst.Call, bound: Bound, decay: float) -> cst.Call:
        """Exact plain SGD: ``learning_rate=lr, parameters=params, weight_decay=lambd + weight_decay``."""
        keep = {"lr": "learning_rate", "params": "parameters"}
        new_args = list(updated.args)
        drop: set[int] = set()
        fates = []
        for name, (i, arg) in bound.items():
            if name in keep:
                new_args[i] = with_keyword(arg, keep[name])
                fates.append((name, keep[name], "rename", ""))
            elif name == "weight_decay":
                new_args[i] = with_keyword(arg, "weight_decay").with_changes(
                    value=cst.Float(repr(float(decay)))
                )
                fates.append((name, "weight_decay", "folded", "weight_decay = lambd + weight_decay"))
            else:
                drop.add(i)
                fates.append(
                    (name, "", "dropped", "no effect on plain SGD's numbers (eta constant, ax unused)")
                )
        extra = []
        if "lr" not in bound:
            lr_rule = ASGD_RULES[1]
            extra.append(float_arg("learning_rate", lr_rule.default))
            fates.append(("lr", "learning_rate", "default written", lr_rule.reason))
        if "weight_decay" not in bound:
            extra.append(float_arg("weight_decay", decay))
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
            func=expr(SGD_TARGET[1]), args=append_args(remove_args(new_args, drop), extra)
        )
