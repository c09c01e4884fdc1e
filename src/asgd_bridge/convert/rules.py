"""The seed page's parameter table as data: how each argument of one framework's ASGD becomes the other's.

Both directions' codemods (:mod:`.to_paddle`, :mod:`.to_torch`) and the run-time helpers (:mod:`.runtime`)
read these rows, so a mapping decision is written once and a new argument is one row. A row may name a
value converter (``value``): the codemod of its direction rewrites the argument's value with it (torch's
``params`` -> Paddle's ``parameters``, a Paddle regulariser -> a SAG spec, ``lambd + weight_decay`` for
exact plain SGD). Every argument has a row; none is dropped without a reason. The tables of
``docs/migration.md`` are printed from these rows: ``python -m asgd_bridge.convert.rules --markdown``.

Decision (see ``docs/migration.md``): ``torch.optim.ASGD`` is averaged SGD and ``paddle.optimizer.ASGD`` is
SAG, so a faithful migration targets ``asgd_bridge.paddle.ASGD`` (averaged SGD for Paddle), whose
``lambd``/``alpha``/``t0``/``maximize`` carry torch's values unchanged. The one exception is when plain
``paddle.optimizer.SGD`` moves the parameters identically (:func:`sgd_weight_decay`, :data:`SGD_RULES`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from asgd_bridge.hyperparams import ASGD_DEFAULTS, SAG_DEFAULTS
from asgd_bridge.specs import PADDLE_SPEC_CLASSES

__all__ = [
    "ASGD_RULES",
    "ASGD_TARGET",
    "DEFAULTS_HELPER",
    "LOAD_STATE_DICT_HELPER",
    "LR_HELPER",
    "GROUP_KEY_RULES",
    "PADDLE_ASGD_NAMES",
    "PADDLE_LR_SCHEDULERS",
    "PADDLE_METHOD_RULES",
    "REQUIRED",
    "RUNTIME_MODULE",
    "SAG_RULES",
    "SAG_TARGET",
    "SGD_RULES",
    "SGD_TARGET",
    "SPEC_RULES",
    "STATE_DICT_HELPER",
    "TORCH_ASGD_NAMES",
    "Action",
    "ArgRule",
    "markdown",
    "positional_names",
    "rule_for",
    "sgd_weight_decay",
]


class Action(str, Enum):
    """What happens to one source argument."""

    RENAME = "rename"  # same meaning, the target spells it differently
    CARRY = "carry"  # same name and meaning in the target
    FOLD = "folded"  # the target's value is computed from several source arguments (the row's converter)
    DROP = "drop"  # proven irrelevant to the numbers; the reason is recorded


class _Required:
    """Marker of an argument without a default."""

    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of an argument that has none.
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class ArgRule:
    """One row of the table: a source argument, its target name, its default and what is done to it.

    ``write_default`` means the converter spells the source default out even when the call omits the
    argument, because the target's default differs (lr, weight_decay: the seed page's two "defaults
    differ" rows). ``value`` names the value converter the direction's codemod applies to the argument
    (and, with ``write_default``, to the omitted argument); None: the value is carried as written.
    """

    source: str
    target: str | None
    default: Any
    action: Action
    reason: str
    seed: str = "-"
    write_default: bool = False
    value: str | None = None


#: Qualified names under which a program can reach torch's class.
TORCH_ASGD_NAMES: frozenset[str] = frozenset({"torch.optim.ASGD", "torch.optim.asgd.ASGD"})
#: Qualified names under which a program can reach Paddle's class.
PADDLE_ASGD_NAMES: frozenset[str] = frozenset({"paddle.optimizer.ASGD", "paddle.optimizer.asgd.ASGD"})

#: Targets, as (module to import, dotted name to call).
ASGD_TARGET = ("asgd_bridge.paddle", "asgd_bridge.paddle.ASGD")
SGD_TARGET = ("paddle", "paddle.optimizer.SGD")
SAG_TARGET = ("asgd_bridge.torch", "asgd_bridge.torch.SAG")
RUNTIME_MODULE = "asgd_bridge.convert.runtime"
#: Run-time helpers converted programs call (:mod:`.runtime`). The class keeps torch's name, ``ASGD``.
TORCH_ASGD_CLASS = f"{RUNTIME_MODULE}.ASGD"
TORCH_GROUPS_HELPER = f"{RUNTIME_MODULE}.torch_param_groups"
PARAM_GROUPS_HELPER = f"{RUNTIME_MODULE}.param_groups"
STATE_DICT_HELPER = f"{RUNTIME_MODULE}.state_dict"
LOAD_STATE_DICT_HELPER = f"{RUNTIME_MODULE}.load_state_dict"
DEFAULTS_HELPER = f"{RUNTIME_MODULE}.defaults"
LR_HELPER = f"{RUNTIME_MODULE}.torch_lr"

_D = ASGD_DEFAULTS

#: torch's lr, for averaged SGD and for plain SGD alike.
_TORCH_LR = ArgRule(
    "lr",
    "learning_rate",
    _D["lr"],
    Action.RENAME,
    "torch's default is written out: Paddle's default (0.001) differs; a tensor or NumPy lr becomes a float",
    "defaults differ; Paddle must be given PyTorch's value",
    write_default=True,
    value="lr",
)

#: torch.optim.ASGD -> asgd_bridge.paddle.ASGD, in torch's positional order (torch 2.13).
ASGD_RULES: tuple[ArgRule, ...] = (
    ArgRule(
        "params",
        "parameters",
        REQUIRED,
        Action.RENAME,
        "same meaning; group dicts keep torch's keys (GROUP_KEY_RULES), named parameters lose their names",
        "name differs only",
        value="params",
    ),
    _TORCH_LR,
    ArgRule(
        "lambd",
        "lambd",
        _D["lambd"],
        Action.CARRY,
        "averaged SGD keeps the decay term and its eta schedule; same default",
        "no conversion available yet",
    ),
    ArgRule(
        "alpha",
        "alpha",
        _D["alpha"],
        Action.CARRY,
        "power of the eta schedule, carried; same default",
        "no conversion available yet",
    ),
    ArgRule(
        "t0",
        "t0",
        _D["t0"],
        Action.CARRY,
        "start of averaging, carried (it only changes ax); same default",
        "no conversion available yet",
    ),
    ArgRule(
        "weight_decay",
        "weight_decay",
        _D["weight_decay"],
        Action.CARRY,
        "float with torch's semantics (added to the gradient); torch's default written out",
        "defaults differ (0 vs None); Paddle must be given PyTorch's value",
        write_default=True,
    ),
    ArgRule(
        "foreach",
        None,
        None,
        Action.DROP,
        "implementation switch (multi-tensor kernels); the same numbers either way",
        "implementation switch; may be dropped",
    ),
    ArgRule(
        "maximize",
        "maximize",
        False,
        Action.CARRY,
        "negates the gradient; carried",
        "no conversion available yet",
    ),
    ArgRule(
        "differentiable",
        None,
        False,
        Action.DROP,
        "only lets autograd see through step(); training numbers are the same",
        "may be dropped",
    ),
    ArgRule(
        "capturable",
        None,
        False,
        Action.DROP,
        "CUDA-graph capture switch (keeps step on the device); the same numbers",
        "not on the page (added in torch 2.x)",
    ),
)

_SGD_UNUSED = "no effect on plain SGD's numbers (eta constant, ax unused)"

#: torch.optim.ASGD -> paddle.optimizer.SGD, only where that is exact (:func:`sgd_weight_decay`), in torch's
#: positional order.
SGD_RULES: tuple[ArgRule, ...] = (
    ArgRule("params", "parameters", REQUIRED, Action.RENAME, "name differs only; provably tensors"),
    _TORCH_LR,
    ArgRule("lambd", None, _D["lambd"], Action.DROP, "folded into weight_decay (lambd == 0 or alpha == 0)"),
    ArgRule("alpha", None, _D["alpha"], Action.DROP, _SGD_UNUSED),
    ArgRule("t0", None, _D["t0"], Action.DROP, _SGD_UNUSED),
    ArgRule(
        "weight_decay",
        "weight_decay",
        _D["weight_decay"],
        Action.FOLD,
        "weight_decay = lambd + weight_decay",
        write_default=True,
        value="sgd_decay",
    ),
    ArgRule("foreach", None, None, Action.DROP, _SGD_UNUSED),
    ArgRule("maximize", None, False, Action.DROP, "False (plain SGD only then): " + _SGD_UNUSED),
    ArgRule("differentiable", None, False, Action.DROP, _SGD_UNUSED),
    ArgRule("capturable", None, False, Action.DROP, _SGD_UNUSED),
)

#: Keys of a torch param-group dict -> keys of an ``asgd_bridge.paddle.ASGD`` param-group dict.
#: Decision on ``lr``: Paddle's own key ``learning_rate`` is a *multiplier* of the global lr, but
#: asgd_bridge.paddle.ASGD also takes torch's absolute ``lr`` and keeps it proportional to the global lr
#: under ``set_lr`` and schedulers. Carrying ``lr`` is exact; ``learning_rate=lr / global_lr`` would round
#: (0.1 / 0.01 * 0.01 != 0.1) and rewrite a node that works as it is.
GROUP_KEY_RULES: tuple[ArgRule, ...] = (
    ArgRule("params", "params", REQUIRED, Action.CARRY, "same key"),
    ArgRule(
        "lr",
        "lr",
        REQUIRED,
        Action.CARRY,
        "absolute per-group lr, taken as is and kept proportional to the global lr",
    ),
    ArgRule("weight_decay", "weight_decay", REQUIRED, Action.CARRY, "float, torch's semantics"),
    ArgRule("lambd", "lambd", REQUIRED, Action.CARRY, "per-group hyperparameter"),
    ArgRule("alpha", "alpha", REQUIRED, Action.CARRY, "per-group hyperparameter"),
    ArgRule("t0", "t0", REQUIRED, Action.CARRY, "per-group hyperparameter"),
    ArgRule("maximize", "maximize", REQUIRED, Action.CARRY, "per-group hyperparameter"),
    ArgRule("foreach", None, REQUIRED, Action.DROP, "implementation switch"),
    ArgRule("differentiable", None, REQUIRED, Action.DROP, "autograd through step() only"),
    ArgRule("capturable", None, REQUIRED, Action.DROP, "CUDA-graph switch"),
)

#: paddle.optimizer.ASGD -> asgd_bridge.torch.SAG (``--to torch``), in Paddle's positional order.
SAG_RULES: tuple[ArgRule, ...] = (
    ArgRule(
        "learning_rate",
        "lr",
        SAG_DEFAULTS["lr"],
        Action.RENAME,
        "Paddle's default is written out",
        write_default=True,
        value="lr",
    ),
    ArgRule("batch_num", "batch_num", SAG_DEFAULTS["batch_num"], Action.CARRY, "same meaning"),
    ArgRule(
        "parameters", "params", REQUIRED, Action.RENAME, "name differs only (None, static graph: reported)"
    ),
    ArgRule(
        "weight_decay",
        "weight_decay",
        None,
        Action.CARRY,
        "float carried; L2Decay(c)/L1Decay(c) become ('l2', c)/('l1', c); None becomes 0.0",
        value="spec",
    ),
    ArgRule(
        "grad_clip",
        "grad_clip",
        None,
        Action.CARRY,
        "ClipGradByNorm/GlobalNorm/Value(...) become ('norm'/'global_norm'/'value', ...)",
        value="spec",
    ),
    ArgRule("multi_precision", "multi_precision", False, Action.CARRY, "same meaning"),
    ArgRule("name", None, None, Action.DROP, "Paddle's operator-name prefix; no meaning in torch"),
)


#: Paddle regulariser/clip classes -> (asgd_bridge.torch.SAG spec tag, their argument names in order).
SPEC_RULES: dict[str, tuple[str, tuple[str, ...]]] = PADDLE_SPEC_CLASSES

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


def rule_for(rules: tuple[ArgRule, ...], source: str) -> ArgRule | None:
    """The row of ``rules`` for the source argument ``source``, or None if it has none."""
    for rule in rules:
        if rule.source == source:
            return rule
    return None


def positional_names(rules: tuple[ArgRule, ...]) -> tuple[str, ...]:
    """Source argument names in positional order."""
    return tuple(rule.source for rule in rules)


def sgd_weight_decay(values: Mapping[str, Any]) -> float | None:
    r"""Weight decay of a ``paddle.optimizer.SGD`` that moves parameters exactly like torch's ASGD, or None.

    Torch's step is :math:`p \leftarrow p(1 - \lambda\eta) - \eta(g + wd\,p) = p - \eta(g + (\lambda + wd)p)`
    and Paddle's SGD with a float ``weight_decay`` c is :math:`p \leftarrow p - lr(g + c\,p)`. They agree
    when eta stays at lr for every step, i.e. :math:`\eta_t = lr / (1 + \lambda\,lr\,t)^\alpha` is
    constant: ``lambd == 0`` or ``alpha == 0``; and then ``c = lambd + weight_decay``. ``maximize`` has no
    Paddle SGD counterpart. ``t0`` only affects ``ax``, which the caller must have proven unused.

    Args:
        values: the call's literal argument values by torch name (defaults filled in).

    Returns:
        ``lambd + weight_decay`` when plain SGD is exact, else None.
    """
    try:
        lambd = float(values["lambd"])
        alpha = float(values["alpha"])
        wd = float(values["weight_decay"])
    except (KeyError, TypeError, ValueError):
        return None
    if values.get("maximize", False) is not False:
        return None
    if lambd != 0 and alpha != 0:
        return None
    return lambd + wd


# ---------------------------------------------------------------------------------------------- the docs
def _cell(value: Any) -> str:
    return "required" if value is REQUIRED else str(value)


def _table(head: tuple[str, str], rules: tuple[ArgRule, ...], seed: bool = False) -> list[str]:
    """One markdown table: a row per rule (a table of defaults-less rows has no default column)."""
    defaults = any(rule.default is not REQUIRED for rule in rules)
    cols = [*head, *(["default"] if defaults else []), "action", "why", *(["seed page says"] if seed else [])]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for rule in rules:
        action = rule.action.value + (" (default written out)" if rule.write_default else "")
        cells = [rule.source, rule.target or "-", *([_cell(rule.default)] if defaults else []), action]
        lines.append("| " + " | ".join([*cells, rule.reason, *([rule.seed] if seed else [])]) + " |")
    return lines


def markdown() -> str:
    """The rules tables of ``docs/migration.md``, printed from the rows (``--markdown``)."""
    parts = [
        "`--to paddle` (the default):",
        "",
        *_table(("torch.optim.ASGD", ASGD_TARGET[1]), ASGD_RULES, seed=True),
        "",
        f"`--to paddle`, where {SGD_TARGET[1]} is exact (the rule above):",
        "",
        *_table(("torch.optim.ASGD", SGD_TARGET[1]), SGD_RULES),
        "",
        "Keys of torch's param-group dicts:",
        "",
        *_table(("torch group key", f"{ASGD_TARGET[1]} group key"), GROUP_KEY_RULES),
        "",
        "`--to torch`:",
        "",
        *_table(("paddle.optimizer.ASGD", SAG_TARGET[1]), SAG_RULES),
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    """``python -m asgd_bridge.convert.rules --markdown``: print the tables of ``docs/migration.md``."""
    parser = argparse.ArgumentParser(prog="python -m asgd_bridge.convert.rules", description=__doc__)
    parser.add_argument("--markdown", action="store_true", help="print the rules tables as markdown")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown())
    else:
        parser.print_help()


if __name__ == "__main__":
    main()
