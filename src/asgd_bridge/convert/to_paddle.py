"""``--to paddle``: ``torch.optim.ASGD`` -> ``asgd_bridge.paddle.ASGD`` (or exact ``paddle.optimizer.SGD``).

Hooks, each small: constructor calls (:data:`.rules.ASGD_RULES`, or :data:`.rules.SGD_RULES` where plain
SGD is provably exact), subclasses and their ``super().__init__``, bare references, and the torch-only
surface of an optimizer variable that may hold a Paddle optimizer: ``X.param_groups``,
``X.state_dict()`` / ``X.load_state_dict(sd)`` (torch's layout in both phases of NT-ASGD, so reads of a
loaded ``sd['param_groups']`` work), ``X.defaults``; ``torch.save`` of an optimizer object is reported
with the state-dict form to write.
"""

from __future__ import annotations

from typing import Any

import libcst as cst
import libcst.matchers as m
from libcst.codemod import CodemodContext
from libcst.metadata import ParentNodeProvider

from .arglist import Bound, Converted, literal
from .command import ConvertCommand
from .rules import (
    ASGD_RULES,
    ASGD_TARGET,
    DEFAULTS_HELPER,
    GROUP_KEY_RULES,
    LOAD_STATE_DICT_HELPER,
    LR_HELPER,
    PARAM_GROUPS_HELPER,
    SGD_RULES,
    SGD_TARGET,
    STATE_DICT_HELPER,
    TORCH_ASGD_CLASS,
    TORCH_ASGD_NAMES,
    TORCH_GROUPS_HELPER,
    Action,
    ArgRule,
    rule_for,
    sgd_weight_decay,
)

__all__ = ["TorchToPaddle"]

# model.parameters(); [lin.weight, lin.bias] (attribute names that hold a layer's tensors, never a group)
_PARAMETERS_CALL = m.Call(func=m.Attribute(attr=m.Name("parameters")))
_LAYER_TENSOR = m.Element(value=m.Attribute(attr=m.Name("weight") | m.Name("bias")))
_TYPE_CHECK = m.Call(func=m.Name("isinstance") | m.Name("issubclass"), args=[m.DoNotCare(), m.DoNotCare()])
_SUPER_INIT = m.Call(func=m.Attribute(value=m.Call(func=m.Name("super")), attr=m.Name("__init__")))
_STRING_KEY = m.DictElement(key=m.SimpleString())
# The literal values plain SGD's exactness depends on (sgd_weight_decay).
_SGD_INPUTS = ("lambd", "alpha", "weight_decay", "maximize")
# Modules whose calls make a tensor or NumPy scalar (an lr torch takes and asgd_bridge.paddle.ASGD refuses).
_ARRAY_MODULES = ("torch.", "numpy.")
# optimizer.state_dict() / load_state_dict(sd): torch's layout through the runtime for Paddle optimizers.
_STATE_METHODS = {"state_dict": (STATE_DICT_HELPER, 0), "load_state_dict": (LOAD_STATE_DICT_HELPER, 1)}


