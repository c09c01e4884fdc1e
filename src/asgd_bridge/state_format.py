"""The state-dict layout of each algorithm, as data, and the one validator every loader uses.

Both algorithms keep torch's layout: ``{"state": {i: {key: value}}, "param_groups": [{..., "params":
[i, ...]}]}``, parameters numbered across groups in order. :data:`ASGD_FORMAT` (averaged SGD:
``torch.optim.ASGD``, ``asgd_bridge.torch.ASGD``, ``asgd_bridge.paddle.ASGD``) and :data:`SAG_FORMAT`
(``asgd_bridge.torch.SAG``, ``asgd_bridge.paddle.SAG``) list every key: per-parameter state, group
hyperparameters (each checked by the function of :mod:`asgd_bridge.hyperparams` that the constructors
call) and optional top-level entries. :func:`check_state_dict` checks a state dict against a format
and, when given, the parameters it is loaded into: the ``load_state_dict`` / ``set_state_dict`` of the
four optimizers and :func:`asgd_bridge.checkpoint.convert_state_dict` call it before anything is
loaded or converted, so nothing reaches a kernel unchecked.

Per-parameter state of averaged SGD (``step``, ``eta``, ``mu`` as 0-d tensors or, in old torch
checkpoints, Python numbers):

* ``step``: a finite whole number ``>= 0``; ``eta``: finite, ``>= 0``; ``mu``: finite, ``0 < mu <= 1``;
* ``ax``: a tensor of the parameter's shape (so its element count), of a floating dtype for a real
  parameter (cast to the parameter's dtype on load, as torch does) and of the parameter's own complex
  dtype for a complex one; not on the ``meta`` device, not overlapping in memory.

Per-parameter state of SAG: ``d`` (the parameter's shape), ``y`` (``[batch_num, *shape]`` with the
group's ``batch_num``), ``m`` (an int ``>= 0``, or a one-element integer tensor as Paddle stores it),
optional ``master`` (the parameter's shape, float32); floating dtypes only.

What is refused, and what is not (deliberately):

* a missing required key, an unknown key (per parameter, per group, top level), a state entry for a
  parameter no group lists, a group whose ``params`` are not distinct ints: torch's own
  ``Optimizer.load_state_dict`` copies unknown state "as is" and unknown group keys along; here they
  are refused, since a key nobody reads is a setting silently lost;
* only ``param_names`` (torch's names of the parameters, which do not affect loading) is accepted and
  otherwise ignored, as torch does; an empty state entry (``{}``, what torch's ``state_dict`` writes
  for a parameter that was looked up but never stepped) means "no state yet";
* keys only one framework can honour are checked by ``framework``: a ``regularizer`` or ``grad_clip``
  of ``asgd_bridge.paddle.ASGD`` other than ``None``, ``master_weights`` or ``LR_Scheduler`` cannot be
  loaded into a torch optimizer (convert the state dict with
  :func:`asgd_bridge.checkpoint.convert_state_dict`); torch's implementation switches (``foreach``,
  ``differentiable``, ``capturable``, ``fused``) are accepted by Paddle's classes and mean nothing there.

Every refusal is a :class:`StateDictError` (a ``ValueError``) whose message names where (``state[3]``
with the parameter's position and name, or ``param_groups[0]``), the key, what was expected and what
was found.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .hyperparams import (
    SAG_DEFAULTS,
    check_asgd_schedule,
    check_flag,
    check_lr,
    check_sag,
    check_weight_decay,
)
from .specs import is_custom, parse_grad_clip, parse_regularizer, parse_weight_decay

__all__ = [
    "ASGD_FORMAT",
    "SAG_FORMAT",
    "Format",
    "GroupKey",
    "ParamSpec",
    "StateDictError",
    "StateKey",
    "TensorInfo",
    "check_state_dict",
    "checked_torch_load",
    "from_paddle_sag_format",
    "is_paddle_sag_format",
    "param_spec",
    "tensor_info",
]

Framework = Literal["torch", "paddle"]

_FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})
_COMPLEX = frozenset({"complex64", "complex128"})
_INTS = frozenset({"int8", "int16", "int32", "int64", "uint8"})


class StateDictError(ValueError):
    """A state dict that does not fit its algorithm's format or the parameters it is loaded into."""


