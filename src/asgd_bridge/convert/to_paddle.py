"""``--to paddle``: the uses of torch's ASGD beyond its constructor, in one codemod with the constructor rule.

Subclasses and their ``super().__init__``, bare references, and ``X.param_groups`` where X may hold Paddle's.
"""

from __future__ import annotations

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import ParentNodeProvider

from .analysis import ParentLookup
from .arglist import expr
from .rules import ASGD_TARGET, RUNTIME_MODULE, TORCH_ASGD_NAMES
from .to_paddle_calls import TORCH_ASGD_CLASS, TorchCallRewrite

__all__ = ["TorchToPaddle"]

PARAM_GROUPS_HELPER = f"{RUNTIME_MODULE}.param_groups"


class TorchToPaddle(TorchCallRewrite):
    """``torch.optim.ASGD``, however spelled -> ``asgd_bridge.paddle.ASGD`` (or exact plain Paddle SGD).

    Rules, each small: constructor calls (:meth:`_convert_call`), subclasses and their ``super().__init__``,
    bare references, and ``X.param_groups`` on an expression that holds an ASGD and something else.
    """

    DESCRIPTION = "Migrate torch.optim.ASGD to asgd_bridge.paddle.ASGD."
    SOURCE_NAMES = TORCH_ASGD_NAMES

    def __init__(self, context: CodemodContext) -> None:
        super().__init__(context)
        self._typed_context = 0  # inside an annotation
        self._typed_args: set[int] = set()  # ids of isinstance()/issubclass() second arguments

    def _analysed(self, tree: cst.Module) -> None:
        self.analysis.collect_uses(tree, ParentLookup(self))

    # ------------------------------------------------------------------ param_groups
    def _wraps_param_groups(self, key: str) -> bool:
        """Whether ``key.param_groups`` needs :func:`.runtime.param_groups`.

        In a program that uses torch's ASGD, any expression not known to hold only an ASGD may hold a
        Paddle optimizer once PaConvert has run (the AWD-LSTM habit asks ``'t0' in
        optimizer.param_groups[0]`` of a ``torch.optim.SGD``, however the ASGD is later made), and Paddle
        optimizers have no ``param_groups``. The helper returns ``param_groups`` itself where it exists.
        """
        if key == "self" and self._in_asgd_subclass():
            return False  # inside an ASGD subclass: self is the averaged-SGD optimizer
        return self.analysis.mentions and self.analysis.assigned.get(key) != {"asgd"}

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
        dynamic = any(any(a.star for a in call.args) for call in self._super_init_calls(node))
        self._class_stack.append(TORCH_ASGD_CLASS if dynamic else ASGD_TARGET[1])

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        target = self._class_stack.pop()
        if target is None:
            return updated_node
        AddImportsVisitor.add_needed_import(self.context, target.rpartition(".")[0])
        bases = [
            b.with_changes(value=expr(target)) if self._names_class(ob.value) else b
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
        target = next((t for t in reversed(self._class_stack) if t is not None), None)
        if skip == 1 and not in_sub:
            target = ASGD_TARGET[1]
        if target == TORCH_ASGD_CLASS:
            if skip == 1:
                return updated.with_changes(
                    func=updated.func.with_changes(value=expr(TORCH_ASGD_CLASS))  # type: ignore[union-attr]
                )
            return updated
        bound, problem = self._bind(list(updated.args), skip)
        if problem is not None or "params" not in bound:
            self._record(original, "report", "(unchanged)", problem or "params is missing")
            return updated
        args, fates = self._map_args(list(updated.args), bound, list(original.args))
        self._record(original, "super-init", ASGD_TARGET[1], "arguments of the averaged-SGD base", fates)
        if skip == 1:
            AddImportsVisitor.add_needed_import(self.context, ASGD_TARGET[0])
            func = updated.func.with_changes(value=expr(ASGD_TARGET[1]))  # type: ignore[union-attr]
            return updated.with_changes(func=func, args=args)
        return updated.with_changes(args=args)

    # ------------------------------------------------------------------ visits
    def visit_Call(self, node: cst.Call) -> None:
        super().visit_Call(node)
        if (
            not self._names_class(node.func)
            and isinstance(node.func, cst.Name)
            and node.func.value in ("isinstance", "issubclass")
            and len(node.args) == 2
        ):
            self._typed_args.add(id(node.args[1].value))
        if self._super_init_skip(node) == 1 and isinstance(node.func, cst.Attribute):
            self._handled.add(id(node.func.value))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if self._names_class(original_node.func):
            return self._convert_call(original_node, updated_node)
        skip = self._super_init_skip(original_node)
        if skip is None:
            return updated_node
        return self._convert_super_init(original_node, updated_node, skip)

    def visit_Annotation(self, node: cst.Annotation) -> None:
        self._typed_context += 1

    def leave_Annotation(self, original_node: cst.Annotation, updated_node: cst.Annotation) -> cst.Annotation:
        self._typed_context -= 1
        return updated_node

    # ------------------------------------------------------------------ bare references
    def _reference_target(self, original: cst.BaseExpression) -> tuple[str, str]:
        if self._typed_context > 0 or id(original) in self._typed_args:
            return ASGD_TARGET[1], "type check/annotation: the Paddle class"
        return TORCH_ASGD_CLASS, "bare reference: TorchASGD takes torch's arguments when called later"

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
                func=expr(PARAM_GROUPS_HELPER),
                args=[cst.Arg(updated_node.value)],
                lpar=updated_node.lpar,
                rpar=updated_node.rpar,
            )
        return super().leave_Attribute(original_node, updated_node)
