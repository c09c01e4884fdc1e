"""Run-time helpers that converted programs call where a value is only known when the program runs.

The converter emits these instead of guessing: torch-style param groups and ``**kwargs`` translated with the
same rules (:mod:`.rules`) the static rewrite uses, and torch's ``optimizer.param_groups`` for any Paddle
optimizer (an AWD-LSTM program asks it of a ``paddle.optimizer.SGD`` before switching to ASGD), torch's
state-dict layout for any Paddle optimizer (so a checkpoint saved before the NT-ASGD switch answers
``'t0' in sd['param_groups'][0]`` as torch's does), ``defaults`` and tensor / NumPy learning rates; the
other way (``--to torch``), Paddle's ``get_lr()`` / ``set_lr()`` for a torch optimizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any

from .rules import ASGD_RULES, GROUP_KEY_RULES, REQUIRED, Action, positional_names, rule_for

__all__ = [
    "defaults",
    "get_lr",
    "load_state_dict",
    "param_groups",
    "set_lr",
    "state_dict",
    "torch_asgd_kwargs",
    "torch_lr",
    "torch_param_groups",
]  # and ASGD (torch's signature; TorchASGD is its old name), built on first use

#: The keys of torch's own state dicts; a Paddle optimizer's own entries sit beside them.
_TORCH_KEYS = ("state", "param_groups")

_TORCH_POSITIONAL = positional_names(ASGD_RULES)


def torch_param_groups(params: Any) -> Any:
    """Translate torch's ``params`` argument into ``asgd_bridge.paddle.ASGD``'s ``parameters``.

    Tensors and param-group dicts pass through (the target takes torch's group keys, ``lr`` included);
    ``(name, tensor)`` pairs (torch 2.x named parameters) lose their names; group keys the rules drop
    (:data:`.rules.GROUP_KEY_RULES`: ``foreach`` & co.) are removed.
    """
    items = list(params)
    if items and all(
        isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) for item in items
    ):
        return [tensor for _, tensor in items]
    groups: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            dropped = {
                key
                for key in item
                if (rule := rule_for(GROUP_KEY_RULES, key)) is not None and rule.action is Action.DROP
            }
            item = {key: value for key, value in item.items() if key not in dropped}
        groups.append(item)
    return groups


def torch_asgd_kwargs(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Keyword arguments of ``asgd_bridge.paddle.ASGD`` for a ``torch.optim.ASGD(*args, **kwargs)`` call.

    Follows :data:`.rules.ASGD_RULES` row by row: torch's defaults written out where the target's differ,
    dropped arguments removed, values put through the rows' converters (``params``:
    :func:`torch_param_groups`).

    Raises:
        TypeError: for arguments torch.optim.ASGD does not take, as torch would.
    """
    if len(args) > len(_TORCH_POSITIONAL):
        raise TypeError(
            f"torch.optim.ASGD takes at most {len(_TORCH_POSITIONAL)} arguments ({len(args)} given)"
        )
    values: dict[str, Any] = dict(zip(_TORCH_POSITIONAL, args, strict=False))
    for key, value in kwargs.items():
        if key not in _TORCH_POSITIONAL:
            raise TypeError(f"torch.optim.ASGD got an unexpected keyword argument {key!r}")
        if key in values:
            raise TypeError(f"torch.optim.ASGD got multiple values for argument {key!r}")
        values[key] = value
    if "params" not in values:
        raise TypeError("torch.optim.ASGD missing required argument 'params'")
    out: dict[str, Any] = {}
    for rule in ASGD_RULES:
        if rule.action is Action.DROP or rule.target is None:
            continue
        if rule.source in values:
            value = values[rule.source]
        elif rule.write_default and rule.default is not REQUIRED:
            value = rule.default
        else:
            continue
        out[rule.target] = _VALUE_CONVERTERS[rule.value](value) if rule.value else value
    return out


def torch_lr(value: Any) -> Any:
    """torch's ``lr`` as ``asgd_bridge.paddle.ASGD`` takes it: a one-element tensor (torch or Paddle) or
    a NumPy scalar becomes its float value (read once, when the optimizer is made); anything else,
    schedulers included, is returned as is for the optimizer to validate."""
    if isinstance(value, (bool, int, float)) or not hasattr(value, "item"):
        return value
    numel = value.numel() if callable(getattr(value, "numel", None)) else getattr(value, "size", None)
    if numel is not None and int(numel) == 1:
        return float(value.item())
    return value


#: The run-time form of the rows' value converters (the codemod applies the same rows to source).
_VALUE_CONVERTERS = {"params": torch_param_groups, "lr": torch_lr}


def __getattr__(name: str) -> Any:
    # ASGD subclasses the Paddle backend, so it is built on first use: the pure helpers above stay
    # importable without Paddle. It keeps torch's class name (type(opt).__name__, reprs, pickled names).
    if name in ("ASGD", "TorchASGD"):
        from asgd_bridge.paddle import ASGD as _PaddleASGD

        class ASGD(_PaddleASGD):  # type: ignore[misc, valid-type]
            """``asgd_bridge.paddle.ASGD`` with torch.optim.ASGD's signature, for references to the class
            the converter cannot see the arguments of (``cls = torch.optim.ASGD``, ``**config``) or must
            leave as written (``ASGD = functools.partial(ASGD, lr=0.1)``, ``class ASGD(ASGD)``).

            A subclass, so ``isinstance`` against ``asgd_bridge.paddle.ASGD`` holds and methods patched
            onto that class (``torch.optim.ASGD.step = ...`` converted) reach it too.
            """

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(**torch_asgd_kwargs(*args, **kwargs))

        ASGD.__module__, ASGD.__qualname__ = __name__, "ASGD"  # pickle finds it by this name
        globals()["ASGD"] = globals()["TorchASGD"] = ASGD
        return ASGD
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def defaults(optimizer: Any) -> dict[str, Any]:
    """torch's ``optimizer.defaults``: the constructor's hyperparameters (``lr``, ``lambd``, ``alpha``,
    ``t0``, ``weight_decay``, ``maximize``), for ``asgd_bridge.paddle.ASGD`` too (the live dict it
    fills new param groups from, so an edit applies to groups added later, as in torch)."""
    found = getattr(optimizer, "defaults", None)
    if found is None:
        found = getattr(optimizer, "_defaults", None)
    if found is None:
        raise AttributeError(f"{type(optimizer).__name__} has neither defaults nor asgd_bridge's _defaults")
    return found


def _paddle_only(optimizer: Any) -> bool:
    """A Paddle optimizer without torch's surface (``paddle.optimizer.SGD`` & co.)."""
    return getattr(optimizer, "param_groups", None) is None and hasattr(optimizer, "set_state_dict")


def state_dict(optimizer: Any) -> dict[str, Any]:
    """``optimizer.state_dict()`` in torch's layout, for a torch-like optimizer and a Paddle one alike.

    A torch-like optimizer (``asgd_bridge.paddle.ASGD``) returns its own. A Paddle optimizer's dict (its
    accumulators by name) gets torch's two keys beside its own: ``state`` (``{}``, as torch's SGD
    without momentum has) and ``param_groups``, one per group with ``params`` (positions), ``lr`` (the
    current learning rate) and ``weight_decay`` (the float coefficient, 0.0 if none). So the NT-ASGD
    resume test ``'t0' in sd['param_groups'][0]`` is False before the switch and True after, as in torch.
    """
    if not _paddle_only(optimizer):
        return optimizer.state_dict()
    out = dict(optimizer.state_dict())
    groups, start = [], 0
    for view in param_groups(optimizer):
        count = len(list(view["params"]))
        reg = getattr(optimizer, "regularization", None)
        decay = reg if isinstance(reg, (int, float)) else getattr(reg, "_coeff", 0.0) if reg else 0.0
        positions = list(range(start, start + count))
        groups.append({"lr": float(view["lr"]), "weight_decay": float(decay), "params": positions})
        start += count
    out.setdefault("state", {})
    out.setdefault("param_groups", groups)
    return out


def load_state_dict(optimizer: Any, saved: MutableMapping[str, Any]) -> None:
    """``optimizer.load_state_dict(saved)`` for a dict :func:`state_dict` wrote, into any optimizer.

    A torch-like optimizer loads it itself. A Paddle optimizer gets its own entries
    (``set_state_dict``) and, as torch restores each group's hyperparameters, the saved ``lr`` of the
    first group (``set_lr``, unless a scheduler drives the lr: its own entry restores it).
    """
    if not _paddle_only(optimizer):
        optimizer.load_state_dict(saved)
        return
    own = {k: v for k, v in saved.items() if k not in _TORCH_KEYS}
    optimizer.set_state_dict(own)
    groups = saved.get("param_groups") or []
    if groups and "lr" in groups[0] and isinstance(getattr(optimizer, "_learning_rate", None), (int, float)):
        optimizer.set_lr(float(groups[0]["lr"]))


class _PaddleGroupView(MutableMapping):
    """A torch-style param group over a Paddle optimizer's global learning rate.

    ``view['lr']`` reads ``get_lr()`` (times the group's multiplier) and assigning it calls ``set_lr``;
    keys torch's plain SGD would not have (``'t0'``) are absent, so ``'t0' in view`` is False.
    """

    def __init__(self, optimizer: Any, group: dict[str, Any] | None) -> None:
        self._opt = optimizer
        self._group = group if group is not None else {"params": list(optimizer._parameter_list or [])}
        self._single = group is None or len(getattr(optimizer, "_param_groups", None) or [None]) == 1

    def __getitem__(self, key: str) -> Any:
        if key == "lr":
            return self._opt.get_lr() * self._group.get("learning_rate", 1.0)
        return self._group[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key == "lr":
            if self._single and self._group.get("learning_rate", 1.0) == 1.0:
                self._opt.set_lr(value)
            else:
                self._group["learning_rate"] = value / self._opt.get_lr()
            return
        self._group[key] = value

    def __delitem__(self, key: str) -> None:
        del self._group[key]

    def __iter__(self) -> Iterator[str]:
        keys = [k for k in self._group if k != "learning_rate"]
        return iter([*keys, "lr"])

    def __len__(self) -> int:
        return len(list(iter(self)))


def param_groups(optimizer: Any) -> list[Any]:
    """``optimizer.param_groups`` for a torch-like optimizer, or torch-style views of a Paddle one's groups.

    Lets ``'t0' in param_groups(opt)[0]`` and ``param_groups(opt)[0]['lr'] = x`` run whether ``opt`` is an
    ``asgd_bridge.paddle.ASGD`` or a plain Paddle optimizer (what PaConvert makes of ``torch.optim.SGD``).
    """
    groups = getattr(optimizer, "param_groups", None)
    if groups is not None:
        return groups
    paddle_groups: Iterable[Any] | None = getattr(optimizer, "_param_groups", None)
    if paddle_groups and all(isinstance(g, dict) for g in paddle_groups):
        return [_PaddleGroupView(optimizer, g) for g in paddle_groups]
    return [_PaddleGroupView(optimizer, None)]


def get_lr(optimizer: Any) -> float:
    """Paddle's ``optimizer.get_lr()`` for any torch optimizer: the current lr of its first param group.

    Paddle's ``get_lr`` returns the learning rate in force now (a scheduler's current value included);
    in torch that lives in ``param_groups[i]['lr']``, which torch's schedulers move, while
    ``defaults['lr']`` keeps the constructor's value.
    """
    return float(optimizer.param_groups[0]["lr"])


def set_lr(optimizer: Any, value: float) -> None:
    r"""Paddle's ``optimizer.set_lr(value)`` for any torch optimizer: :func:`get_lr` becomes ``value``.

    Each group keeps its ratio to the first group (Paddle's per-group ``learning_rate`` multiplier of the
    global lr): :math:`lr_i \leftarrow value \cdot lr_i / lr_0`; ``defaults['lr']`` follows, for
    groups added later.
    """
    groups = optimizer.param_groups
    first = float(groups[0]["lr"])
    for group in groups:
        group["lr"] = value * (float(group["lr"]) / first) if first != 0 else value
    optimizer.defaults["lr"] = value
