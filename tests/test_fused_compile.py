"""``fused=True`` under ``torch.compile``: the CPU kernel as the custom op ``asgd_bridge::fused_asgd_``.

Dynamo and inductor see one opaque, in-place operator (no graph break of ours); at run time the op
is the eager fused step, checks included, so the compiled step equals the eager one bit for bit.
The trust boundary under compile (a hand-edited state still raises) is in test_native_safety.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch._dynamo.utils import counters
from torch._inductor.compile_fx import compile_fx

from asgd_bridge.torch import ASGD
from asgd_bridge.torch._fused import fused_asgd_  # registers the op

OP = torch.ops.asgd_bridge.fused_asgd_.default
HP = {"lr": 0.05, "t0": 1, "lambd": 0.01, "weight_decay": 0.01}
#: torch.optim.Optimizer's own break (``_use_grad``: "we need to graph break to ensure that aot
#: respects the no_grad annotation"), which every torch optimizer compiled this way has.
TORCH_OWN_BREAK = "User-inserted graph break"


def op_args(device: str = "cpu", lr_tensor: bool = False) -> tuple[Any, ...]:
    """Arguments of one op call over an fp32, an fp64 and a bf16 tensor (the kernel's dtypes);
    ``lr_tensor``: the lr as a 0-d tensor (its float argument then unused)."""
    gen = torch.Generator().manual_seed(0)
    ps = [torch.randn(5, 3, generator=gen), torch.randn(4, generator=gen, dtype=torch.float64),
          torch.randn(7, generator=gen).bfloat16()]  # fmt: skip
    ps = [p.to(device) for p in ps]
    lr = (0.0, torch.tensor(0.05)) if lr_tensor else (0.05, None)
    return (
        ps, [torch.randn(p.shape, generator=gen).to(p) for p in ps], [torch.zeros_like(p) for p in ps],
        [torch.ones((), device=device) for _ in ps], [torch.tensor(0.05, device=device) for _ in ps],
        [torch.zeros((), device=device) for _ in ps], *lr, 0.01, 0.75, 1.0, 0.01, False, False, False,
    )  # fmt: skip


@pytest.mark.parametrize("lr_tensor", [False, True], ids=["lr-float", "lr-tensor"])
def test_op_passes_opcheck(lr_tensor: bool) -> None:
    # Schema (every mutated list declared, nothing else mutated), fake implementation, no autograd
    # surprise, and AOT dispatch with dynamic shapes: what torch.compile relies on.
    result = torch.library.opcheck(OP, op_args(lr_tensor=lr_tensor))
    assert set(result.values()) == {"SUCCESS"}, result


def test_op_refuses_lists_of_other_lengths() -> None:
    args = list(op_args())
    args[2] = args[2][:2]  # one ax missing
    with pytest.raises(ValueError, match=r"must have the same length, got \[3, 3, 2, 3, 3, 3\]"):
        OP(*args)
    assert args[5][0].item() == 0  # nothing stepped


def test_op_is_the_eager_fused_step() -> None:
    # The op (called eagerly) and the functional entry point give the same bits.

    a, b = op_args(lr_tensor=True), op_args()
    OP(*a)
    lr, _, lambd, alpha, t0, wd, maximize, imm, bottou = b[6:]
    fused_asgd_(*b[:6], lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=wd, maximize=maximize,
                immediate_lr=imm, bottou_average=bottou)  # fmt: skip
    for xs, ys in zip(a[:6], b[:6], strict=True):
        for x, y in zip(xs, ys, strict=True):
            assert torch.equal(x, y)
    assert a[5][0].item() == 1  # it stepped


def model_params(device: str = "cpu") -> list[torch.nn.Parameter]:
    """A tiny parameter set: fp32 matrix and vector, fp64, bf16, complex64 (each a kernel dtype)."""
    gen = torch.Generator().manual_seed(1)
    ts = [torch.randn(6, 4, generator=gen), torch.randn(6, generator=gen),
          torch.randn(3, generator=gen, dtype=torch.float64), torch.randn(5, generator=gen).bfloat16(),
          torch.randn(4, generator=gen, dtype=torch.complex64)]  # fmt: skip
    return [torch.nn.Parameter(t.to(device)) for t in ts]


def grads_for(params: list[torch.nn.Parameter], steps: int) -> list[list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(2)
    return [[torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]
            for _ in range(steps)]  # fmt: skip


class OpsSeen:
    """An inductor backend that records the operators of every graph it compiles."""

    def __init__(self) -> None:
        self.targets: list[Any] = []

    def __call__(self, gm: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        self.targets += [n.target for n in gm.graph.nodes if n.op == "call_function"]
        return compile_fx(gm, inputs)


def compiled_breaks(
    opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], grads: list[list[torch.Tensor]],
    backend: Any = "inductor",
) -> dict[str, int]:
    """Run ``torch.compile(opt.step)`` once per step of ``grads``; the graph breaks it counted."""
    torch._dynamo.reset()
    counters.clear()
    step = torch.compile(opt.step, backend=backend)
    for gs in grads:
        for p, g in zip(params, gs, strict=True):
            p.grad = g.clone()
        step()
    return dict(counters["graph_break"])


@pytest.fixture
def no_fallback() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a fallback warning fails the test
        yield


def test_compiled_step_has_no_graph_break_of_ours_and_equals_eager(no_fallback: None) -> None:
    # Before: 12 graph breaks (ctypes call, array, data_ptr, is_neg, a lock) and 3 graphs.
    steps = 4
    eager, compiled = model_params(), model_params()
    grads = grads_for(eager, steps)
    a, b = ASGD(eager, fused=True, **HP), ASGD(compiled, fused=True, **HP)
    for gs in grads:
        for p, g in zip(eager, gs, strict=True):
            p.grad = g.clone()
        a.step()
    seen = OpsSeen()
    ours = compiled_breaks(b, compiled, grads, backend=seen)
    assert all(TORCH_OWN_BREAK in reason for reason in ours), ours
    assert sum(ours.values()) <= 1, ours
    # One op call takes every real tensor (the complex one is traced, see _fused._traced_step).
    assert [t for t in seen.targets if "asgd_bridge" in str(t)] == [OP.overloadpacket]
    # The compiled step is the kernel at run time: the same bits as the eager fused step. Complex
    # is traced as torch ops instead (see _fused._traced_step): the kernel's tolerance vs torch.
    for x, y in zip(eager, compiled, strict=True):
        for key in ("step", "eta", "mu"):
            assert torch.equal(a.state[x][key], b.state[y][key]), key
        if x.is_complex():
            torch.testing.assert_close(y, x, rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(b.state[y]["ax"], a.state[x]["ax"], rtol=1e-6, atol=1e-7)
        else:
            assert torch.equal(x, y), (x, y)
            assert torch.equal(a.state[x]["ax"], b.state[y]["ax"])
    assert b.state[compiled[0]]["step"].item() == steps

    # torch's own fused optimizers, compiled the same way, break at least as often.
    torch_fused = (torch.optim.SGD, {"lr": 0.1, "fused": True}), (torch.optim.Adam, {"fused": True})
    for cls, kw in torch_fused:
        ps = model_params()[:2]  # torch's fused CPU kernels take real float tensors only
        theirs = compiled_breaks(cls(ps, **kw), ps, grads_for(ps, 1))
        assert sum(ours.values()) <= sum(theirs.values()), (ours, theirs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_compiled_step_and_op() -> None:
    # On CUDA the op is the eager device path (the per-tensor update compiled by torch.compile);
    # inside a compiled step the same update is traced into the user's graph.
    a = op_args("cuda")
    b = tuple([t.clone() for t in x] if isinstance(x, list) else x for x in a)
    OP(*a)
    assert a[5][0].item() == 1

    lr, _, lambd, alpha, t0, wd, maximize, imm, bottou = b[6:]
    fused_asgd_(*b[:6], lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=wd, maximize=maximize,
                immediate_lr=imm, bottou_average=bottou)  # fmt: skip
    for xs, ys in zip(a[:6], b[:6], strict=True):
        for x, y in zip(xs, ys, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    assert set(torch.library.opcheck(OP, op_args("cuda")).values()) == {"SUCCESS"}

    eager, compiled = model_params("cuda"), model_params("cuda")
    grads = grads_for(eager, 3)
    e, c = ASGD(eager, fused=True, **HP), ASGD(compiled, fused=True, **HP)
    for gs in grads:
        for p, g in zip(eager, gs, strict=True):
            p.grad = g.clone()
        e.step()
    ours = compiled_breaks(c, compiled, grads)
    ps = model_params("cuda")[:2]
    theirs = compiled_breaks(torch.optim.Adam(ps, fused=True), ps, grads_for(ps, 1))
    assert sum(ours.values()) <= sum(theirs.values()), (ours, theirs)
    for x, y in zip(eager, compiled, strict=True):
        tol = {"rtol": 1e-2, "atol": 1e-2} if x.dtype == torch.bfloat16 else {"rtol": 1e-6, "atol": 1e-6}
        torch.testing.assert_close(y, x, **tol)
        torch.testing.assert_close(c.state[y]["ax"], e.state[x]["ax"], **tol)
        assert torch.equal(c.state[y]["step"], e.state[x]["step"])