# --------------------------------------------------------------------------- tensors, framework-free


@dataclass(frozen=True)
class TensorInfo:
    """What the format checks of a tensor: shape, dtype name (``"float32"``), device type, framework."""

    shape: tuple[int, ...]
    dtype: str
    device: str
    framework: str  # "torch", "paddle" or "numpy"
    overlapping: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _overlapping(shape: Sequence[int], strides: Sequence[int]) -> bool:
    # A strided view whose elements share memory (an expanded, stride-0 tensor, for one).
    dims = sorted((st, n) for n, st in zip(shape, strides, strict=True) if n > 1)
    span = 1
    for st, n in dims:
        if st < span:
            return True
        span = st * n
    return False


def _is_dtensor(value: Any) -> bool:
    tensor_mod = sys.modules.get("torch.distributed.tensor")
    dtensor = getattr(tensor_mod, "DTensor", None) if tensor_mod is not None else None
    return dtensor is not None and type(value) is dtensor


def tensor_info(value: Any) -> TensorInfo | None:
    """A torch tensor, Paddle tensor or NumPy array described framework-free; anything else ``None``.

    A torch tensor must be a plain dense one (``torch.Tensor`` or ``Parameter``, strided layout), or
    a DTensor (FSDP2, tensor parallel; what ``torch.distributed.checkpoint`` loads) whose local shard
    is one: it is described by its global shape and its local shard's dtype, device and layout.
    """
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and _is_dtensor(value):
        local = tensor_info(value._local_tensor)
        if local is None:
            return None
        shape = tuple(int(s) for s in value.shape)
        return TensorInfo(shape, local.dtype, local.device, "torch", local.overlapping)
    if torch is not None and isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter) or value.layout != torch.strided:
            return None
        shape = tuple(int(s) for s in value.shape)
        return TensorInfo(
            shape,
            str(value.dtype).removeprefix("torch."),
            value.device.type,
            "torch",
            _overlapping(shape, value.stride()),
        )
    paddle = sys.modules.get("paddle")
    if paddle is not None and isinstance(value, paddle.Tensor):
        place = value.place
        device = "cpu" if place.is_cpu_place() else "gpu" if place.is_gpu_place() else str(place)
        return TensorInfo(
            tuple(int(s) for s in value.shape),
            str(value.dtype).removeprefix("paddle."),
            device,
            "paddle",
        )
    if isinstance(value, np.ndarray):
        return TensorInfo(tuple(int(s) for s in value.shape), value.dtype.name, "cpu", "numpy")
    return None


@dataclass(frozen=True)
class ParamSpec:
    """A parameter a state dict is loaded into: its shape, dtype name, device type, and name if known."""

    shape: tuple[int, ...]
    dtype: str
    device: str
    name: str | None = None


def param_spec(param: Any, name: str | None = None) -> ParamSpec:
    """The :class:`ParamSpec` of a torch or Paddle parameter."""
    info = tensor_info(param)
    if info is None:
        raise TypeError(f"not a dense tensor: {type(param).__name__}")
    return ParamSpec(info.shape, info.dtype, info.device, name)


# --------------------------------------------------------------------------- the formats, as data


@dataclass(frozen=True)
class StateKey:
    """One per-parameter state entry: its name, its rule (see :func:`check_state_dict`), required or not."""

    name: str
    rule: Literal["count", "rate", "weight", "int", "like_param", "stacked", "master"]
    required: bool = True


@dataclass(frozen=True)
class GroupKey:
    """One param-group key: ``check(value, framework)`` raises ``ValueError``/``TypeError`` if invalid;
    ``expected`` says in words what is accepted."""

    name: str
    check: Callable[[Any, Framework | None], Any]
    expected: str
    required: bool = True


