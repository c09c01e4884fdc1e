"""Optimizer checkpoints across frameworks: averaged SGD (torch.optim.ASGD <-> asgd_bridge.paddle.ASGD)
and SAG (asgd_bridge.torch.SAG <-> asgd_bridge.paddle.SAG), with transposed state where layouts differ.

Both sides use torch's layout ``{"state": {i: {...}}, "param_groups": [{..., "params": [i]}]}``; a
conversion renames nothing, it changes tensor types, group keys, and the layout of transposed weights.

Regularisers and clipping of averaged SGD. ``asgd_bridge.paddle.ASGD`` records a group's
``L2Decay``/``L1Decay`` as ``"regularizer": ("l2", c)`` / ``("l1", c)`` (``None`` without one; its
``weight_decay`` is torch's float) and its ``grad_clip`` as a spec. Towards torch:

* an L2 regulariser becomes torch's ``weight_decay`` (added to the float one). This is exact: Paddle's
  ASGD adds ``c * p`` to the gradient after the ``maximize`` negation, as torch adds its weight decay;
* an L1 (or custom) regulariser and a gradient clip have no ``torch.optim.ASGD`` equivalent: the
  conversion raises :class:`CheckpointError` naming the group, unless ``drop_unsupported=True``
  (CLI ``--drop-unsupported``) drops them with a warning -- the converted run then differs.

Towards Paddle, torch's ``weight_decay`` stays the float and ``"regularizer"`` is ``None``.
A regulariser set on a parameter itself (``paddle.ParamAttr(regularizer=...)``) is not part of an
optimizer state dict, so no conversion sees it: give the torch side an equivalent by hand.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from .specs import is_custom, parse_grad_clip, parse_regularizer, parse_weight_decay, weight_decay_value
from .state_format import ASGD_FORMAT, SAG_FORMAT, StateDictError, check_state_dict, is_paddle_sag_format

__all__ = [
    "CheckpointError",
    "convert_state_dict",
    "detect_kind",
    "parameter_names",
    "target_layout",
]

Framework = Literal["torch", "paddle"]
Kind = Literal["asgd", "sag"]

#: Group keys of averaged SGD that both sides share.
_ASGD_KEYS = ("lr", "lambd", "alpha", "t0", "weight_decay", "maximize")
#: asgd_bridge's documented fixes (absent from torch.optim.ASGD groups: default False).
_ASGD_FIXES = ("immediate_lr", "bottou_average")
#: Group keys of SAG (both classes).
_SAG_KEYS = ("lr", "batch_num", "weight_decay", "grad_clip", "maximize", "multi_precision")
#: torch-only group keys: dropped towards Paddle, given torch's defaults towards torch.
_TORCH_ONLY = {"foreach": None, "differentiable": False, "capturable": False}


class CheckpointError(StateDictError):
    """A state dict that cannot be converted (format, parameter count or shapes); a ``ValueError``."""


# --------------------------------------------------------------------------- tensors


def _dtype_name(x: Any) -> str:
    return str(getattr(x, "dtype", "float32")).replace("torch.", "").replace("paddle.", "")


def _to_numpy(x: Any) -> np.ndarray:
    """A torch tensor, Paddle tensor, NumPy array or number as a NumPy array (bfloat16 as float32)."""
    if isinstance(x, np.ndarray):
        return x
    mod = type(x).__module__
    if mod.startswith("torch"):
        t = x.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    if hasattr(x, "numpy"):
        if _dtype_name(x) == "bfloat16":
            x = x.astype("float32")
        return np.asarray(x.numpy())
    return np.asarray(x)


def _make(arr: np.ndarray, dtype: str, to: Framework) -> Any:
    arr = np.asarray(arr, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
    if to == "torch":
        import torch

        return torch.from_numpy(arr.copy()).to(getattr(torch, dtype))
    import paddle

    t = paddle.to_tensor(arr, place=paddle.CPUPlace())
    if arr.ndim == 0 and t.ndim != 0:  # to_tensor makes 0-d arrays [1]
        t = t.reshape([])
    return t if _dtype_name(t) == dtype else t.astype(dtype)


# --------------------------------------------------------------------------- target layout


_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked", "_mean", "_variance")


def target_layout(target: Any) -> tuple[list[tuple[int, ...]], set[int]]:
    """Shapes of the target optimizer's parameters, in order, and the positions known to be
    ``Linear`` weights (whose layout differs between torch ``[out, in]`` and Paddle ``[in, out]``).

    ``target`` may be a ``torch.nn.Module`` or ``paddle.nn.Layer`` (its ``parameters()``; Linear
    weights recognised), an iterable of tensors, a list of shapes, or a state dict of the target
    model (tensors in order; buffers such as ``running_mean`` / ``_variance`` skipped).
    """
    linear: set[int] = set()
    if hasattr(target, "named_sublayers") or hasattr(target, "named_modules"):
        params = list(target.parameters())
        ids = {id(p): i for i, p in enumerate(params)}
        modules = (
            target.named_sublayers(include_self=True)
            if hasattr(target, "named_sublayers")
            else (target.named_modules())
        )
        for _, module in modules:
            if type(module).__name__ == "Linear":
                weight = getattr(module, "weight", None)
                if weight is not None and id(weight) in ids:
                    linear.add(ids[id(weight)])
        return [tuple(int(s) for s in p.shape) for p in params], linear
    if isinstance(target, Mapping):
        items = [v for k, v in target.items() if not str(k).endswith(_BUFFER_SUFFIXES)]
        return [tuple(int(s) for s in v.shape) for v in items], linear
    shapes = []
    for item in target:
        shape = item.shape if hasattr(item, "shape") else item
        shapes.append(tuple(int(s) for s in shape))
    return shapes, linear


def parameter_names(model: Any) -> list[str]:
    """Parameter names in optimizer order: a ``torch.nn.Module`` / ``paddle.nn.Layer``
    (``named_parameters()``), a model state dict (keys, buffers skipped) or a list of names."""
    if hasattr(model, "named_parameters"):
        return [name for name, _ in model.named_parameters()]
    if isinstance(model, Mapping):
        return [str(k) for k in model if not str(k).endswith(_BUFFER_SUFFIXES)]
    names = list(model)
    if not all(isinstance(n, str) for n in names):
        raise CheckpointError("parameter names must be a model, a model state dict or a list of str")
    return names


def _index_map_from_names(
    name_map: Mapping[str, str], source: Any, target: Any, n: int
) -> tuple[dict[int, int], list[str]]:
    """``name_map`` (source name -> target name; unlisted names map to themselves) as positions."""
    if source is None or target is None:
        raise CheckpointError("name_map needs source= and target= (models, model state dicts or name lists)")
    src, dst = parameter_names(source), parameter_names(target)
    for side, names in (("source", src), ("target", dst)):
        if len(names) != n:
            raise CheckpointError(f"the state dict has {n} parameters but the {side} names {len(names)}")
    unknown = sorted(set(name_map) - set(src))
    if unknown:
        raise CheckpointError(f"name_map names source parameter(s) {unknown} that the source does not have")
    where = {name: i for i, name in enumerate(dst)}
    imap = {}
    for j, name in enumerate(src):
        to = name_map.get(name, name)
        if to not in where:
            raise CheckpointError(
                f"parameter {j} ({name!r}) maps to {to!r}, which the target does not have "
                f"(target parameters: {dst[:6]}{' ...' if len(dst) > 6 else ''})"
            )
        imap[j] = where[to]
    return imap, dst


def _check_bijection(imap: Mapping[int, int], n: int) -> None:
    targets = [imap.get(j, j) for j in range(n)]
    bad = sorted({t for t in targets if not 0 <= t < n})
    if bad:
        raise CheckpointError(f"index_map sends parameters to {bad}, outside 0..{n - 1}")
    seen: dict[int, int] = {}
    for j, t in enumerate(targets):
        if t in seen:
            raise CheckpointError(
                f"index_map/name_map sends parameters {seen[t]} and {j} to the same target parameter {t}"
            )
        seen[t] = j


# --------------------------------------------------------------------------- format detection


def detect_kind(state_dict: Any) -> Kind:
    """``"asgd"`` (averaged SGD: ``ax``/``eta``/``mu``, ``lambd``) or ``"sag"`` (``d``/``y``/``m``,
    ``batch_num``); anything else raises :class:`CheckpointError` saying what was expected."""
    expected = (
        "expected an optimizer state dict {'state': {i: {...}}, 'param_groups': [...]} of "
        "torch.optim.ASGD / asgd_bridge.torch.ASGD / asgd_bridge.paddle.ASGD (state 'step', 'eta', 'mu', "
        "'ax') or asgd_bridge.torch.SAG / asgd_bridge.paddle.SAG (state 'd', 'y', 'm')"
    )
    if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
        keys = list(state_dict)[:5] if isinstance(state_dict, Mapping) else type(state_dict).__name__
        hint = ""
        if is_paddle_sag_format(state_dict) and state_dict:
            hint = (
                " (this is paddle.optimizer.ASGD's name-keyed SAG state: load it into "
                "asgd_bridge.paddle.SAG(...).set_state_dict, which matches it to the parameters by name, "
                "then convert that optimizer's state_dict())"
            )
        raise CheckpointError(f"unknown optimizer state format, got keys {keys}{hint}; {expected}")
    groups = state_dict["param_groups"]
    if not isinstance(groups, Sequence) or not groups:
        raise CheckpointError(f"'param_groups' is empty or not a list; {expected}")
    for index, group in enumerate(groups):
        if not isinstance(group, Mapping):
            raise CheckpointError(f"param_groups[{index}]: expected a dict, found {type(group).__name__}")
    if all("lambd" in g for g in groups):
        return "asgd"
    if all("batch_num" in g for g in groups):
        return "sag"
    raise CheckpointError(f"param_groups carry neither 'lambd' (ASGD) nor 'batch_num' (SAG); {expected}")


# --------------------------------------------------------------------------- conversion


def _param_shape(kind: Kind, entry: Mapping[str, Any]) -> tuple[int, ...] | None:
    ref = entry.get("ax") if kind == "asgd" else entry.get("d")
    return None if ref is None else tuple(int(s) for s in ref.shape)


def _plan(
    source_shape: tuple[int, ...] | None,
    target_shape: tuple[int, ...] | None,
    index: int,
    is_linear: bool,
    label: str = "",
) -> bool:
    """Whether parameter ``index``'s state must be transposed; raises if the shapes do not fit."""
    if source_shape is None or target_shape is None:
        return False
    if (
        len(source_shape) == 2
        and source_shape[::-1] == target_shape
        and (source_shape != target_shape or is_linear)
    ):
        return True
    if source_shape == target_shape:
        if len(source_shape) == 2 and source_shape[0] == source_shape[1] and not is_linear:
            warnings.warn(
                f"parameter {index}: square shape {list(source_shape)} kept as is; if it is a Linear "
                "weight, pass the target model (or transpose={index}) so its state is transposed",
                stacklevel=3,
            )
        return False
    raise CheckpointError(
        f"parameter {index}{label}: state has shape {list(source_shape)} but the target parameter has shape "
        f"{list(target_shape)} (neither equal nor transposed)"
    )


