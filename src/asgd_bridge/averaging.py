"""Evaluate and save with the averaged weights of averaged SGD, for any backend.

``AveragedWeights`` is a mixin holding the framework-free logic; each backend's ASGD supplies two hooks.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

__all__ = ["AveragedWeights", "GatheredAverages"]

T = TypeVar("T")


def _numel(t: Any) -> int:
    """Element count of a torch/Paddle tensor or a NumPy array."""
    return int(t.numel()) if hasattr(t, "numel") else int(getattr(t, "size", 1))


class AveragedWeights(Generic[T]):
    r"""Averaged-weights API for an averaged-SGD optimizer: read, swap in, and save :math:`\bar{x}`.

    Averaged SGD keeps, next to every parameter :math:`p`, the running average
    :math:`\bar{x}_t = \bar{x}_{t-1} + \mu_t (p_t - \bar{x}_{t-1})` of its iterates (state key ``ax``;
    see :func:`asgd_bridge.reference.asgd_step`). Polyak & Juditsky (1992) show that it is
    :math:`\bar{x}`, not :math:`p`, that converges at the optimal rate, so evaluation and checkpoints
    should use it. ``torch.optim.ASGD`` stores it but offers no way to use it; AWD-LSTM (Merity et al.,
    *Regularizing and Optimizing LSTM Language Models*, ICLR 2018) copies ``optimizer.state[p]['ax']``
    into the parameters by hand. This mixin does that once, for every backend.

    **Contract for a backend.** The class mixing this in implements two hooks and may override a third:

    ``_averaging_pairs() -> list[tuple[param, ax | None]]``
        Every parameter the optimizer owns, in param-group order (the order of
        ``param_groups[i]["params"]``, group after group), each with its averaged tensor, or ``None``
        when the parameter has no average yet (it has not been stepped). Must not create state.
    ``_copy_into(dst, src) -> None``
        Overwrite the values of ``dst`` with those of ``src`` in place (same shape and dtype), outside
        autograd, keeping ``dst`` the same object (torch: ``with torch.no_grad(): dst.copy_(src)``).
    ``_snapshot(tensor) -> tensor`` (optional)
        A detached copy; the default ``tensor.detach().clone()`` works for torch and Paddle tensors.
    ``_averaging_not_started() -> str | None`` (optional)
        Why the averages are still the last iterates, or ``None`` once averaging has started. The
        default reads torch-style ``param_groups`` (key ``t0``) and ``state[p]["step"]``, which both
        ASGD classes have; a backend without them is never warned about.

    ``_reshard_model``, ``_check_swap_target``, ``_unwrap_model``, ``_is_wrapped``,
    ``_model_state_dict``, ``_unowned_trainable``, ``_unowned_hint`` (optional)
        Where a model is wrapped or sharded (:mod:`asgd_bridge.torch.distributed`,
        :mod:`asgd_bridge.paddle.distributed`): free
        all-gathered parameters around a swap, refuse a swap that cannot be honoured, give the
        unwrapped model's keys, count trainable parameters another rank owns (ZeRO). The defaults
        treat every model as plain.

    **The t0 trap.** torch's default ``t0=1e6`` means no averaging in most runs: while every averaged
    parameter's step :math:`t \le t_0`, :math:`\mu = 1` and ``ax`` is just the last iterate. Reading the
    averages then (any method below) emits one :class:`UserWarning` per optimizer naming ``t0`` and
    the step, and pointing at ``t0=0`` or :class:`~asgd_bridge.torch.NTASGD`.

    The backend's ``step`` should call ``self._check_not_swapped("step()")`` first, so that a step
    taken on the averaged weights (whose result would be thrown away on exit) fails loudly.

    **Before the first step** a parameter has no ``ax`` (torch creates it on the parameter's first
    step, hence the well-known ``KeyError: 'ax'``). Here such a parameter is its own average: every
    method below uses its current value and emits one :class:`UserWarning` naming how many parameters
    are affected. It never raises ``KeyError``.

    The swap copies (it does not exchange), so the optimizer's state stays valid inside
    :meth:`swap_averaged`: saving or pickling the optimizer there records the true averages.

    References:
        B. T. Polyak and A. B. Juditsky. Acceleration of stochastic approximation by averaging. 1992.
        S. Merity, N. S. Keskar and R. Socher. Regularizing and optimizing LSTM language models. 2018.
    """

    # ------------------------------------------------------------------ hooks (backend)

    def _averaging_pairs(self) -> list[tuple[T, T | None]]:
        raise NotImplementedError(f"{type(self).__name__} must implement _averaging_pairs()")

    def _copy_into(self, dst: T, src: T) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _copy_into(dst, src)")

    def _snapshot(self, tensor: T) -> T:
        return tensor.detach().clone()  # type: ignore[attr-defined]

    def _reshard_model(self, model: Any) -> None:
        """Make the model's parameters the tensors the optimizer owns (FSDP: free unsharded ones)."""

    def _check_swap_target(self, params: list[T], model: Any) -> None:
        """Raise or warn when swapping ``params`` without ``model`` cannot be honoured."""

    def _unwrap_model(self, model: Any) -> Any:
        """The model whose ``state_dict()`` keys load into the unwrapped model (default: itself)."""
        return model

    def _is_wrapped(self, model: Any) -> bool:
        """Whether ``model`` needs :meth:`_model_state_dict` (a wrapper or sharded parameters)."""
        return False

    def _model_state_dict(self, model: Any, full_state_dict: bool, rank0_only: bool) -> dict[str, Any]:
        """The state dict of a wrapped/sharded model in the unwrapped model's keys."""
        raise NotImplementedError(f"{type(self).__name__} has no wrapped-model state dict")

    def _unowned_trainable(self, model: Any, owned: set[int]) -> int:
        """How many trainable parameters of ``model`` the optimizer does not own, where that is a bug."""
        return 0

    def _unowned_hint(self) -> str:
        """What to use instead when :meth:`_unowned_trainable` counts parameters other ranks own."""
        return (
            "Under ZeroRedundancyOptimizer each rank owns a shard: use "
            "asgd_bridge.torch.ZeroAveraged(zero) for the whole model's averages"
        )

    # ------------------------------------------------------------------ helpers

    def _check_not_swapped(self, action: str) -> None:
        if getattr(self, "_averaged_swapped_in", False):
            raise RuntimeError(
                f"{type(self).__name__}.{action} called inside swap_averaged(): the parameters hold "
                "the averaged weights and are restored on exit, so this would be lost; leave the "
                "`with` block first"
            )

    def _averaging_not_started(self) -> str | None:
        groups = getattr(self, "param_groups", None)
        state = getattr(self, "state", None)
        if groups is None or state is None:
            return None
        averaged: list[tuple[float, float]] = []
        for group in groups:
            if "t0" not in group:
                continue
            for p in group["params"]:
                st = state.get(p)  # .get: never create state
                if not st or "ax" not in st:
                    continue
                step = float(st["step"])
                if step > float(group["t0"]):
                    return None
                averaged.append((float(group["t0"]), step))
        if not averaged:
            return None
        t0, step = min(t for t, _ in averaged), max(s for _, s in averaged)
        return (
            f"averaging has not started (t0={t0:g}, step {step:g}: every averaged parameter's step is "
            "<= t0), so the averaged weights are just the last iterate. torch's default t0=1e6 means "
            "no averaging in most runs: pass t0=0 to average from the first step, or use NTASGD to "
            "start averaging when the validation metric stalls"
        )

    def _warn_if_not_averaging(self, what: str, depth: int) -> None:
        if getattr(self, "_t0_trap_warned", False):
            return
        reason = self._averaging_not_started()
        if reason is not None:
            self._t0_trap_warned = True
            warnings.warn(f"{type(self).__name__}.{what}: {reason}", UserWarning, stacklevel=depth)

    def _pairs_warning_if_unstepped(self, what: str, depth: int = 3) -> list[tuple[T, T | None]]:
        """The pairs, warning (at the caller's caller: ``depth`` frames up) about the t0 trap and
        about parameters without averages; ``swap_averaged`` passes one more for contextlib's frame."""
        self._warn_if_not_averaging(what, depth + 1)
        pairs = self._averaging_pairs()
        # A parameter with no elements (an FSDP shard empty on this rank) needs no average.
        missing = sum(ax is None and _numel(p) > 0 for p, ax in pairs)
        if missing:
            warnings.warn(
                f"{type(self).__name__}.{what}: {missing} of {len(pairs)} parameter(s) have not been "
                "stepped yet, so they have no averaged weights ('ax'); their current values are used as "
                "their own average",
                UserWarning,
                stacklevel=depth,
            )
        return pairs

    # ------------------------------------------------------------------ public API

    def averaged_parameters(self) -> list[T]:
        """Detached copies of the averaged weights, one per parameter, in parameter order.

        A parameter not stepped yet contributes a copy of its current value (with a warning).
        """
        pairs = self._pairs_warning_if_unstepped("averaged_parameters()")
        return [self._snapshot(p if ax is None else ax) for p, ax in pairs]

    def _warn_if_unowned(self, what: str, model: Any, pairs: list[tuple[T, T | None]]) -> None:
        n = self._unowned_trainable(self._unwrap_model(model), {id(p) for p, _ in pairs})
        if n:
            warnings.warn(
                f"{type(self).__name__}.{what}: {n} trainable parameter(s) of the model are not "
                f"optimized by this optimizer (in this process), so they keep their raw weights. "
                f"{self._unowned_hint()}",
                UserWarning,
                stacklevel=3,
            )

    def _copied(self, state: dict[str, Any]) -> dict[str, Any]:
        return {k: self._snapshot(v) if hasattr(v, "detach") else v for k, v in state.items()}

    @contextmanager
    def _swapped(self, model: Any, pairs: list[tuple[T, T | None]]) -> Iterator[None]:
        if getattr(self, "_averaged_swapped_in", False):
            raise RuntimeError(
                f"{type(self).__name__}.swap_averaged() is already active: the parameters already "
                "hold the averaged weights; nested swaps are not allowed"
            )
        todo = [(p, ax) for p, ax in pairs if ax is not None]
        self._check_swap_target([p for p, _ in todo], model)
        saved: list[tuple[T, T]] = []
        self._averaged_swapped_in = True
        try:
            self._reshard_model(model)  # the parameters are now the tensors the optimizer owns
            for p, ax in todo:
                raw = self._snapshot(p)
                self._copy_into(p, ax)
                saved.append((p, raw))
            yield
        finally:
            try:
                self._reshard_model(model)  # drop what the body all-gathered from the averages
            finally:
                for p, raw in reversed(saved):
                    self._copy_into(p, raw)
                self._averaged_swapped_in = False

    @contextmanager
    def swap_averaged(self, model: Any = None) -> Iterator[None]:
        """Context manager: the parameters hold their averaged weights inside, their raw weights after.

        The raw weights are restored on exit, also when the body raises. Nesting raises
        ``RuntimeError``, and so does the optimizer's ``step()`` inside the block. Example::

            with opt.swap_averaged(model):
                val_loss = evaluate(model)          # with the averaged weights
                torch.save(opt.averaged_state_dict(model), path)
            # training continues from the raw weights

        Args:
            model: the model as it is trained (plain, DDP, ``torch.compile``, FSDP1, FSDP2). Needed for
                a sharded model: FSDP keeps the root's parameters all-gathered after a forward, so on
                entry and on exit they are resharded (freed), and the next forward all-gathers the
                averages inside and the raw weights after. Without it, FSDP1 flat parameters raise
                ``ValueError`` and DTensor parameters warn. Given, a trainable parameter of the model
                that another rank's optimizer owns (ZeRO) warns.
        """
        pairs = self._pairs_warning_if_unstepped("swap_averaged()", depth=4)  # + contextlib's __enter__
        if model is not None:
            self._warn_if_unowned("swap_averaged()", model, pairs)
        with self._swapped(model, pairs):
            yield

    def averaged_state_dict(
        self, model: Any, *, full_state_dict: bool = True, rank0_only: bool = False
    ) -> dict[str, Any]:
        """``model.state_dict()`` with each optimized parameter replaced by a copy of its average.

        Buffers and parameters this optimizer does not own keep their usual entries; the model and the
        optimizer are not modified (a wrapped model's parameters hold the averages only while the
        state dict is taken). Works for any model with ``state_dict()`` and
        ``named_parameters(remove_duplicate=False)`` (``torch.nn.Module``, ``paddle.nn.Layer``), so
        tied parameters get the average under every name.

        A wrapped model (DDP, ``torch.compile``, FSDP1, FSDP2, Paddle ``DataParallel``) gives the keys
        of the unwrapped model, so the result loads into it. For a sharded model (a collective: call it
        on every rank):

        Args:
            model: the model as it is trained.
            full_state_dict: ``True`` (default): whole tensors (FSDP shards all-gathered, DTensors
                ``full_tensor()``); ``False``: sharded DTensors, FSDP's sharded state dict, for
                ``torch.distributed.checkpoint``.
            rank0_only: with ``full_state_dict=True``, the gathered tensors (on CPU) on rank 0 only and
                an empty dict on every other rank.
        """
        pairs = self._pairs_warning_if_unstepped("averaged_state_dict()")
        self._warn_if_unowned("averaged_state_dict()", model, pairs)
        if self._is_wrapped(model):
            # Swap the averages into the tensors the optimizer owns, let the wrapper's own state-dict
            # machinery name (and gather) them, copy, swap back.
            if getattr(self, "_averaged_swapped_in", False):  # inside swap_averaged(model) already
                return self._copied(self._model_state_dict(model, full_state_dict, rank0_only))
            with self._swapped(model, pairs):
                return self._copied(self._model_state_dict(model, full_state_dict, rank0_only))
        model = self._unwrap_model(model)
        averages = {id(p): ax for p, ax in pairs if ax is not None}
        out = model.state_dict()
        named: Mapping[str, Any] = dict(model.named_parameters(remove_duplicate=False))
        for name, param in named.items():
            ax = averages.get(id(param))
            if ax is not None and name in out:
                out[name] = self._snapshot(ax)
        return out


class GatheredAverages:
    """Mixin for a view of the *whole* model's averages over a sharded optimizer (torch's
    ``ZeroAveraged``, Paddle's ``ShardingAveraged``): placed before the framework's averaging class, it
    shares the local optimizer ``self.optim``'s swap flag (so that optimizer's ``step()`` refuses inside
    this view's swap) and its t0-trap answer; the subclass gathers ``_averaging_pairs`` from the ranks
    that own each parameter."""

    optim: Any

    @property
    def _averaged_swapped_in(self) -> bool:
        return bool(getattr(self.optim, "_averaged_swapped_in", False))

    @_averaged_swapped_in.setter
    def _averaged_swapped_in(self, value: bool) -> None:
        self.optim._averaged_swapped_in = value

    def _averaging_not_started(self) -> str | None:
        return self.optim._averaging_not_started()
