r"""NT-ASGD: SGD until the validation metric stalls, then averaged SGD; the framework-free parts.

Merity, Keskar & Socher (2018), Algorithm 1 ("non-monotonically triggered ASGD"): train with SGD and
check the validation metric :math:`v_k` every epoch; averaging starts at the first check :math:`k`
with

.. math::

    k > n \quad\text{and}\quad v_k > \min_{l < k - n} v_l

(for ``mode="min"``), i.e. the metric is worse than the best of all but the last :math:`n`
(``nonmono``) reported values. From then on the optimizer is averaged SGD with :math:`t_0` the step
of the switch, :math:`\lambda = 0`: :math:`\bar{x}` is the mean of the iterates after the switch.

This module holds the two framework-neutral pieces every backend shares:

- :class:`NonMonotonicTrigger`: the trigger, with ``ReduceLROnPlateau``-style arguments (``mode``,
  ``threshold``, ``threshold_mode``; ``nonmono`` plays the role of ``patience``) and a plain
  ``state_dict``;
- :class:`NonMonotonicAveraging`: the mixin that turns an averaged-SGD optimizer (one of the
  :class:`~asgd_bridge.averaging.AveragedWeights` backends) into NT-ASGD: phase bookkeeping,
  ``report`` / ``start_averaging``, the extra ``state_dict`` entry and its validation, and the
  averaged-weights answers before the switch.

References:
    S. Merity, N. S. Keskar and R. Socher. Regularizing and optimizing LSTM language models.
    ICLR 2018 (arXiv:1708.02182), Algorithm 1 and the AWD-LSTM code (``nonmono``, default 5).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

__all__ = ["NTASGD_KEY", "NonMonotonicAveraging", "NonMonotonicTrigger"]

#: Key of the NT-ASGD entry in an NTASGD ``state_dict()`` (next to ``state`` and ``param_groups``).
NTASGD_KEY = "ntasgd"

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


def _check_int(name: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"Invalid {name} value: {value!r} (expected an int >= {low})")
    return int(value)


def _check_finite(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"Invalid {name} value: {value!r} (expected a finite number)")
    try:
        number = float(value)  # floats, ints, NumPy scalars, 0-d / 1-element torch and Paddle tensors
    except (TypeError, ValueError) as error:
        raise ValueError(f"Invalid {name} value: {value!r} (expected a finite number)") from error
    if not math.isfinite(number):
        raise ValueError(f"Invalid {name} value: {number} (expected a finite number)")
    return number


class NonMonotonicTrigger:
    r"""The non-monotonic trigger of NT-ASGD (Merity et al. 2018, Algorithm 1).

    Fed one validation metric per check with :meth:`report`; fires (once) at the first check whose
    value is *worse* than the best of all values reported before the last ``nonmono`` ones:

    .. math::

        \text{fire at } v_k \iff k > n \;\wedge\; \operatorname{worse}(v_k, b_k), \qquad
        b_k = \operatorname{best}(v_0, \dots, v_{k-n-1})

    with :math:`n` = ``nonmono`` and, as ``ReduceLROnPlateau`` measures "better" (``mode="min"``):
    ``worse(v, b)`` is :math:`v > b(1 + \text{threshold})` (``threshold_mode="rel"``) or
    :math:`v > b + \text{threshold}` (``"abs"``); for ``mode="max"`` :math:`v < b(1 - \text{threshold})`
    or :math:`v < b - \text{threshold}`. With ``threshold=0`` (the default) this is AWD-LSTM's
    ``len(logs) > nonmono and v > min(logs[:-nonmono])`` exactly (a tie does not fire).

    Only the running best of the old values and the last ``nonmono`` values are kept, so the state is
    small whatever the number of checks.

    Args:
        nonmono: how many of the latest checks are exempt from the comparison (AWD-LSTM's default 5);
            the analogue of ``ReduceLROnPlateau``'s ``patience``.
        mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).
        threshold: how much worse than the best the metric must be (default 0).
        threshold_mode: ``"rel"`` or ``"abs"``, as in ``ReduceLROnPlateau`` / Paddle's ``ReduceOnPlateau``.

    References:
        S. Merity, N. S. Keskar and R. Socher. Regularizing and optimizing LSTM language models.
        ICLR 2018, Algorithm 1.
    """

    def __init__(
        self, nonmono: int = 5, mode: str = "min", threshold: float = 0.0, threshold_mode: str = "rel"
    ) -> None:
        self.nonmono = _check_int("nonmono", nonmono)
        if mode not in _MODES:
            raise ValueError(f"Invalid mode value: {mode!r} (expected 'min' or 'max')")
        if threshold_mode not in _THRESHOLD_MODES:
            raise ValueError(f"Invalid threshold_mode value: {threshold_mode!r} (expected 'rel' or 'abs')")
        threshold = _check_finite("threshold", threshold)
        if threshold < 0:
            raise ValueError(f"Invalid threshold value: {threshold} (expected a finite number >= 0)")
        self.mode, self.threshold, self.threshold_mode = mode, threshold, threshold_mode
        self.num_reports = 0
        #: Best of the values older than the last ``nonmono`` ones (``None`` until there is one).
        self.best: float | None = None
        self.recent: deque[float] = deque()
        #: Index (0-based) of the report that fired, ``None`` while it has not.
        self.fired_at: int | None = None

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def is_worse(self, value: float, best: float) -> bool:
        """Whether ``value`` is worse than ``best`` by more than the threshold (see the class doc)."""
        sign = 1.0 if self.mode == "min" else -1.0
        if self.threshold_mode == "rel":
            bound = best * (1.0 + sign * self.threshold)
        else:
            bound = best + sign * self.threshold
        return value > bound if self.mode == "min" else value < bound

    def report(self, metric: Any) -> bool:
        """Record one check's metric; ``True`` only on the check that fires the trigger."""
        value = _check_finite("metric", metric)
        fire = self.fired_at is None and self.best is not None and self.is_worse(value, self.best)
        if fire:
            self.fired_at = self.num_reports
        self.recent.append(value)
        if len(self.recent) > self.nonmono:
            old = self.recent.popleft()
            if self.best is None or self._better(old, self.best):
                self.best = old
        self.num_reports += 1
        return fire

    @property
    def fired(self) -> bool:
        return self.fired_at is not None

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values only (saved with ``torch.save`` / ``paddle.save`` without pickled classes)."""
        return {
            "nonmono": self.nonmono,
            "mode": self.mode,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "num_reports": self.num_reports,
            "best": self.best,
            "recent": list(self.recent),
            "fired_at": self.fired_at,
        }

    def load_state_dict(self, state: Mapping[str, Any], where: str = "trigger state") -> None:
        """Restore :meth:`state_dict`, validated as strictly as the constructor's arguments."""
        if not isinstance(state, Mapping):
            raise ValueError(f"{where}: expected a dict, got {type(state).__name__}")
        keys = set(self.state_dict())
        if set(state) != keys:
            raise ValueError(f"{where}: expected the keys {sorted(keys)}, got {sorted(state)}")
        fresh = NonMonotonicTrigger(
            state["nonmono"], state["mode"], state["threshold"], state["threshold_mode"]
        )
        num_reports = _check_int(f"{where} 'num_reports'", state["num_reports"])
        recent = state["recent"]
        if not isinstance(recent, (list, tuple)):
            raise ValueError(f"{where}: 'recent' must be a list, got {type(recent).__name__}")
        recent = [_check_finite(f"{where} 'recent' entry", v) for v in recent]
        if len(recent) != min(num_reports, fresh.nonmono):
            raise ValueError(
                f"{where}: 'recent' holds {len(recent)} values, expected min(num_reports, nonmono) = "
                f"{min(num_reports, fresh.nonmono)}"
            )
        best = state["best"]
        if (best is None) != (num_reports <= fresh.nonmono):
            raise ValueError(f"{where}: 'best' must be set exactly when num_reports > nonmono, got {best!r}")
        if best is not None:
            best = _check_finite(f"{where} 'best'", best)
        fired_at = state["fired_at"]
        if fired_at is not None and _check_int(f"{where} 'fired_at'", fired_at) >= num_reports:
            raise ValueError(f"{where}: 'fired_at' {fired_at} must be < num_reports {num_reports}")
        self.nonmono, self.mode = fresh.nonmono, fresh.mode
        self.threshold, self.threshold_mode = fresh.threshold, fresh.threshold_mode
        self.num_reports, self.best, self.recent, self.fired_at = num_reports, best, deque(recent), fired_at