def convert_state_dict(
    state_dict: Mapping[str, Any],
    *,
    to: Framework,
    target: Any = None,
    index_map: Mapping[int, int] | None = None,
    transpose: Iterable[int] | None = None,
    name_map: Mapping[str, str] | None = None,
    source: Any = None,
    drop_unsupported: bool = False,
) -> dict[str, Any]:
    """Convert an optimizer state dict to the other framework's class of the same algorithm.

    Args:
        state_dict: from ``optimizer.state_dict()`` (or ``torch.load`` / ``paddle.load`` of one):
            torch.optim.ASGD, asgd_bridge.torch.ASGD or asgd_bridge.paddle.ASGD (averaged SGD), or
            asgd_bridge.torch.SAG / asgd_bridge.paddle.SAG.
        to: ``"paddle"`` (tensors become Paddle tensors, torch-only group keys are dropped) or
            ``"torch"`` (torch tensors, torch's group keys added with their defaults).
        target: the target optimizer's parameters, for shapes (see :func:`target_layout`). State
            whose parameter shape is the transpose of the target's (2-D) is transposed; a mismatch
            raises :class:`CheckpointError` naming the parameter and both shapes; a count mismatch
            raises naming both counts. Without ``target`` nothing is transposed or checked.
        index_map: source parameter index -> target index (default: same order); it must be one to
            one, else :class:`CheckpointError`.
        transpose: target indices to transpose regardless of shapes (square Linear weights given as
            shapes).
        name_map: source parameter name -> target parameter name (names not listed map to
            themselves), instead of ``index_map``; needs ``source`` and ``target`` to name the
            parameters (see :func:`parameter_names`), e.g.
            ``name_map={"encoder.weight": "embedding.weight"}``.
        source: the source model (or its state dict, or its parameter names in order), for
            ``name_map`` and for naming parameters in errors.
        drop_unsupported: towards torch, drop what torch.optim.ASGD cannot express (an L1 or custom
            regulariser, a gradient clip of asgd_bridge.paddle.ASGD) with a warning, instead of
            raising :class:`CheckpointError` (see the module docstring).

    Returns:
        A new state dict in the target framework's format (the input is not modified).
    """
    if to not in ("torch", "paddle"):
        raise CheckpointError(f"Invalid to value: {to!r} (expected 'torch' or 'paddle')")
    kind = detect_kind(state_dict)
    try:  # the source as its own format defines it, before anything is converted
        check_state_dict(state_dict, ASGD_FORMAT if kind == "asgd" else SAG_FORMAT)
    except CheckpointError:
        raise
    except StateDictError as error:
        raise CheckpointError(f"source state dict: {error}") from None
    groups = state_dict["param_groups"]
    n_source = sum(len(g["params"]) for g in groups)
    shapes: list[tuple[int, ...]] | None = None
    linear: set[int] = set(transpose or ())
    names_only = isinstance(target, Sequence) and bool(target) and all(isinstance(t, str) for t in target)
    if target is not None and not names_only:
        shapes, known = target_layout(target)
        linear |= known
        if len(shapes) != n_source:
            raise CheckpointError(
                f"the state dict has {n_source} parameters but the target has {len(shapes)}"
            )
    order = [i for g in groups for i in g["params"]]
    position = {int(i): j for j, i in enumerate(order)}
    if name_map is not None and index_map is not None:
        raise CheckpointError("give index_map or name_map, not both")
    target_names: list[str] | None = None
    if name_map is not None:
        imap, target_names = _index_map_from_names(name_map, source, target, n_source)
    else:
        imap = {int(k): int(v) for k, v in (index_map or {}).items()}
    _check_bijection(imap, n_source)
    if target_names is None and target is not None:
        try:
            target_names = parameter_names(target)
        except CheckpointError:
            target_names = None
    if target_names is not None and len(target_names) != n_source:
        target_names = None

    def new_index(i: Any) -> int:
        j = position[int(i)]
        return imap.get(j, j)

    state: dict[int, dict[str, Any]] = {}
    for i, entry in state_dict["state"].items():
        if not entry:
            continue  # looked up, never stepped: no state (state_format)
        j = new_index(i)
        src_shape = _param_shape(kind, entry)
        flip = (
            j in linear
            if src_shape and len(src_shape) == 2 and shapes is None
            else _plan(
                src_shape,
                shapes[j] if shapes is not None else None,
                j,
                j in linear,
                f" ({target_names[j]!r})" if target_names else "",
            )
        )
        state[j] = _convert_entry(kind, entry, flip, to)
    new_groups = []
    if not isinstance(drop_unsupported, bool):
        raise CheckpointError(
            f"Invalid drop_unsupported value: {drop_unsupported!r} (expected True or False)"
        )
    for gi, g in enumerate(groups):
        out = _convert_group(kind, g, to, gi, drop_unsupported)
        # target positions, in the target's order: a loader pairs them with its group's parameters
        out["params"] = sorted(new_index(i) for i in g["params"])
        new_groups.append(out)
    result: dict[str, Any] = {"state": dict(sorted(state.items())), "param_groups": new_groups}

    masters = state_dict.get("master_weights")
    if masters:
        if kind == "asgd" and to == "paddle":
            result["master_weights"] = {
                new_index(i): _convert_tensor(v, new_index(i) in linear and v.ndim == 2, to)
                for i, v in masters.items()
            }
        else:
            warnings.warn("master_weights dropped: torch's ASGD keeps no fp32 master copy", stacklevel=2)
    if "LR_Scheduler" in state_dict:
        if to == "paddle":
            result["LR_Scheduler"] = state_dict["LR_Scheduler"]
        else:
            warnings.warn(
                "LR_Scheduler dropped: torch keeps lr schedulers out of the optimizer state; the groups' "
                "'lr' carries the current learning rate",
                stacklevel=2,
            )
    return result