class TorchToPaddle(ConvertCommand):
    """``torch.optim.ASGD``, however spelled -> ``asgd_bridge.paddle.ASGD`` (or exact plain Paddle SGD)."""

    DESCRIPTION = "Migrate torch.optim.ASGD to asgd_bridge.paddle.ASGD."
    SOURCE_NAMES = TORCH_ASGD_NAMES
    SOURCE_CLASS = "torch.optim.ASGD"
    RULES = ASGD_RULES
    COLLECT_USES = True
    KEPT_TARGET = TORCH_ASGD_CLASS
    # leave_Attribute (defaults, param_groups), leave_Call (super/ASGD.__init__, state methods, torch.save)
    WATCHED_NAMES = frozenset(
        {"defaults", "param_groups", "__init__", "state_dict", "load_state_dict", "save"}
    )

    def __init__(self, context: CodemodContext) -> None:
        super().__init__(context)
        self.converters = {
            "params": self._params_value,
            "sgd_decay": self._sgd_decay_value,
            "lr": self._lr_value,
        }
        # per enclosing class: its new base (None: not an ASGD subclass); pushed by visit_ClassDef
        self._class_stack: list[str | None] = []
        self._optimizer_class: list[bool] = []  # per enclosing class: derives from a torch.optim class
        self._typed_context = 0  # inside an annotation
        self._typed_args: set[int] = set()  # ids of isinstance()/issubclass() second arguments
        self._decay = 0.0  # weight decay of the plain-SGD call being rewritten

    def _in_asgd_subclass(self) -> bool:
        return bool(self._class_stack) and self._class_stack[-1] is not None

    # ------------------------------------------------------------------ constructor calls
    def _convert_call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        bound = self._bind(updated)
        if bound == "dynamic":
            self._record(
                original,
                "constructor",
                TORCH_ASGD_CLASS,
                "*args/**kwargs known only at run time: runtime.ASGD applies the same rules then",
            )
            return updated.with_changes(func=self._import(TORCH_ASGD_CLASS))
        if isinstance(bound, str) or "params" not in bound:
            self._report(original, bound if isinstance(bound, str) else "params is missing")
            return updated
        against = self._sgd_reason_against(original, updated, bound)
        if against is None:
            (module, target), rules = SGD_TARGET, SGD_RULES
            why = "exact: eta is constant (lambd == 0 or alpha == 0), ax and param_groups unused"
        else:
            (module, target), rules = ASGD_TARGET, self.RULES
            why = f"averaged SGD kept: {against}"
        args, fates = self._map(original, updated, bound, rules)  # type: ignore[misc]  # no converter refuses
        self._record(original, "constructor", target, why, fates)
        return updated.with_changes(func=self._import(target, module), args=args)

    def _sgd_reason_against(self, original: cst.Call, updated: cst.Call, bound: Bound) -> str | None:
        """Why plain paddle.optimizer.SGD would not be exact for this call (None: it is; its weight decay
        is then kept for the ``sgd_decay`` converter)."""
        if self._in_asgd_subclass():
            return "inside an ASGD subclass"
        key = self.analysis.call_key.get(id(original))
        if key is None:
            return "the optimizer is not assigned to a variable the converter can follow"
        if "." in key:
            return f"the optimizer is stored on an attribute ({key}): code elsewhere may reach it"
        if self.analysis.dynamic_scope:
            return "globals()/locals()/vars()/eval/exec may reach the optimizer by name"
        if self.analysis.assigned[key] != {"asgd"}:
            return f"{key} also holds another optimizer"
        others = sorted({u for u in self.analysis.uses[key] if u != "simple"})
        if others:
            return f"{key} is used beyond step()/zero_grad(): " + ", ".join(others)
        if "params" in bound and not self._tensor_params(updated.args[bound["params"]].value):
            return "params may hold param groups"
        lits: dict[str, Any] = {}
        for name in _SGD_INPUTS:
            rule = rule_for(ASGD_RULES, name)
            assert rule is not None
            try:
                lits[name] = (
                    literal(self._code(updated.args[bound[name]].value)) if name in bound else rule.default
                )
            except (ValueError, SyntaxError):
                return f"{name} is known only at run time"
        decay = sgd_weight_decay(lits)
        if decay is None:
            return "eta decays (lambd != 0 and alpha != 0)" if lits.get("maximize") is False else "maximize"
        self._decay = decay
        return None

    @staticmethod
    def _tensor_params(node: cst.BaseExpression) -> bool:
        """Statically known to be tensors (not param-group dicts, not named pairs).

        ``model.parameters()`` and lists of layer tensors (``[lin.weight, lin.bias]``) only: a list of
        plain names (``[body, head]``) may hold group dicts with their own ``lr``, which plain SGD ignores.
        """
        if m.matches(node, _PARAMETERS_CALL):
            return True
        return isinstance(node, (cst.List, cst.Tuple)) and all(
            m.matches(e, _LAYER_TENSOR) for e in node.elements
        )

    # ------------------------------------------------------------------ value converters
    def _sgd_decay_value(self, rule: ArgRule, arg: cst.Arg | None, original: cst.Arg | None) -> Converted:
        """``weight_decay = lambd + weight_decay`` of exact plain SGD (:func:`.rules.sgd_weight_decay`)."""
        return Converted(cst.Float(repr(float(self._decay))))

    def _lr_value(self, rule: ArgRule, arg: cst.Arg | None, original: cst.Arg | None) -> Converted:
        """``lr`` made by torch or NumPy (``torch.tensor(0.1)``, ``np.float32(0.1)``, or a name assigned
        one): through :func:`.runtime.torch_lr`, a float; anything else as written."""
        if arg is None or original is None:
            return Converted()
        node = original.value
        values = list(self._assigned_values(node)) if isinstance(node, cst.Name) else [node]
        if not any(
            isinstance(v, cst.Call) and any(q.startswith(_ARRAY_MODULES) for q in self._qnames(v.func))
            for v in values
        ):
            return Converted()
        call = cst.Call(func=self._import(LR_HELPER), args=[cst.Arg(arg.value)])
        return Converted(call, "a tensor or NumPy scalar: its float value (runtime.torch_lr)")

    def _params_value(self, rule: ArgRule, arg: cst.Arg | None, original: cst.Arg | None) -> Converted:
        """Translate torch's params expression into ``parameters``.

        asgd_bridge.paddle.ASGD takes tensors and torch's group dicts (``lr`` included) as they are, so
        only named parameters and group keys the rules drop need a rewrite.
        """
        assert arg is not None and original is not None  # params is required
        node, old = arg.value, original.value  # reports point at the source tree's nodes
        if m.matches(node, m.Call(func=m.Attribute())):
            if m.matches(node, m.Call(func=m.Attribute(attr=m.Name("named_parameters")))):
                helper = cst.Call(func=self._import(TORCH_GROUPS_HELPER), args=[cst.Arg(node)])
                return Converted(helper, "named parameters: names stripped by torch_param_groups()")
            return Converted(note="tensors")
        if isinstance(node, (cst.List, cst.Tuple)) and any(
            m.matches(e, m.Element(value=m.Dict())) for e in node.elements
        ):
            notes: list[str] = []
            olds = old.elements if isinstance(old, (cst.List, cst.Tuple)) else node.elements
            elements = [
                el.with_changes(value=self._static_group(el.value, old_el.value, notes))
                if m.matches(el, m.Element(value=m.Dict())) and isinstance(old_el.value, cst.Dict)
                else el
                for el, old_el in zip(node.elements, olds, strict=True)
            ]
            note = "param-group dicts carried (lr is absolute, as in torch)"
            return Converted(node.with_changes(elements=elements), "; ".join([note, *notes]))
        return Converted(note="passed as is (tensors or torch-style group dicts are both taken)")

    def _static_group(self, group: cst.Dict, original: cst.Dict, notes: list[str]) -> cst.Dict:
        """Remove the keys the rules drop from one group dict; report keys the target does not take."""
        elements: list[cst.BaseDictElement] = []
        dropped_last = False
        for el, old_el in zip(group.elements, original.elements, strict=True):
            key = el.key.evaluated_value if m.matches(el, _STRING_KEY) else None  # type: ignore[attr-defined]
            rule = rule_for(GROUP_KEY_RULES, key) if isinstance(key, str) else None
            dropped_last = rule is not None and rule.action is Action.DROP
            if dropped_last:
                notes.append(f"group key {key!r} dropped: {rule.reason}")  # type: ignore[union-attr]
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

    # ------------------------------------------------------------------ subclasses
    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._optimizer_class.append(
            any(q.startswith("torch.optim.") for base in node.bases for q in self._qnames(base.value))
        )
        bases = [base.value for base in node.bases if self._names_class(base.value)]
        if not bases:
            self._class_stack.append(None)
            return
        self._handled.update(id(base) for base in bases)
        # super().__init__ with *args/**kwargs cannot be mapped statically: keep torch's signature instead.
        dynamic = any(any(a.star for a in call.args) for call in self._super_init_calls(node))
        self._class_stack.append(TORCH_ASGD_CLASS if dynamic else ASGD_TARGET[1])

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        self._optimizer_class.pop()
        target = self._class_stack.pop()
        if target is None:
            return updated_node
        new_base = self._import(target)
        bases = [
            b.with_changes(value=new_base) if self._names_class(ob.value) else b
            for b, ob in zip(updated_node.bases, original_node.bases, strict=True)
        ]
        why = (
            "super().__init__ passes *args/**kwargs: runtime.ASGD keeps torch's signature"
            if target == TORCH_ASGD_CLASS
            else "subclass of averaged SGD; super().__init__ mapped"
        )
        self._record(original_node.name, "subclass", target, why)
        return updated_node.with_changes(bases=bases)

    def _super_init_skip(self, call: cst.Call) -> int | None:
        """1 for ``torch.optim.ASGD.__init__(self, ...)``, 0 for ``super().__init__(...)``, else None."""
        if m.matches(call, _SUPER_INIT):
            return 0
        func = call.func
        if (
            isinstance(func, cst.Attribute)
            and func.attr.value == "__init__"
            and self._names_class(func.value)
        ):
            return 1
        return None

    def _super_init_calls(self, node: cst.ClassDef) -> list[cst.Call]:
        """``super().__init__(...)`` and ``<ASGD>.__init__(self, ...)`` calls in a class body."""
        found: list[cst.Call] = []
        skip = self._super_init_skip

        class _Finder(cst.CSTVisitor):
            def visit_ClassDef(self, inner: cst.ClassDef) -> bool:
                return inner is node

            def visit_Call(self, call: cst.Call) -> None:
                if skip(call) is not None:
                    found.append(call)

        node.visit(_Finder())
        return found

    def _convert_super_init(self, original: cst.Call, updated: cst.Call, skip: int) -> cst.BaseExpression:
        """``super().__init__(...)`` in an ASGD subclass, or ``torch.optim.ASGD.__init__(self, ...)``."""
        in_sub = self._in_asgd_subclass()
        if not (in_sub or skip == 1):
            return updated
        target = self._class_stack[-1] if in_sub else ASGD_TARGET[1]
        func = updated.func
        if target == TORCH_ASGD_CLASS:
            if skip == 1:
                return updated.with_changes(func=func.with_changes(value=self._import(TORCH_ASGD_CLASS)))
            return updated
        bound = self._bind(updated, skip)
        if isinstance(bound, str) or "params" not in bound:
            self._report(original, bound if isinstance(bound, str) else "params is missing")
            return updated
        args, fates = self._map(original, updated, bound)  # type: ignore[misc]  # no converter refuses
        self._record(original, "super-init", ASGD_TARGET[1], "arguments of the averaged-SGD base", fates)
        if skip == 1:
            func = func.with_changes(value=self._import(ASGD_TARGET[1]))  # type: ignore[union-attr]
        return updated.with_changes(func=func, args=args)

    # ------------------------------------------------------------------ calls and references
    def visit_Call(self, node: cst.Call) -> None:
        super().visit_Call(node)
        if m.matches(node, _TYPE_CHECK) and not self._names_class(node.func):
            self._typed_args.add(id(node.args[1].value))
        if self._super_init_skip(node) == 1:
            self._handled.add(id(node.func.value))  # type: ignore[attr-defined]

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if self._names_class(original_node.func):
            return self._convert_call(original_node, updated_node)
        if self._binding(original_node) is not None:  # getattr(torch.optim, "ASGD")
            return self._bare(original_node, updated_node)
        skip = self._super_init_skip(original_node)
        if skip is not None:
            return self._convert_super_init(original_node, updated_node, skip)
        if m.matches(original_node.func, m.Attribute(attr=m.Name("state_dict") | m.Name("load_state_dict"))):
            return self._state_method(original_node, updated_node)
        if {"torch.save"} & self._qnames(original_node.func):
            self._check_pickled(original_node)
        return updated_node

    def _may_hold_paddle_optimizer(self, key: str) -> bool:
        """An optimizer variable that is not known to hold only an asgd_bridge.paddle.ASGD."""
        return key in self.analysis.optimizers and self.analysis.assigned.get(key) != {"asgd"}

    def _state_method(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        """``opt.state_dict()`` / ``opt.load_state_dict(sd)`` where ``opt`` may hold a Paddle optimizer
        (the SGD of NT-ASGD): through :func:`.runtime.state_dict` / :func:`.runtime.load_state_dict`,
        which write and read torch's layout (``state``, ``param_groups`` with ``lr``) for any optimizer."""
        func = original.func
        assert isinstance(func, cst.Attribute)
        helper, nargs = _STATE_METHODS[func.attr.value]
        owner = self._code(func.value)
        if len(original.args) != nargs or any(a.star or a.keyword for a in original.args):
            return updated
        if not self._may_hold_paddle_optimizer(owner):
            return updated
        self._record(original, "state_dict", helper, f"{owner} may hold a Paddle optimizer: torch's layout")
        new_func = updated.func
        assert isinstance(new_func, cst.Attribute)
        owner_arg = cst.Arg(new_func.value)
        if nargs:
            owner_arg = owner_arg.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        return updated.with_changes(func=self._import(helper), args=[owner_arg, *updated.args])

    def _check_pickled(self, call: cst.Call) -> None:
        """``torch.save(opt, f)`` / ``torch.save([model, criterion, opt], f)``: Paddle pickles neither
        optimizers nor layers; reported with the state-dict form to write instead."""
        if not call.args or call.args[0].keyword is not None:
            return
        obj = call.args[0].value
        items = [e.value for e in obj.elements] if isinstance(obj, (cst.List, cst.Tuple)) else [obj]
        if not any(self._code(i) in self.analysis.optimizers for i in items):
            return
        if isinstance(obj, (cst.List, cst.Tuple)):
            inner = ", ".join(f"{self._code(i)}.state_dict()" for i in items)
            replacement = f"[{inner}]" if isinstance(obj, cst.List) else f"({inner})"
        else:
            replacement = f"{self._code(obj)}.state_dict()"
        rest = ", ".join(self._code(a) for a in call.args[1:])
        self._report(
            call,
            "the converted optimizer (and any paddle.nn.Layer) cannot be pickled by paddle.save: write"
            f" torch.save({replacement}, {rest}) and restore each with load_state_dict",
        )

    def visit_Annotation(self, node: cst.Annotation) -> None:
        self._typed_context += 1

    def leave_Annotation(self, original_node: cst.Annotation, updated_node: cst.Annotation) -> cst.Annotation:
        self._typed_context -= 1
        return updated_node

    def reference_target(self, original: cst.BaseExpression) -> tuple[str, str]:  # noqa: D102
        if self._typed_context > 0 or id(original) in self._typed_args:
            return ASGD_TARGET[1], "type check/annotation: the Paddle class"
        parent = self.get_metadata(ParentNodeProvider, original, None)
        if isinstance(parent, cst.Attribute) and parent.value is original:
            return ASGD_TARGET[1], "class attribute (ASGD.step = ...): the class every conversion builds on"
        return TORCH_ASGD_CLASS, "bare reference: runtime.ASGD takes torch's arguments when called later"

    # ------------------------------------------------------------------ param_groups
    def _wraps_param_groups(self, key: str) -> bool:
        """Whether ``key.param_groups`` needs :func:`.runtime.param_groups`.

        In a program that uses torch's ASGD, any expression not known to hold only an ASGD may hold a
        Paddle optimizer once PaConvert has run (the AWD-LSTM habit asks ``'t0' in
        optimizer.param_groups[0]`` of a ``torch.optim.SGD``, however the ASGD is later made), and Paddle
        optimizers have no ``param_groups``. The helper returns ``param_groups`` itself where it exists.
        """
        if key == "self" and (self._in_asgd_subclass() or not any(self._optimizer_class[-1:])):
            return False  # self of an ASGD subclass (averaged SGD), or of a class that is no torch optimizer
        return self.analysis.mentions and self.analysis.assigned.get(key) != {"asgd"}

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        if original_node.attr.value == "defaults" and self.analysis.assigned.get(
            self._code(original_node.value), set()
        ) & {"asgd"}:
            owner = self._code(original_node.value)
            self._record(original_node, "defaults", DEFAULTS_HELPER, f"{owner} holds averaged SGD")
            return cst.Call(func=self._import(DEFAULTS_HELPER), args=[cst.Arg(updated_node.value)])
        if (
            original_node.attr.value == "param_groups"
            and self._wraps_param_groups(self._code(original_node.value))
            and not isinstance(self.get_metadata(ParentNodeProvider, original_node, None), cst.AssignTarget)
        ):
            owner = self._code(original_node.value)
            self._record(
                original_node,
                "param_groups",
                PARAM_GROUPS_HELPER,
                f"{owner} may hold a Paddle optimizer (no param_groups)",
            )
            return cst.Call(
                func=self._import(PARAM_GROUPS_HELPER),
                args=[cst.Arg(updated_node.value)],
                lpar=updated_node.lpar,
                rpar=updated_node.rpar,
            )
        return super().leave_Attribute(original_node, updated_node)
