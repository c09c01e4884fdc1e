"""The rows of the benchmark: which optimizer, on which framework's tensors, compared with what.

A *family* is a set of rows timed together (interleaved, paired by repeat) on shared parameters;
its first row is the baseline its ratios are taken against. Every family also times the roofline
probes in the same interleaved loop: STREAM-like kernels in plain C with OpenMP (benchmarks/stream.c:
copy, scale, add, triad, the read-modify-write updates the roofline is taken from, and the fused
kernel's own pattern as a sanity check) and, as extra rows, the earlier torch-op probes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Bytes per fp32 element that one step must move at least (read + write), by algorithm:
#: averaged SGD reads p, grad, ax and writes p, ax; SAG reads p, grad, d, y[i] and writes p, d, y[i];
#: SGD reads p, grad and writes p. Scaled by element size for other dtypes.
FLOOR_BYTES_FP32 = {"asgd": 20, "sag": 28, "sgd": 12}

Step = Callable[[], None]


@dataclass
class Workload:
    """Parameter shapes and dtype of one measurement, with framework tensors made on demand."""

    layout: str  # "one" | "split" | "many-small"
    shapes: list[tuple[int, ...]]
    dtype: str  # "float32" | "bfloat16"
    seed: int = 0
    _torch: list | None = None
    _paddle: list | None = None
    _probe: tuple | None = None

    @property
    def numel(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.shapes))

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else 4

    def torch_params(self) -> list:
        """Leaf tensors with ``.grad`` set, shared by every torch row of the family."""
        if self._torch is None:
            import torch

            gen = torch.Generator().manual_seed(self.seed)
            dt = getattr(torch, self.dtype)
            ps = []
            for s in self.shapes:
                p = torch.randn(s, generator=gen).to(dt).requires_grad_()
                p.grad = (torch.randn(s, generator=gen) * 1e-3).to(dt)
                ps.append(p)
            self._torch = ps
        return self._torch

    def paddle_params(self) -> list:
        """Paddle leaf tensors with gradients (one backward pass), shared by the paddle rows."""
        if self._paddle is None:
            import paddle

            rng = np.random.default_rng(self.seed)
            ps = []
            for s in self.shapes:
                p = paddle.to_tensor(rng.standard_normal(s, dtype=np.float32)).astype(self.dtype)
                p.stop_gradient = False
                ps.append(p)
            loss = None
            for p in ps:
                term = (p.astype("float32") * 1e-3).sum()
                loss = term if loss is None else loss + term
            loss.backward()
            self._paddle = ps
        return self._paddle

    @property
    def probe_numel(self) -> int:
        """fp32 elements of each probe buffer: the bytes of one copy of the parameters."""
        return self.numel * self.itemsize // 4

    def probe_buffers(self) -> tuple:
        """Three fp32 buffers shared by every probe of this workload (``b`` is only ever read), as
        consecutive thirds of one allocation (:meth:`probe_storage`)."""
        n = self.probe_numel
        whole = self.probe_storage()
        return whole[:n], whole[n : 2 * n], whole[2 * n :]

    def probe_storage(self) -> Any:
        """One fp32 allocation of three parameter copies: the ASGD step's working set (p, grad, ax).

        The roofline probes update1 / update2 stream all of it (one array of 3n, two of 1.5n), so
        their working set is the optimizer's and a cache larger than one copy cannot flatter them.
        """
        if self._probe is None:
            import torch

            gen = torch.Generator().manual_seed(self.seed + 1)
            self._probe = torch.rand(3 * self.probe_numel, generator=gen) + 0.5
        return self._probe

    def release(self) -> None:
        self._torch = self._paddle = self._probe = None


@dataclass
class Row:
    """One optimizer (or roofline probe) as timed by the benchmark."""

    name: str
    framework: str  # "torch" | "paddle" | "probe"
    algo: str  # key of FLOOR_BYTES_FP32, or "probe"
    make: Callable[[Workload], tuple[Step, Any]]  # -> (step, optimizer or None)
    import_check: Callable[[], None] = lambda: None
    max_numel: int | None = None
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- torch rows


def _torch_opt(factory: Callable[[list], Any]) -> Callable[[Workload], tuple[Step, Any]]:
    def make(w: Workload) -> tuple[Step, Any]:
        opt = factory(w.torch_params())
        return opt.step, opt

    return make


def _torch_asgd(**kw: Any) -> Callable[[list], Any]:
    def f(ps: list) -> Any:
        import torch

        return torch.optim.ASGD(ps, lr=1e-2, t0=0, **kw)

    return f


def _bridge_torch_asgd(**kw: Any) -> Callable[[list], Any]:
    def f(ps: list) -> Any:
        from asgd_bridge.torch import ASGD

        return ASGD(ps, lr=1e-2, t0=0, **kw)

    return f


def _bridge_torch_sag(batch_num: int) -> Callable[[list], Any]:
    def f(ps: list) -> Any:
        from asgd_bridge.torch import SAG

        return SAG(ps, lr=1e-3, batch_num=batch_num, check_memory=False)

    return f


def _bridge_torch_ntasgd(ps: list) -> Any:
    """NT-ASGD after its switch (the averaged phase, ASGD's cost; before it, it is torch's SGD)."""
    from asgd_bridge.torch import NTASGD

    opt = NTASGD(ps, lr=1e-2, fused=True)
    opt.start_averaging()
    return opt


def _check_torch_asgd() -> None:
    from asgd_bridge.torch import ASGD  # noqa: F401


def _check_torch_sag() -> None:
    from asgd_bridge.torch import SAG  # noqa: F401


# --------------------------------------------------------------------------- paddle rows


def _paddle_opt(factory: Callable[[list], Any]) -> Callable[[Workload], tuple[Step, Any]]:
    def make(w: Workload) -> tuple[Step, Any]:
        opt = factory(w.paddle_params())
        return opt.step, opt

    return make


def _paddle_sag(batch_num: int) -> Callable[[list], Any]:
    def f(ps: list) -> Any:
        import paddle

        return paddle.optimizer.ASGD(learning_rate=1e-3, batch_num=batch_num, parameters=ps)

    return f


def _paddle_sgd(ps: list) -> Any:
    import paddle

    return paddle.optimizer.SGD(learning_rate=1e-3, parameters=ps)


def _bridge_paddle_asgd(ps: list) -> Any:
    from asgd_bridge.paddle import ASGD

    return ASGD(learning_rate=1e-2, t0=0, parameters=ps)


def _bridge_paddle_asgd_ops(w: Workload) -> tuple[Step, Any]:
    """asgd_bridge.paddle.ASGD on Paddle's ops (four passes), the path before the kernel."""
    from asgd_bridge.paddle import _fused

    opt = _bridge_paddle_asgd(w.paddle_params())

    def step() -> None:
        _fused._FORCE_FALLBACK = True
        try:
            opt.step()
        finally:
            _fused._FORCE_FALLBACK = False

    return step, opt