def _convert_tensor(x: Any, flip: bool, to: Framework, *, stacked: bool = False) -> Any:
    dtype = _dtype_name(x)
    arr = _to_numpy(x)
    if flip:
        arr = np.swapaxes(arr, -1, -2) if stacked or arr.ndim == 2 else arr
    return _make(arr, dtype, to)


def _convert_entry(kind: Kind, entry: Mapping[str, Any], flip: bool, to: Framework) -> dict[str, Any]:
    if kind == "asgd":
        missing = [k for k in ("step", "eta", "mu", "ax") if k not in entry]
        if missing:
            raise CheckpointError(f"ASGD state entry lacks {missing} (has {sorted(entry)})")
        out = {}
        for key in ("step", "eta", "mu"):
            value = entry[key]
            dtype = _dtype_name(value) if hasattr(value, "dtype") else "float32"
            if dtype not in ("float32", "float64"):
                dtype = "float32"
            out[key] = _make(np.asarray(_to_numpy(value), dtype=dtype).reshape(()), dtype, to)
        out["ax"] = _convert_tensor(entry["ax"], flip, to)
        return out
    missing = [k for k in ("d", "y", "m") if k not in entry]
    if missing:
        raise CheckpointError(f"SAG state entry lacks {missing} (has {sorted(entry)})")
    out = {
        "d": _convert_tensor(entry["d"], flip, to),
        "y": _convert_tensor(entry["y"], flip, to, stacked=True),
        "m": int(_to_numpy(entry["m"]).reshape(-1)[0]) if hasattr(entry["m"], "shape") else int(entry["m"]),
    }
    if "master" in entry:
        out["master"] = _convert_tensor(entry["master"], flip, to)
    return out


