"""The converter's first pass: which variables hold the source optimizer, and what else.

How each is used decides the rewrite; keys are the assigned expressions' source (``opt``, ``self.opt``).
Only a plain name's uses can all be seen in one file: an attribute (``self.opt``) is reached from
anywhere (``trainer.opt``), so it counts as an escape.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable

import libcst as cst

__all__ = ["Analysis"]

Parents = Callable[[cst.CSTNode], cst.CSTNode]

# Uses of an optimizer that plain paddle.optimizer.SGD serves exactly like torch's ASGD.
_SGD_SAFE_METHODS = frozenset({"step", "zero_grad", "clear_grad"})
# Calls that reach variables by name at run time: no alias of an optimizer is known in such a file.
_DYNAMIC_SCOPE = frozenset({"globals", "locals", "vars", "eval", "exec"})
# torch's optimizer classes live here; their schedulers and SWA helpers do not count.
_OPTIMIZERS = "torch.optim."
_NOT_OPTIMIZERS = ("torch.optim.lr_scheduler.", "torch.optim.swa_utils.")
# A string that may be a type or an ``__all__`` entry (names, dots, brackets, commas, ``|``, quotes).
_TYPE_LIKE = re.compile(r"[\w.\[\], |\"']*")


class Analysis(cst.CSTVisitor):
    """Which expressions hold an optimizer named by ``names``, what else they hold, and how they are used."""

    def __init__(
        self,
        module: cst.Module,
        binding: Callable[[cst.CSTNode], str | None],
        resolve: Callable[[cst.CSTNode], set[str]],
    ) -> None:
        self._module = module
        self._binding = binding  # node -> "class" / "mixed" / None (ConvertCommand._binding)
        self._qnames = resolve  # node -> set of qualified names
        self.assigned: dict[str, set[str]] = defaultdict(set)  # key -> {"asgd", "other"}
        self.optimizers: set[str] = set()  # keys assigned a torch optimizer (any class of torch.optim)
        self.call_key: dict[int, str] = {}  # id(ASGD call) -> key it is assigned to
        self.uses: dict[str, list[str]] = defaultdict(list)  # key -> use kinds
        self.mentions = False  # the class is named outside imports (called, subclassed, referenced)
        self.dynamic_scope = False  # globals()/locals()/vars()/eval/exec appear: aliases unknowable
        self.mixed_names: set[str] = set()  # names read where the class and other bindings reach them
        # name -> whether a string literal spells it (``__all__``, string annotations: imports in use)
        self.watched_strings: dict[str, bool] = {}
        # attribute (and bare) names a direction's hooks act on besides the class (``param_groups``...)
        self.watched_names: frozenset[str] = frozenset()
        self.marks: list[cst.CSTNode] = []  # the nodes a hook of the rewrite may act on
        self._names: dict[str, list[cst.Name]] = defaultdict(list)  # every Name, by value (collect_uses)

    def _import_names(self, node: cst.CSTNode) -> None:
        for child in node.children:
            if isinstance(child, cst.Name):
                self._names[child.value].append(child)
            else:
                self._import_names(child)

    def visit_Import(self, node: cst.Import) -> bool:
        self._import_names(node)
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        self.marks.append(node)
        self._import_names(node)
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self._names[node.value].append(node)
        self.dynamic_scope = self.dynamic_scope or node.value in _DYNAMIC_SCOPE
        binding = self._binding(node)
        self.mentions = self.mentions or binding is not None
        if binding == "mixed":
            self.mixed_names.add(node.value)
        if binding is not None or node.value in self.watched_names or node.value in self.watched_strings:
            self.marks.append(node)

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        for name in self.watched_strings:
            if (
                name in node.value
                and _TYPE_LIKE.fullmatch(node.raw_value)
                and re.search(rf"\b{name}\b", node.value)
            ):
                self.watched_strings[name] = True  # may be an ``__all__`` entry or a string annotation

    def visit_Attribute(self, node: cst.Attribute) -> None:
        binding = self._binding(node)
        self.mentions = self.mentions or binding is not None
        if binding is not None or node.attr.value in self.watched_names:
            self.marks.append(node)

    def visit_Call(self, node: cst.Call) -> None:
        binding = self._binding(node)  # getattr(torch.optim, "ASGD")
        self.mentions = self.mentions or binding is not None
        if binding is not None:
            self.marks.append(node)

    def _assign(self, target: cst.BaseExpression, value: cst.BaseExpression, single: bool) -> None:
        if not isinstance(target, (cst.Name, cst.Attribute)):
            return
        key = self._module.code_for_node(target)
        if isinstance(value, cst.Call) and self._binding(value.func) == "class":
            self.assigned[key].add("asgd")
            self.optimizers.add(key)
            if single:
                self.call_key[id(value)] = key
        else:
            self.assigned[key].add("other")
            qnames = self._qnames(value.func) if isinstance(value, cst.Call) else set()
            if any(q.startswith(_OPTIMIZERS) and not q.startswith(_NOT_OPTIMIZERS) for q in qnames):
                self.optimizers.add(key)

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._assign(target.target, node.value, len(node.targets) == 1)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._assign(node.target, node.value, True)

    def collect_uses(self, module: cst.Module, parents: Parents) -> None:
        """Classify every use of an ASGD-holding expression (after the pass, once keys are known):
        each Name spelling a key's root, and the attributes above it (``opt.x.y``); ``parents(node)``
        is the node's parent (a codemod's ParentNodeProvider)."""
        keys = {k for k, kinds in self.assigned.items() if "asgd" in kinds}
        for root in sorted({k.split(".")[0] for k in keys}):
            for name in self._names.get(root, ()):
                node: cst.BaseExpression = name
                self._use(node, keys, parents)
                parent = parents(node)
                while isinstance(parent, cst.Attribute) and parent.value is node:
                    node = parent
                    self._use(node, keys, parents)
                    parent = parents(node)

    def _use(self, node: cst.BaseExpression, keys: set[str], parents: Parents) -> None:
        key = self._module.code_for_node(node)
        if key not in keys:
            return
        parent = parents(node)
        if isinstance(parent, cst.AssignTarget) or (
            isinstance(parent, cst.AnnAssign) and parent.target is node
        ):
            return
        if isinstance(parent, cst.Attribute) and parent.value is node:
            grand = parents(parent)
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