def _paddle_kernel_alone(w: Workload) -> tuple[Step, Any]:
    """The one launch of ``asgd_bridge.paddle.ASGD``'s step without its Python side: the C kernel
    on the optimizer's own tensors (p, grad, ax) with fixed scalars. The difference to the
    optimizer's row is what the per-parameter checks, schedule and queueing cost."""
    from array import array

    from asgd_bridge._native import asgd as native
    from asgd_bridge.paddle import _fused

    ps = w.paddle_params()
    opt = _bridge_paddle_asgd(ps)
    opt.step()  # creates the state (ax)
    k, axs = len(ps), [opt.state[p]["ax"] for p in ps]
    tensors = (ps, [p.grad for p in ps], axs)
    addresses = array("Q", [t.data_ptr() for role in tensors for t in role] + [0] * k)
    addresses.extend(int(np.prod(p.shape)) for p in ps)
    scalars = array("d", [1.0] * k + [1e-6] * k + [0.5] * k)
    kernel, threads = native.LOADER(), _fused.kernel_threads()
    grad_f32 = ps[0].grad.dtype != ps[0].dtype

    def step() -> None:
        native.asgd_update(kernel, w.dtype, addresses, scalars, k, grad_f32=grad_f32, master=False,
                           nthreads=threads)  # fmt: skip

    step.tensors = tensors  # type: ignore[attr-defined]  # alive as long as the step
    return step, opt