@dataclass(frozen=True)
class Format:
    """The state-dict format of one algorithm."""

    algorithm: str
    state: tuple[StateKey, ...]
    groups: tuple[GroupKey, ...]
    #: optional top-level entries beside ``state`` and ``param_groups``: name -> frameworks that read it
    extras: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: the per-parameter key whose shape is the parameter's (when no parameter is given)
    shape_key: str = ""

    def group_key(self, name: str) -> GroupKey | None:
        return next((k for k in self.groups if k.name == name), None)


def _asgd_hyper(name: str) -> Callable[[Any, Framework | None], Any]:
    """A group's ``name`` as the constructors check it: ``check_lr``, ``check_weight_decay`` or
    ``check_asgd_schedule`` (lambd, alpha, t0); Paddle's ASGD takes lr and weight_decay only as
    finite Python numbers, torch also as (1-element) tensors or ``inf``."""

    def check(value: Any, framework: Framework | None) -> Any:
        if name in ("lambd", "alpha", "t0"):
            check_asgd_schedule(**{name: value})
            return value
        torch_like = framework != "paddle"
        (check_lr if name == "lr" else check_weight_decay)(value, finite=not torch_like, tensor=torch_like)
        return value

    return check


def _flag(name: str, *, none_ok: bool = False) -> Callable[[Any, Framework | None], Any]:
    def check(value: Any, framework: Framework | None) -> Any:
        if none_ok and value is None:
            return value
        return check_flag(name, bool(value) if isinstance(value, np.bool_) else value)

    return check


def _paddle_only_spec(name: str, parse: Callable[[Any], Any]) -> Callable[[Any, Framework | None], Any]:
    """``regularizer`` / ``grad_clip`` of asgd_bridge.paddle.ASGD groups: ``None``, a spec, or
    ``("custom", class name)``; torch's ASGD has neither, so only ``None`` loads into torch."""

    def check(value: Any, framework: Framework | None) -> Any:
        if value is None:
            return value
        if framework == "torch":
            raise ValueError(
                f"torch's ASGD has no {name}, so {value!r} cannot be honoured (convert the state dict "
                "with asgd_bridge.checkpoint.convert_state_dict, which says what is dropped)"
            )
        if is_custom(value):
            return parse_regularizer(value)  # checks the class name
        return parse(value)

    return check


def _sag_lr(value: Any, framework: Framework | None) -> Any:
    return check_lr(value)


def _sag_batch_num(value: Any, framework: Framework | None) -> Any:
    check_sag(SAG_DEFAULTS["lr"], value)
    return value


#: Averaged SGD: torch.optim.ASGD's keys, asgd_bridge's two fixes, asgd_bridge.paddle.ASGD's
#: regulariser/clip records, Paddle's master weights and LR scheduler.
ASGD_FORMAT = Format(
    algorithm="averaged SGD",
    state=(
        StateKey("step", "count"),
        StateKey("eta", "rate"),
        StateKey("mu", "weight"),
        StateKey("ax", "like_param"),
    ),
    groups=(
        GroupKey("lr", _asgd_hyper("lr"), "a float >= 0 (torch: also a 1-element tensor)"),
        GroupKey("lambd", _asgd_hyper("lambd"), "a finite float >= 0"),
        GroupKey("alpha", _asgd_hyper("alpha"), "a finite float >= 0"),
        GroupKey("t0", _asgd_hyper("t0"), "a float >= 0"),
        GroupKey("weight_decay", _asgd_hyper("weight_decay"), "a float >= 0"),
        GroupKey("maximize", _flag("maximize"), "True or False", required=False),
        GroupKey("immediate_lr", _flag("immediate_lr"), "True or False", required=False),
        GroupKey("bottou_average", _flag("bottou_average"), "True or False", required=False),
        GroupKey("foreach", _flag("foreach", none_ok=True), "None, True or False", required=False),
        GroupKey("differentiable", _flag("differentiable"), "True or False", required=False),
        GroupKey("capturable", _flag("capturable"), "True or False", required=False),
        GroupKey("fused", _flag("fused", none_ok=True), "None, True or False", required=False),
        GroupKey(
            "regularizer",
            _paddle_only_spec("regularizer", parse_regularizer),
            "None, ('l2', c) or ('l1', c) (Paddle only)",
            required=False,
        ),
        GroupKey(
            "grad_clip",
            _paddle_only_spec("grad_clip", parse_grad_clip),
            "None or a clip spec (Paddle only)",
            required=False,
        ),
    ),
    extras={"master_weights": frozenset({"paddle"}), "LR_Scheduler": frozenset({"paddle"})},
    shape_key="ax",
)