def _spec(value: Any) -> tuple | None:
    """A saved spec (a tuple, or a list after some loaders) as a tuple of plain values."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return tuple(float(v) if hasattr(v, "shape") else v for v in value)
    raise CheckpointError(f"expected None or a tuple spec, got {value!r}")


def _asgd_decay_towards_torch(
    group: Mapping[str, Any], weight_decay: float, index: int, drop_unsupported: bool
) -> float:
    """torch's weight_decay for an asgd_bridge.paddle.ASGD group: its float plus an L2 regulariser;
    an L1/custom regulariser or a clip raises (or, with ``drop_unsupported``, warns and is dropped)."""
    reg = parse_regularizer(_spec(group.get("regularizer")))
    clip = _spec(group.get("grad_clip"))
    problems = []
    if reg is not None:
        if reg[0] == "l2":
            weight_decay += float(reg[1])
        elif reg[0] == "l1":
            problems.append(
                f"an L1Decay({reg[1]}) regulariser (torch.optim.ASGD's weight_decay is L2 only: "
                "adds weight_decay * p, not weight_decay * sign(p))"
            )
        else:
            problems.append(f"a regulariser {reg!r} that torch.optim.ASGD cannot express")
    if clip is not None:
        problems.append(
            f"gradient clipping {clip!r} (torch.optim.ASGD has no clipping; clip the gradients "
            "before step(), e.g. with torch.nn.utils.clip_grad_norm_)"
        )
    if problems:
        what = "; ".join(problems)
        if not drop_unsupported:
            raise CheckpointError(
                f"param group {index} has {what}: the converted optimizer would train differently. "
                "Pass drop_unsupported=True (CLI --drop-unsupported) to drop it anyway"
            )
        warnings.warn(f"param group {index}: dropped {what}", stacklevel=4)
    return weight_decay


def _convert_group(
    kind: Kind, group: Mapping[str, Any], to: Framework, index: int = 0, drop_unsupported: bool = False
) -> dict[str, Any]:
    if kind == "sag":
        out = {k: group[k] for k in _SAG_KEYS if k in group}
        if "grad_clip" in out:
            out["grad_clip"] = parse_grad_clip(_spec(out["grad_clip"]))
        if "weight_decay" in out:
            wd = out["weight_decay"]
            wd = _spec(wd) if isinstance(wd, (tuple, list)) else wd
            out["weight_decay"] = weight_decay_value(*parse_weight_decay(wd))
        return out
    missing = [k for k in _ASGD_KEYS if k not in group and k != "maximize"]
    if missing:
        raise CheckpointError(f"ASGD param group lacks {missing} (has {sorted(group)})")
    out = {k: group.get(k, False) for k in _ASGD_KEYS}
    for k in ("lr", "lambd", "alpha", "t0", "weight_decay"):
        out[k] = float(_to_numpy(out[k])) if hasattr(out[k], "shape") else float(out[k])
    out["maximize"] = bool(out["maximize"])
    for k in _ASGD_FIXES:
        out[k] = bool(group.get(k, False))
    if to == "paddle":
        # the state dict defines the group's decay: torch's float, or a Paddle source's regulariser
        out["regularizer"] = parse_regularizer(_spec(group.get("regularizer")))
        clip = _spec(group.get("grad_clip"))
        out["grad_clip"] = clip if clip is None or is_custom(clip) else parse_grad_clip(clip)
    if to == "torch":
        out["weight_decay"] = _asgd_decay_towards_torch(group, out["weight_decay"], index, drop_unsupported)
        out.update(_TORCH_ONLY)
        out["fused"] = group.get("fused")
        if any(out[k] for k in _ASGD_FIXES):
            warnings.warn(
                "immediate_lr/bottou_average are set: only asgd_bridge.torch.ASGD honours them "
                "(torch.optim.ASGD ignores these keys)",
                stacklevel=3,
            )
    return out