def _bridge_paddle_sag(batch_num: int) -> Callable[[list], Any]:
    def f(ps: list) -> Any:
        from asgd_bridge.paddle import SAG

        return SAG(learning_rate=1e-3, batch_num=batch_num, parameters=ps, check_memory=False)

    return f


def _bridge_paddle_ntasgd(ps: list) -> Any:
    """NT-ASGD after its switch (the averaged phase: asgd_bridge.paddle.ASGD's kernel path)."""
    from asgd_bridge.paddle import NTASGD

    opt = NTASGD(learning_rate=1e-2, parameters=ps)
    opt.start_averaging()
    return opt


def _check_paddle_asgd() -> None:
    from asgd_bridge.paddle import ASGD  # noqa: F401


def _check_paddle_sag() -> None:
    from asgd_bridge.paddle import SAG  # noqa: F401


# --------------------------------------------------------------------------- roofline probes


@dataclass(frozen=True)
class ProbeSpec:
    """Bytes per element one pass of a probe moves, counted two ways.

    ``stream_bytes`` is STREAM's convention (the arrays named in the source: reads + writes).
    ``actual_bytes`` adds the read-for-ownership of a line that is only written (write-allocate:
    with ordinary stores the CPU reads the line before overwriting it). In a read-modify-write
    (``rmw``) probe every written line was read in the same pass, so both counts agree.
    ``roofline``: the probe's actual bandwidth is a candidate for the run's roofline (the C
    read-modify-write probes, which have the optimizer's access pattern without its arithmetic).
    """

    impl: str  # "C" | "torch"
    kind: str
    stream_bytes: int
    actual_bytes: int
    rmw: bool
    roofline: bool = False
    code: int = -1  # stream_run's kind in benchmarks/stream.c
    span: float = 1.0  # elements per array per pass, in parameter copies (probe_numel)


#: The C probes of benchmarks/stream.c (OpenMP, the run's threads, static schedule).
_C_PROBES = [
    ProbeSpec("C", "copy", 8, 12, False, code=0),      # a = b
    ProbeSpec("C", "scale", 8, 12, False, code=1),     # a = s*b
    ProbeSpec("C", "add", 12, 16, False, code=2),      # a = b + c
    ProbeSpec("C", "triad", 12, 16, False, code=3),    # a = b + s*c
    # The roofline probes stream the optimizer's whole working set, three parameter copies:
    ProbeSpec("C", "update1", 8, 8, True, True, code=4, span=3.0),    # a = s*a, a of 3 copies
    ProbeSpec("C", "update2", 12, 12, True, True, code=5, span=1.5),  # a = a + s*b, 1.5 copies each
    # p = k*p - e*g; x = x + m*(p - x): what the fused ASGD kernel does. A sanity check of the
    # fused kernel (it should run at about this probe's speed), never the roofline.
    ProbeSpec("C", "asgd", 20, 20, True, code=6),
]
#: The torch probes of earlier runs, kept as extra rows (eager ops: not one tuned pass each).
_TORCH_PROBES = [
    ProbeSpec("torch", "copy", 8, 12, False),     # a.copy_(b)
    ProbeSpec("torch", "triad", 12, 16, False),   # torch.add(b, c, alpha=s, out=a)
    ProbeSpec("torch", "update", 12, 12, True),   # a.add_(b, alpha=s)
]
#: Reads in a C probe call cover at least this many elements (several passes over small arrays),
#: so the call and the OpenMP start-up do not hide a cache-resident array's bandwidth.
_C_PROBE_MIN_ELEMS = 1 << 20

_stream_lib: Any = None


def stream_library() -> Any:
    """benchmarks/stream.c, built and loaded by the fused kernel's builder (same flags and cache)."""
    global _stream_lib
    if _stream_lib is None:
        import ctypes
        from pathlib import Path

        from asgd_bridge._native import build_shared_library

        lib = build_shared_library(Path(__file__).with_name("stream.c"), "stream_probe")
        p, i, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64
        lib.stream_run.restype = i
        lib.stream_run.argtypes = [i, i64, p, p, p, i, i]
        _stream_lib = lib
    return _stream_lib


