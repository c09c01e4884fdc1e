"""The seed page's parameter table as data: how each argument of one framework's ASGD becomes the other's.

The source transforms (:mod:`.transform`) and the run-time helpers (:mod:`.runtime`) both read these rows,
so a mapping decision is written once. Every argument has a row; none is dropped without a reason.

Decision (see ``docs/migration.md``): ``torch.optim.ASGD`` is averaged SGD and ``paddle.optimizer.ASGD`` is
SAG, so a faithful migration targets ``asgd_bridge.paddle.ASGD`` (averaged SGD for Paddle), whose
``lambd``/``alpha``/``t0``/``maximize`` carry torch's values unchanged. The one exception is when plain
``paddle.optimizer.SGD`` moves the parameters identically (:func:`sgd_weight_decay`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from asgd_bridge.hyperparams import ASGD_DEFAULTS, SAG_DEFAULTS

__all__ = [
    "ASGD_RULES",
    "ASGD_TARGET",
    "GROUP_KEY_RULES",
    "PADDLE_ONLY_RULES",
    "SAG_RULES",
    "SAG_TARGET",
    "SGD_TARGET",
    "TORCH_ASGD_NAMES",
    "PADDLE_ASGD_NAMES",
    "Action",
    "ArgRule",
    "REQUIRED",
    "positional_names",
    "rule_for",
    "sgd_weight_decay",
]


class Action(str, Enum):
    """What happens to one source argument."""

    RENAME = "rename"  # same meaning, the target spells it differently
    CARRY = "carry"  # same name and meaning in the target
    DROP = "drop"  # proven irrelevant to the numbers; the reason is recorded
    REPORT = "report"  # cannot be carried; the converter reports it and leaves the call unchanged


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
    differ" rows).
    """

    source: str
    target: str | None
    default: Any
    action: Action
    reason: str
    seed: str
    write_default: bool = False


#: Qualified names under which a program can reach torch's class.
TORCH_ASGD_NAMES: frozenset[str] = frozenset({"torch.optim.ASGD", "torch.optim.asgd.ASGD"})
#: Qualified names under which a program can reach Paddle's class.
PADDLE_ASGD_NAMES: frozenset[str] = frozenset({"paddle.optimizer.ASGD", "paddle.optimizer.asgd.ASGD"})

#: Targets, as (module to import, dotted name to call).
ASGD_TARGET = ("asgd_bridge.paddle", "asgd_bridge.paddle.ASGD")
SGD_TARGET = ("paddle", "paddle.optimizer.SGD")
SAG_TARGET = ("asgd_bridge.torch", "asgd_bridge.torch.SAG")
RUNTIME_MODULE = "asgd_bridge.convert.runtime"

_D = ASGD_DEFAULTS

#: torch.optim.ASGD -> asgd_bridge.paddle.ASGD, in torch's positional order (torch 2.13).
ASGD_RULES: tuple[ArgRule, ...] = (
    ArgRule(
        "params",
        "parameters",
        REQUIRED,
        Action.RENAME,
        "same meaning; group dicts keep torch's keys (GROUP_KEY_RULES), named parameters lose their names",
        "name differs only",
    ),
    ArgRule(
        "lr",
        "learning_rate",
        _D["lr"],
        Action.RENAME,
        "torch's default is written out: Paddle's default (0.001) differs",
        "defaults differ; Paddle must be given PyTorch's value",
        write_default=True,
    ),
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

#: Paddle-only arguments of the target: the page's rows with no torch side.
PADDLE_ONLY_RULES: tuple[ArgRule, ...] = (
    ArgRule(
        "-",
        "batch_num",
        SAG_DEFAULTS["batch_num"],
        Action.DROP,
        "SAG's stored-gradient count; averaged SGD has no such argument",
        "batches per epoch; PyTorch has none",
    ),
    ArgRule(
        "-",
        "grad_clip",
        None,
        Action.DROP,
        "torch's ASGD does not clip; keep default",
        "gradient clipping strategy; keep default",
    ),
    ArgRule("-", "multi_precision", False, Action.DROP, "keep default", "fp32 master weights; keep default"),
    ArgRule("-", "name", None, Action.DROP, "keep default", "keep default"),
)

#: Keys of a torch param-group dict -> keys of an ``asgd_bridge.paddle.ASGD`` param-group dict.
#: Decision on ``lr``: Paddle's own key ``learning_rate`` is a *multiplier* of the global lr, but
#: asgd_bridge.paddle.ASGD also takes torch's absolute ``lr`` and keeps it proportional to the global lr
#: under ``set_lr`` and schedulers. Carrying ``lr`` is exact; ``learning_rate=lr / global_lr`` would round
#: (0.1 / 0.01 * 0.01 != 0.1) and rewrite a node that works as it is.
GROUP_KEY_RULES: tuple[ArgRule, ...] = (
    ArgRule("params", "params", REQUIRED, Action.CARRY, "same key", "-"),
    ArgRule(
        "lr",
        "lr",
        REQUIRED,
        Action.CARRY,
        "absolute per-group lr, taken as is and kept proportional to the global lr",
        "-",
    ),
    ArgRule("weight_decay", "weight_decay", REQUIRED, Action.CARRY, "float, torch's semantics", "-"),
    ArgRule("lambd", "lambd", REQUIRED, Action.CARRY, "per-group hyperparameter", "-"),
    ArgRule("alpha", "alpha", REQUIRED, Action.CARRY, "per-group hyperparameter", "-"),
    ArgRule("t0", "t0", REQUIRED, Action.CARRY, "per-group hyperparameter", "-"),
    ArgRule("maximize", "maximize", REQUIRED, Action.CARRY, "per-group hyperparameter", "-"),
    ArgRule("foreach", None, REQUIRED, Action.DROP, "implementation switch", "-"),
    ArgRule("differentiable", None, REQUIRED, Action.DROP, "autograd through step() only", "-"),
    ArgRule("capturable", None, REQUIRED, Action.DROP, "CUDA-graph switch", "-"),
)

#: paddle.optimizer.ASGD -> asgd_bridge.torch.SAG (``--to torch``), in Paddle's positional order.
SAG_RULES: tuple[ArgRule, ...] = (
    ArgRule(
        "learning_rate",
        "lr",
        SAG_DEFAULTS["lr"],
        Action.RENAME,
        "Paddle's default is written out",
        "-",
        write_default=True,
    ),
    ArgRule("batch_num", "batch_num", SAG_DEFAULTS["batch_num"], Action.CARRY, "same meaning", "-"),
    ArgRule("parameters", "params", REQUIRED, Action.RENAME, "name differs only", "-"),
    ArgRule(
        "weight_decay",
        "weight_decay",
        None,
        Action.CARRY,
        "float carried; L2Decay(c)/L1Decay(c) become ('l2', c)/('l1', c); None becomes 0.0",
        "-",
    ),
    ArgRule(
        "grad_clip",
        "grad_clip",
        None,
        Action.CARRY,
        "ClipGradByNorm/GlobalNorm/Value(...) become ('norm'|'global_norm'|'value', ...)",
        "-",
    ),
    ArgRule("multi_precision", "multi_precision", False, Action.CARRY, "same meaning", "-"),
    ArgRule("name", None, None, Action.DROP, "Paddle's operator-name prefix; no meaning in torch", "-"),
)


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