#: SAG (paddle.optimizer.ASGD's algorithm) as asgd_bridge.torch.SAG and asgd_bridge.paddle.SAG save it.
SAG_FORMAT = Format(
    algorithm="SAG",
    state=(
        StateKey("d", "like_param"),
        StateKey("y", "stacked"),
        StateKey("m", "int"),
        StateKey("master", "master", required=False),
    ),
    groups=(
        GroupKey("lr", _sag_lr, "a finite float >= 0"),
        GroupKey("batch_num", _sag_batch_num, "an int >= 1"),
        GroupKey(
            "weight_decay",
            lambda v, fw: parse_weight_decay(v),
            "a float >= 0, ('l2', c) or ('l1', c)",
        ),
        GroupKey("grad_clip", lambda v, fw: parse_grad_clip(v), "None or a clip spec"),
        GroupKey("maximize", _flag("maximize"), "True or False"),
        GroupKey("multi_precision", _flag("multi_precision"), "True or False"),
    ),
    extras={"LR_Scheduler": frozenset({"paddle"})},
    shape_key="d",
)

#: Group keys every format accepts: ``params`` (checked structurally) and torch's ``param_names``.
_STRUCTURE_KEYS = ("params", "param_names")


# --------------------------------------------------------------------------- the validator


def _found(value: Any) -> str:
    info = tensor_info(value)
    if info is not None:
        text = f"a {info.framework} tensor of shape {list(info.shape)}, dtype {info.dtype}, on {info.device}"
        if info.numel == 1 and info.device != "meta":
            item = np.asarray(value.numpy() if info.framework == "paddle" else value.tolist()).reshape(())
            text += f" = {item.item()!r}"
        return text
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _where_param(pid: Any, position: int | None, spec: ParamSpec | None, names: Mapping[Any, str]) -> str:
    name = spec.name if spec is not None and spec.name else names.get(pid)
    where = f"state[{pid!r}]"
    if position is not None:
        where += f" (parameter {position}{f' {name!r}' if name else ''})"
    return where


def _fail(where: str, key: str, expected: str, value: Any, detail: str = "") -> StateDictError:
    return StateDictError(
        f"{where}, key {key!r}: expected {expected}, found {_found(value)}{f' ({detail})' if detail else ''}"
    )