class NonMonotonicAveraging:
    """Mixin: an averaged-SGD optimizer that runs as SGD until averaging starts (NT-ASGD).

    Placed before the backend's ASGD class in the bases. The backend:

    - calls :meth:`_init_ntasgd` in its constructor, :meth:`_count_step` once per ``step()``;
    - runs plain SGD in ``step()`` while :attr:`is_averaging` is false (keeping no optimizer state),
      and its ASGD's own step afterwards: the first step after the switch creates fresh averaged-SGD
      state, so from there it *is* the ASGD a hand-written program builds at the switch;

    ``state_dict()`` / ``load_state_dict()`` here wrap the backend ASGD's: the :data:`NTASGD_KEY`
    entry (steps, averaging start, trigger state) is added on save, and checked before the rest is
    loaded.
    """

    def state_dict(self) -> dict[str, Any]:
        """ASGD's state dict plus the ``"ntasgd"`` entry (steps, averaging start, trigger state)."""
        out = super().state_dict()  # type: ignore[misc]
        out[NTASGD_KEY] = self._ntasgd_state()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; the ``"ntasgd"`` entry is required and validated first."""
        rest = {k: v for k, v in state_dict.items() if k != NTASGD_KEY}
        checked = self._check_ntasgd_state(state_dict.get(NTASGD_KEY), has_state=bool(rest.get("state")))
        super().load_state_dict(rest)  # type: ignore[misc]
        self._set_ntasgd_state(checked)

    def _init_ntasgd(self, trigger: NonMonotonicTrigger) -> None:
        self._trigger = trigger
        self._steps = 0
        self._averaging_start: int | None = None

    # ------------------------------------------------------------------ public surface

    @property
    def trigger(self) -> NonMonotonicTrigger:
        """The non-monotonic trigger :meth:`report` feeds."""
        return self._trigger

    @property
    def steps(self) -> int:
        """Number of ``step()`` calls so far (both phases)."""
        return self._steps

    @property
    def is_averaging(self) -> bool:
        """Whether averaging has started (by :meth:`start_averaging` or by :meth:`report`)."""
        return self._averaging_start is not None

    @property
    def averaging_start(self) -> int | None:
        """t0 of the run: the number of steps taken when averaging started (``None`` before).

        The average covers the iterates of the steps after it (torch's rule leaves out the first one,
        as the hand-written program does; ``bottou_average=True`` includes it).
        """
        return self._averaging_start

    def start_averaging(self) -> bool:
        """Switch to averaged SGD now (t0 = the current step); ``False`` if averaging had already started.

        The next ``step()`` is the first step of the averaged-SGD phase; it starts the average from
        that step's iterate, exactly as ``torch.optim.ASGD(params, lr, t0=0, lambd=0.,
        weight_decay=wd)`` built here would.
        """
        self._check_not_swapped("start_averaging()")  # type: ignore[attr-defined]
        if self._averaging_start is not None:
            return False
        self._averaging_start = self._steps
        return True

    def report(self, metric: Any) -> bool:
        """Feed one validation metric (e.g. the epoch's validation loss) to the trigger.

        Starts averaging when the trigger fires (see :class:`NonMonotonicTrigger`); returns ``True``
        exactly on the call that started it. After the switch the values are still recorded (and
        saved), but nothing changes.
        """
        fired = self._trigger.report(metric)
        return self.start_averaging() if fired else False

    # ------------------------------------------------------------------ backend helpers

    def _count_step(self) -> None:
        self._steps += 1

    def _ntasgd_state(self) -> dict[str, Any]:
        return {
            "steps": self._steps,
            "averaging_start": self._averaging_start,
            "trigger": self._trigger.state_dict(),
        }

    def _check_ntasgd_state(self, entry: Any, has_state: bool) -> tuple[NonMonotonicTrigger, int, int | None]:
        """Validate the :data:`NTASGD_KEY` entry (``has_state``: the saved state is non-empty).

        Returns what :meth:`_set_ntasgd_state` applies, so a backend can check it before loading the
        rest and apply it after (a failing load changes nothing).
        """
        where = f"{type(self).__name__}.load_state_dict: state_dict[{NTASGD_KEY!r}]"
        if entry is None:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state dict has no {NTASGD_KEY!r} entry "
                f"(expected the format of {type(self).__name__}.state_dict())"
            )
        if not isinstance(entry, Mapping) or set(entry) != {"steps", "averaging_start", "trigger"}:
            got = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
            raise ValueError(f"{where}: expected the keys ['averaging_start', 'steps', 'trigger'], got {got}")
        steps = _check_int(f"{where} 'steps'", entry["steps"])
        start = entry["averaging_start"]
        if start is not None and _check_int(f"{where} 'averaging_start'", start) > steps:
            raise ValueError(f"{where}: 'averaging_start' {start} is after 'steps' {steps}")
        if start is None and has_state:
            raise ValueError(
                f"{where}: averaging has not started, but the state dict holds averaged-SGD state "
                "(before the switch NTASGD keeps none)"
            )
        trigger = NonMonotonicTrigger()
        trigger.load_state_dict(entry["trigger"], where=f"{where}['trigger']")
        return trigger, steps, start

    def _set_ntasgd_state(self, checked: tuple[NonMonotonicTrigger, int, int | None]) -> None:
        self._trigger, self._steps, self._averaging_start = checked

    # ------------------------------------------------------------------ AveragedWeights answers

    def _averaging_pairs(self) -> list[tuple[Any, Any]]:
        # Before the switch (and for a parameter not stepped since) the raw weights are the average;
        # the t0 warning below says so, instead of the "not stepped yet" one.
        return [(p, p if ax is None else ax) for p, ax in super()._averaging_pairs()]  # type: ignore[misc]

    def _averaging_not_started(self) -> str | None:
        if self._averaging_start is None:
            return (
                f"averaging has not started (step {self._steps}, t0 not set yet: call start_averaging() "
                "or report(val_loss)), so the averaged weights are the raw weights"
            )
        if all(ax is p for p, ax in self._averaging_pairs()):
            return (
                f"averaging started at step {self._averaging_start} (t0) and no step has been taken since "
                f"(step {self._steps}), so the averaged weights are the raw weights"
            )
        return None