def _probe(spec: ProbeSpec) -> Callable[[Workload], tuple[Step, Any]]:
    """One probe over the workload's shared fp32 probe buffers (as many bytes as one parameter copy)."""

    def make(w: Workload) -> tuple[Step, Any]:
        import torch

        a, b, c = w.probe_buffers()
        if spec.impl == "C":
            lib = stream_library()
            n = int(spec.span * a.numel())
            ptrs = (a.data_ptr(), b.data_ptr(), c.data_ptr())
            if spec.span != 1.0:  # arrays laid over the whole storage (see probe_storage)
                whole = w.probe_storage()
                ptrs = (whole.data_ptr(), whole[n:].data_ptr(), c.data_ptr())
            reps = max(1, _C_PROBE_MIN_ELEMS // max(n, 1))
            threads = torch.get_num_threads()
            args = (spec.code, n, *ptrs, reps, threads)

            def step() -> None:
                if lib.stream_run(*args) != 0:
                    raise RuntimeError(f"stream_run refused kind {spec.kind}")

            return step, reps
        if spec.kind == "copy":
            return (lambda: a.copy_(b)), 1
        if spec.kind == "triad":
            return (lambda: torch.add(b, c, alpha=0.5, out=a)), 1
        return (lambda: a.add_(b, alpha=1e-3)), 1

    return make


def _check_stream() -> None:
    stream_library()


PROBE_SPECS: dict[str, ProbeSpec] = {f"probe: {s.impl} {s.kind}": s for s in [*_C_PROBES, *_TORCH_PROBES]}
PROBES = [
    Row(name, "probe", "probe", _probe(s), _check_stream if s.impl == "C" else (lambda: None))
    for name, s in PROBE_SPECS.items()
]
#: Used for the roofline only when no C probe could be built (no compiler): the torch RMW probe.
FALLBACK_ROOFLINE = ["probe: torch update"]
#: The probe with the fused kernel's own access pattern (sanity check of the fused rows).
ASGD_PROBE = "probe: C asgd"

#: SAG with many stored gradients is memory-hungry (batch_num x parameters): capped by default.
SAG8_MAX = 16_000_000

FAMILIES: dict[str, list[Row]] = {
    "torch-asgd": [
        Row("torch.optim.ASGD (for-loop)", "torch", "asgd", _torch_opt(_torch_asgd(foreach=False))),
        Row("torch.optim.ASGD (foreach)", "torch", "asgd", _torch_opt(_torch_asgd(foreach=True))),
        Row("asgd_bridge.torch.ASGD (foreach=False)", "torch", "asgd",
            _torch_opt(_bridge_torch_asgd(foreach=False)), _check_torch_asgd),
        Row("asgd_bridge.torch.ASGD (foreach=True)", "torch", "asgd",
            _torch_opt(_bridge_torch_asgd(foreach=True)), _check_torch_asgd),
        Row("asgd_bridge.torch.ASGD (fused=True)", "torch", "asgd",
            _torch_opt(_bridge_torch_asgd(fused=True)), _check_torch_asgd),
        Row("asgd_bridge.torch.NTASGD (averaging, fused=True)", "torch", "asgd",
            _torch_opt(_bridge_torch_ntasgd), _check_torch_asgd),
    ],
    # baseline paddle.optimizer.SGD: the target is a step within 2.0x of it (20 vs 12 B/element)
    "paddle-asgd": [
        Row("paddle.optimizer.SGD", "paddle", "sgd", _paddle_opt(_paddle_sgd)),
        Row("asgd_bridge.paddle.ASGD (C kernel)", "paddle", "asgd", _paddle_opt(_bridge_paddle_asgd),
            _check_paddle_asgd),
        Row("asgd_bridge.paddle.ASGD (Paddle ops, old path)", "paddle", "asgd", _bridge_paddle_asgd_ops,
            _check_paddle_asgd),
        Row("asgd_bridge.paddle.NTASGD (averaging)", "paddle", "asgd", _paddle_opt(_bridge_paddle_ntasgd),
            _check_paddle_asgd),
        Row("asgd_bridge.paddle.ASGD: its kernel alone", "paddle", "asgd", _paddle_kernel_alone,
            _check_paddle_asgd),
    ],
    "sag-1": [
        Row("paddle.optimizer.ASGD (SAG, batch_num=1)", "paddle", "sag", _paddle_opt(_paddle_sag(1)),
            dtypes=("float32",)),
        Row("asgd_bridge.paddle.ASGD", "paddle", "asgd", _paddle_opt(_bridge_paddle_asgd),
            _check_paddle_asgd),
        Row("paddle.optimizer.SGD (reference)", "paddle", "sgd", _paddle_opt(_paddle_sgd)),
        Row("asgd_bridge.torch.SAG (batch_num=1)", "torch", "sag",
            _torch_opt(_bridge_torch_sag(1)), _check_torch_sag),
        Row("asgd_bridge.paddle.SAG (batch_num=1)", "paddle", "sag",
            _paddle_opt(_bridge_paddle_sag(1)), _check_paddle_sag),
    ],
    "sag-8": [
        Row("paddle.optimizer.ASGD (SAG, batch_num=8)", "paddle", "sag", _paddle_opt(_paddle_sag(8)),
            max_numel=SAG8_MAX, dtypes=("float32",)),
        Row("asgd_bridge.torch.SAG (batch_num=8)", "torch", "sag",
            _torch_opt(_bridge_torch_sag(8)), _check_torch_sag, max_numel=SAG8_MAX),
        Row("asgd_bridge.paddle.SAG (batch_num=8)", "paddle", "sag",
            _paddle_opt(_bridge_paddle_sag(8)), _check_paddle_sag, max_numel=SAG8_MAX),
    ],
}


def state_bytes(opt: Any) -> int | None:
    """Bytes held by an optimizer's state (its ``state_dict()`` tensors, each storage counted once)."""
    if opt is None:
        return None
    try:
        sd = opt.state_dict()
    except Exception:  # noqa: BLE001 - a row without state_dict simply reports no number
        return None
    seen: set[int] = set()
    total = 0

    def walk(x: Any) -> None:
        nonlocal total
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif hasattr(x, "element_size") and hasattr(x, "data_ptr") and hasattr(x, "shape"):
            ptr = x.data_ptr()
            if ptr in seen:
                return
            seen.add(ptr)
            total += int(np.prod(list(x.shape), dtype=np.int64)) * x.element_size()

    walk(sd)
    return total


# --------------------------------------------------------------------------- fused-path candidates


def _fused_path(path: str) -> Callable[[Workload], tuple[Step, Any]]:
    """asgd_bridge.torch._fused's paths called directly on torch-style state lists."""

    def make(w: Workload) -> tuple[Step, Any]:
        import torch

        from asgd_bridge.torch import _fused

        ps = [p.detach() for p in w.torch_params()]
        gs = [p.grad for p in w.torch_params()]
        axs = [torch.zeros_like(p) for p in ps]
        mus = [torch.ones(()) for _ in ps]
        etas = [torch.tensor(1e-2) for _ in ps]
        steps = [torch.zeros(()) for _ in ps]
        hp = {"lambd": 1e-4, "alpha": 0.75, "t0": 0.0, "weight_decay": 0.0, "maximize": False,
              "immediate_lr": False, "bottou_average": False}
        lists = (ps, gs, axs, mus, etas, steps)
        if path == "kernel":
            return (lambda: _fused.fused_asgd_(*lists, lr=1e-2, **hp)), None
        if path == "foreach":
            return (lambda: _fused._foreach_asgd_(*lists, lr=1e-2, **hp)), None

        def compiled() -> None:
            for i in range(len(ps)):
                _fused._compiled_one(ps[i], gs[i], axs[i], mus[i], etas[i], steps[i], 1e-2, hp)

        return compiled, None

    return make


FAMILIES["fused-paths"] = [
    Row("fused: C kernel (ctypes, OpenMP)", "torch", "asgd", _fused_path("kernel"), dtypes=("float32",)),
    Row("fused: torch.compile per tensor", "torch", "asgd", _fused_path("compile"), dtypes=("float32",)),
    Row("fused: foreach fallback", "torch", "asgd", _fused_path("foreach"), dtypes=("float32",)),
]