def _scalar(value: Any) -> float | None:
    """A Python/NumPy real or a real one-element tensor as a float; ``None`` if it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    info = tensor_info(value)
    if info is None or info.numel != 1 or info.device == "meta":
        return None
    if info.dtype not in _FLOATS | _INTS:
        return None
    return float(np.asarray(value.numpy() if info.framework == "paddle" else value.tolist()).reshape(()))


def _int_value(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    info = tensor_info(value)
    if info is None or info.numel != 1 or info.dtype not in _INTS or info.device == "meta":
        return None
    number = _scalar(value)
    return None if number is None else int(number)


def _check_tensor(
    value: Any,
    where: str,
    key: str,
    shape: tuple[int, ...] | None,
    dtypes: frozenset[str],
    what: str,
    framework: Framework | None,
    param: ParamSpec | None,
) -> TensorInfo:
    info = tensor_info(value)
    expected = f"a {what}{f' of shape {list(shape)}' if shape is not None else ''}"
    if info is None:
        raise _fail(where, key, expected + " (a plain dense tensor)", value)
    if framework == "torch" and info.framework != "torch":
        raise _fail(where, key, expected + " (a torch tensor)", value)
    if framework == "paddle" and info.framework == "torch":
        raise _fail(
            where, key, expected + " (a Paddle tensor or NumPy array)", value,
            "convert torch state with asgd_bridge.checkpoint.convert_state_dict",
        )  # fmt: skip
    if shape is not None and info.shape != shape:
        raise _fail(where, key, expected, value, f"{info.numel} elements, expected {math.prod(shape)}")
    if info.dtype not in dtypes:
        raise _fail(where, key, f"{expected}, dtype {' or '.join(sorted(dtypes))}", value)
    if info.device == "meta" and (param is None or param.device != "meta"):
        raise _fail(where, key, expected + " with data (not on the meta device)", value)
    if info.overlapping:
        raise _fail(where, key, expected + " whose elements do not share memory", value, "overlapping")
    return info


def _param_dtypes(param: ParamSpec | None) -> frozenset[str]:
    if param is None:
        return _FLOATS | _COMPLEX
    return frozenset({param.dtype}) if param.dtype in _COMPLEX else _FLOATS


def _check_entry(
    fmt: Format,
    entry: Any,
    where: str,
    group: Mapping[str, Any],
    param: ParamSpec | None,
    framework: Framework | None,
) -> None:
    if not isinstance(entry, Mapping):
        raise StateDictError(f"{where}: expected a dict of state, found {_found(entry)}")
    if len(entry) == 0:
        return  # looked up, never stepped: no state yet
    names = [k.name for k in fmt.state]
    unknown = [k for k in entry if k not in names]
    if unknown:
        raise StateDictError(
            f"{where}: unknown state key(s) {sorted(map(repr, unknown))} for {fmt.algorithm}: "
            f"expected only {names}, found {sorted(map(str, entry))}"
        )
    missing = [k.name for k in fmt.state if k.required and k.name not in entry]
    if missing:
        raise StateDictError(
            f"{where}: missing state key(s) {missing}: expected {names}, found {sorted(map(str, entry))}"
        )
    shape = param.shape if param is not None else None
    if shape is None:  # no parameter: the state must agree with itself
        stacked = tensor_info(entry.get("y")) if fmt is SAG_FORMAT else None
        if stacked is not None and stacked.shape[:1] == (group.get("batch_num"),):
            shape = stacked.shape[1:]  # y = [batch_num, *shape] fixes the shape d and master must have
        elif fmt.shape_key:
            info = tensor_info(entry.get(fmt.shape_key))
            shape = info.shape if info is not None else None
    for key in fmt.state:
        if key.name not in entry:
            continue
        value = entry[key.name]
        if key.rule == "count":
            number = _scalar(value)
            if number is None or not math.isfinite(number) or number < 0 or number != int(number):
                raise _fail(where, key.name, "a whole number >= 0 (a number or 1-element real tensor)", value)
        elif key.rule == "rate":
            number = _scalar(value)
            if number is None or not math.isfinite(number) or number < 0:
                raise _fail(where, key.name, "a finite number >= 0", value)
        elif key.rule == "weight":
            number = _scalar(value)
            if number is None or not math.isfinite(number) or not 0 < number <= 1:
                raise _fail(where, key.name, "a finite number with 0 < mu <= 1", value)
        elif key.rule == "int":
            count = _int_value(value)
            if count is None or count < 0:
                raise _fail(where, key.name, "an int >= 0 (or a 1-element integer tensor)", value)
        elif key.rule == "like_param":
            what = "tensor like the parameter" if param is not None else "floating or complex tensor"
            dtypes = _param_dtypes(param) if fmt is ASGD_FORMAT else _FLOATS
            _check_tensor(value, where, key.name, shape, dtypes, what, framework, param)
        elif key.rule == "stacked":
            n = group.get("batch_num")
            stacked = (n, *shape) if shape is not None and isinstance(n, int) else None
            _check_tensor(
                value, where, key.name, stacked, _FLOATS, "[batch_num, *shape] tensor", framework, param
            )
        elif key.rule == "master":
            fp32 = frozenset({"float32"})
            _check_tensor(value, where, key.name, shape, fp32, "fp32 tensor", framework, param)


def _check_group(
    fmt: Format, group: Any, index: int, framework: Framework | None, size: int | None
) -> list[Any]:
    where = f"param_groups[{index}]"
    if not isinstance(group, Mapping):
        raise StateDictError(f"{where}: expected a dict, found {_found(group)}")
    ids = group.get("params")
    # torch maps saved ids to parameters by position; torch.distributed.checkpoint gives names (FQNs).
    if not isinstance(ids, (list, tuple)) or not (
        all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        or all(isinstance(i, str) for i in ids)
    ):
        raise _fail(where, "params", "a list of int parameter ids (or of parameter names)", ids)
    if size is not None and len(ids) != size:
        raise _fail(where, "params", f"{size} ids (the size of the optimizer's group)", ids)
    names = group.get("param_names")
    if names is not None and (
        not isinstance(names, (list, tuple))
        or len(names) != len(ids)
        or not all(isinstance(n, str) for n in names)
    ):
        raise _fail(where, "param_names", f"a list of {len(ids)} str", names)
    allowed = [k.name for k in fmt.groups]
    for key in group:
        if key in _STRUCTURE_KEYS:
            continue
        spec = fmt.group_key(key) if isinstance(key, str) else None
        if spec is None:
            raise StateDictError(
                f"{where}: unknown key {key!r} for {fmt.algorithm}: expected only {allowed}, params, "
                f"param_names; found {key!r} = {_found(group[key])}"
            )
        value = group[key]
        try:
            spec.check(value, framework)
        except (ValueError, TypeError) as error:
            raise _fail(where, key, spec.expected, value, str(error)) from None
    missing = [k.name for k in fmt.groups if k.required and k.name not in group]
    if missing:
        raise StateDictError(
            f"{where}: missing key(s) {missing} for {fmt.algorithm}: expected {missing}, found only "
            f"{sorted(map(str, group))}"
        )
    return list(ids)


def check_state_dict(
    state_dict: Any,
    fmt: Format,
    params: Sequence[Sequence[ParamSpec]] | None = None,
    *,
    framework: Framework | None = None,
) -> None:
    """Check ``state_dict`` against ``fmt`` and, if given, the parameters it is loaded into.

    Args:
        state_dict: the state dict (as ``state_dict()`` writes it, or loaded from a file).
        fmt: :data:`ASGD_FORMAT` or :data:`SAG_FORMAT`.
        params: the loading optimizer's parameters per group (:func:`param_spec`), in order; the
            saved groups are paired with them by position, as torch pairs them. ``None``: only the
            state dict's own consistency is checked (``y`` against ``d``, ``master`` against ``d``).
        framework: the loading side (``"torch"`` or ``"paddle"``): which tensors and keys it can
            honour; ``None`` (a converter's source) accepts either.

    Raises:
        StateDictError: naming the parameter (position, id, name where known) or group, the key,
            what was expected and what was found.
    """
    if not isinstance(state_dict, Mapping):
        raise StateDictError(
            "expected an optimizer state dict {'state': ..., 'param_groups': [...]}, "
            f"found {_found(state_dict)}"
        )
    for key in ("state", "param_groups"):
        if key not in state_dict:
            raise StateDictError(
                f"state dict: missing key {key!r} (an optimizer state dict holds 'state' and "
                f"'param_groups'; found keys {sorted(map(str, state_dict))[:6]})"
            )
    for key in state_dict:
        if key in ("state", "param_groups"):
            continue
        if key not in fmt.extras:
            raise StateDictError(
                f"state dict: unknown top-level key {key!r} for {fmt.algorithm} "
                f"(expected state, param_groups{''.join(', ' + k for k in fmt.extras)})"
            )
        if framework is not None and framework not in fmt.extras[key]:
            raise StateDictError(
                f"state dict: key {key!r} is {'/'.join(sorted(fmt.extras[key]))}-only and a {framework} "
                "optimizer cannot honour it (convert with asgd_bridge.checkpoint.convert_state_dict)"
            )
    groups = state_dict["param_groups"]
    if not isinstance(groups, (list, tuple)):
        raise _fail("state dict", "param_groups", "a list of dicts", groups)
    if params is not None and len(params) != len(groups):
        raise StateDictError(
            f"state dict, key 'param_groups': expected {len(params)} parameter groups (the "
            f"optimizer's), found {len(groups)}"
        )
    if not groups:
        raise _fail("state dict", "param_groups", "a non-empty list of dicts", groups)
    owner: dict[Any, tuple[int, int, ParamSpec | None, Mapping[str, Any]]] = {}
    names: dict[Any, str] = {}
    position = 0
    for gi, group in enumerate(groups):
        ids = _check_group(fmt, group, gi, framework, len(params[gi]) if params is not None else None)
        for j, pid in enumerate(ids):
            if pid in owner:
                raise _fail(f"param_groups[{gi}]", "params", "distinct ids", ids, f"{pid} appears twice")
            owner[pid] = (position, gi, params[gi][j] if params is not None else None, group)
            if group.get("param_names"):
                names[pid] = group["param_names"][j]
            position += 1
    state = state_dict["state"]
    if not isinstance(state, Mapping):
        raise _fail("state dict", "state", "a dict {parameter id: state}", state)
    for pid, entry in state.items():
        if pid not in owner:
            raise StateDictError(
                f"state[{pid!r}]: no param group's 'params' lists parameter id {pid!r} "
                f"(ids: {sorted(owner)[:8]}{' ...' if len(owner) > 8 else ''})"
            )
        pos, _, spec, group = owner[pid]
        _check_entry(fmt, entry, _where_param(pid, pos, spec, names), group, spec, framework)
    masters = state_dict.get("master_weights")
    if masters is not None:
        if not isinstance(masters, Mapping):
            raise _fail("state dict", "master_weights", "a dict {parameter id: fp32 tensor}", masters)
        for pid, master in masters.items():
            if pid not in owner:
                raise StateDictError(
                    f"master_weights[{pid!r}]: no param group's 'params' lists parameter id {pid!r}"
                )
            pos, _, spec, _ = owner[pid]
            shape = spec.shape if spec is not None else None
            if shape is None:
                entry = state.get(pid)
                info = tensor_info(entry.get("ax")) if isinstance(entry, Mapping) else None
                shape = info.shape if info is not None else None
            where = _where_param(pid, pos, spec, names).replace("state[", "master_weights[", 1)
            _check_tensor(
                master, where, "master_weights", shape, frozenset({"float32"}), "fp32 tensor", framework, spec
            )
    scheduler = state_dict.get("LR_Scheduler")
    if scheduler is not None and not isinstance(scheduler, Mapping):
        raise _fail("state dict", "LR_Scheduler", "a dict (an LRScheduler's state_dict())", scheduler)


@contextmanager
def checked_torch_load(optimizer: Any, state_dict: Any, fmt: Format) -> Iterator[dict[str, Any]]:
    """For a ``torch.optim.Optimizer``'s ``load_state_dict``: the state dict after the optimizer's
    load pre-hooks (which torch runs first, and which may adapt a foreign dict), checked against
    ``fmt`` and the optimizer's parameters; inside the block the pre-hooks are not run again::

        with checked_torch_load(self, state_dict, ASGD_FORMAT) as state_dict:
            super().load_state_dict(state_dict)
    """
    if not isinstance(state_dict, Mapping):
        check_state_dict(state_dict, fmt, framework="torch")  # raises, naming what was found
    state_dict = dict(state_dict)  # torch's shallow copy
    hooks = optimizer._optimizer_load_state_dict_pre_hooks
    for hook in hooks.values():
        result = hook(optimizer, state_dict)
        if result is not None:
            state_dict = result
    params = [
        [param_spec(p, names[j] if names else None) for j, p in enumerate(group["params"])]
        for group in optimizer.param_groups
        for names in [group.get("param_names")]
    ]
    check_state_dict(state_dict, fmt, params, framework="torch")
    optimizer._optimizer_load_state_dict_pre_hooks = type(hooks)()
    try:
        yield state_dict
    finally:
        optimizer._optimizer_load_state_dict_pre_hooks = hooks


# ------------------------------------------------------------- paddle.optimizer.ASGD's own format

#: An accumulator of paddle.optimizer.ASGD: ``<owner>_<d|y|m>_<k>``, ``owner`` the parameter's name (or
#: its master weight's, ``<name>_fp32_master_<j>``), optionally followed by ``_<optimizer name>``;
#: ``k`` is Paddle's unique-name counter.
_PADDLE_ACCUMULATOR = re.compile(r"^(?P<owner>.+)_(?P<key>[dym])_(?P<k>\d+)$")
_PADDLE_EXTRAS = ("master_weights", "LR_Scheduler")


def is_paddle_sag_format(state_dict: Any) -> bool:
    """Whether ``state_dict`` is ``paddle.optimizer.ASGD(...).state_dict()``'s name-keyed format:
    ``{"<param.name>_d_0": d, "<param.name>_y_0": y, "<param.name>_m_0": m, ...}`` plus optional
    ``master_weights`` (by parameter name) and ``LR_Scheduler`` (``{}`` before the first step)."""
    if not isinstance(state_dict, Mapping) or "state" in state_dict or "param_groups" in state_dict:
        return False
    return all(
        k in _PADDLE_EXTRAS or (isinstance(k, str) and _PADDLE_ACCUMULATOR.match(k)) for k in state_dict
    )


def from_paddle_sag_format(state_dict: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """``paddle.optimizer.ASGD``'s name-keyed state as SAG's positional ``{"state": {i: {...}}}``.

    Each accumulator is matched to the parameter whose ``name`` (``names[i]``, in optimizer order) it
    starts with (the longest such name; a master weight's accumulators to its parameter). The layouts
    agree: Paddle's ``d`` is the sum of the stored gradients, ``y`` is ``[batch_num, *shape]``, ``m``
    (an int64 ``[1]`` tensor) counts the finished steps, as here; ``master_weights[name]`` becomes
    ``master``. ``LR_Scheduler`` is kept. An accumulator of no parameter, a parameter with some but
    not all of ``d``/``y``/``m`` or with two of one kind raises :class:`StateDictError` naming it.
    """
    position = {name: i for i, name in enumerate(names)}
    by_length = sorted(position, key=len, reverse=True)
    state: dict[int, dict[str, Any]] = {}
    for key, value in state_dict.items():
        if key in _PADDLE_EXTRAS:
            continue
        match = _PADDLE_ACCUMULATOR.match(key)
        assert match is not None  # is_paddle_sag_format
        owner = match["owner"]
        name = next((n for n in by_length if owner == n or owner.startswith(n + "_")), None)
        if name is None:
            raise StateDictError(
                f"paddle.optimizer.ASGD state, key {key!r}: expected an accumulator of one of this "
                f"optimizer's parameters {list(names)[:6]}{' ...' if len(names) > 6 else ''}, found one of "
                f"{owner!r} (Paddle names parameters per process: build the model in a fresh process, in "
                "the same order, before loading)"
            )
        entry = state.setdefault(position[name], {})
        if match["key"] in entry:
            raise StateDictError(
                f"paddle.optimizer.ASGD state, key {key!r}: parameter {position[name]} {name!r} already "
                f"has a {match['key']!r} accumulator (two optimizers' states mixed?)"
            )
        entry[match["key"]] = value
    for i, entry in state.items():
        missing = [k for k in ("d", "y", "m") if k not in entry]
        if missing:
            raise StateDictError(
                f"paddle.optimizer.ASGD state of parameter {i} {names[i]!r}: missing accumulator(s) "
                f"{missing} (found {sorted(entry)})"
            )
    masters = state_dict.get("master_weights") or {}
    if not isinstance(masters, Mapping):
        expected = "a dict {parameter name: tensor}"
        raise _fail("paddle.optimizer.ASGD state", "master_weights", expected, masters)
    for name, master in masters.items():
        if name not in position:
            raise StateDictError(
                f"paddle.optimizer.ASGD state, key 'master_weights': expected names of this optimizer's "
                f"parameters, found {name!r}"
            )
        if position[name] in state:
            state[position[name]]["master"] = master
    out: dict[str, Any] = {"state": state}
    if state_dict.get("LR_Scheduler"):
        out["LR_Scheduler"] = state_dict["LR_Scheduler"]
    return out
