"""The one-pass CPU path of ``asgd_bridge.torch.SAG``: the C kernel ``sag_cpu.c`` (asgd_bridge._native).

The foreach path of ``SAG._step_group`` makes 5-7 passes over memory; the kernel makes one: each
element of ``p``, ``grad``, ``d`` and ``y[i]`` is read once and ``p``, ``d``, ``y[i]`` written once
(28 bytes per fp32 element). The gradient is prepared inside the kernel in the order of
:func:`asgd_bridge.reference.prepare_gradients`: negated (``maximize``), clipped (a value clip in the
kernel; a norm or global-norm clip by the scale ``SAG._clip_scales`` computed from the norms, read
by the kernel from its 0-d tensor, so nothing is read back to Python), regularised (L2 / L1). Then
:func:`asgd_bridge.reference.sag_step`.

What reaches the kernel (:func:`_reason`): plain strided CPU tensors (no subclass, no lazy neg/conj
bit), float32 or float64, ``p``, ``grad``, ``d`` and ``y`` of one dtype, contiguous, ``grad`` and
``d`` of p's element count, ``y`` of ``batch_num`` times it, no ``multi_precision`` master; a clip
scale a 1-element CPU tensor of that dtype. A group with any other tensor runs the foreach path
whole: silently for float16/bfloat16, a master weight or a device tensor (the foreach path is
theirs), after one ``RuntimeWarning`` per reason otherwise (a layout or state the kernel does not
take, no C compiler).
"""

from __future__ import annotations

from array import array
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

from .._native import sag as _kernel
from .._native.build import warn_once

__all__ = ["sag_group_"]

_PLAIN = (Tensor, torch.nn.Parameter)
_DTYPES = {torch.float32: "float32", torch.float64: "float64"}

#: Tests set this to run every group through the foreach path.
_FORCE_FOREACH = False

def _load() -> Any:
    return _kernel.LOADER.or_warn("torch-sag-no-kernel", "asgd_bridge.torch.SAG uses the foreach path")


def _reason(t: Any, what: str, dtype: torch.dtype, numel: int) -> str | None:
    """Why ``t`` (``what``) cannot reach the kernel as ``numel`` contiguous elements of ``dtype``."""
    if type(t) not in _PLAIN:
        return f"{what} is a {type(t).__name__}"
    if not t.is_cpu or t.layout is not torch.strided:
        return f"{what} is not a strided CPU tensor"
    if t.dtype is not dtype:
        return f"{what} has dtype {t.dtype}, not {dtype}"
    if t.numel() != numel:
        return f"{what} has {t.numel()} elements, not {numel}"
    if not t.is_contiguous() or t.is_neg() or t.is_conj():
        return f"{what} is not contiguous"
    return None


def sag_group_(group: dict[str, Any], params: list[Tensor], grads: list[Tensor], states: list[dict],
               scales: list[Tensor] | None) -> bool:  # fmt: skip
    """One SAG step of a group with the kernel if every tensor of it qualifies; ``True`` if done.

    ``params``/``grads``/``states`` are ``SAG._step_group``'s (states allocated), ``scales`` the
    per-gradient norm-clip scales of ``SAG._clip_scales`` (``None`` without a norm clip). Updates
    ``p``, ``d``, ``y[m % n]`` and ``m`` in place. ``False``: nothing was modified.
    """
    if _FORCE_FOREACH or not params:
        return False
    kernel = _load()
    if kernel is None:
        return False
    n = group["batch_num"]
    launches: dict[str, list[int]] = defaultdict(list)
    for j, (p, g, st) in enumerate(zip(params, grads, states, strict=True)):
        name = _DTYPES.get(p.dtype)
        if name is None or "master" in st or not p.is_cpu:
            return False  # float16/bfloat16, a master weight, a device: the foreach path's (documented)
        numel = p.numel()
        reason = (
            _reason(p, "the parameter", p.dtype, numel)
            or _reason(g, "the gradient", p.dtype, numel)
            or _reason(st["d"], "state 'd'", p.dtype, numel)
            or _reason(st["y"], "state 'y'", p.dtype, n * numel)
            or (_reason(scales[j], "the clip scale", p.dtype, 1) if scales is not None else None)
        )
        if reason is not None:
            warn_once(
                f"torch-sag-rest:{reason}",
                f"asgd_bridge.torch.SAG: a parameter group runs the foreach path, not the one-pass CPU "
                f"kernel: {reason} (said once per reason)",
                stacklevel=5,
            )
            return False
        launches[name].append(j)  # type: ignore[index]
    clip = group["grad_clip"]
    wd = group["weight_decay"]
    reg, coeff = ("l1", wd[1]) if isinstance(wd, tuple) else ("l2" if wd != 0 else None, wd)
    lr = group["lr"]
    for name, idx in launches.items():
        ps = [params[j] for j in idx]
        rows, steps = [], array("d")
        for j in idx:
            st, p = states[j], params[j]
            m = st["m"]
            rows.append(st["y"].data_ptr() + (m % n) * p.numel() * p.element_size())
            steps.append(-lr / min(m + 1, n))
        addresses = array(
            "Q",
            [p.data_ptr() for p in ps]
            + [grads[j].data_ptr() for j in idx]
            + [states[j]["d"].data_ptr() for j in idx]
            + rows
            + ([scales[j].data_ptr() for j in idx] if scales is not None else [0] * len(idx))
            + [p.numel() for p in ps],
        )
        _kernel.sag_step(
            kernel, name, addresses, steps, len(idx), scale_f64=name == "float64", maximize=group["maximize"],
            clip_value=(clip[1], clip[2]) if clip is not None and clip[0] == "value" else None,
            regularizer=reg, coeff=float(coeff), nthreads=torch.get_num_threads(),
        )  # fmt: skip
        # The kernel wrote through raw pointers: tell autograd, as in-place torch ops would.
        torch.autograd.graph.increment_version(ps)
        torch.autograd.graph.increment_version([states[j][k] for j in idx for k in ("d", "y")])
        for j in idx:
            states[j]["m"] += 1
    return True
