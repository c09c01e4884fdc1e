"""The AveragedWeights mixin on its own: a NumPy backend implementing only the documented hooks."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest

import asgd_bridge.averaging as averaging
from asgd_bridge import reference as ref
from asgd_bridge.averaging import AveragedWeights


class NumpyASGD(AveragedWeights[np.ndarray]):
    """The smallest backend: reference steps on NumPy arrays, with the mixin's hooks."""

    def __init__(self, params: list[np.ndarray], **hp):
        self.params, self.hp, self.states = params, hp, {}

    def step(self, grads: list[np.ndarray]) -> None:
        self._check_not_swapped("step()")
        for p, g in zip(self.params, grads, strict=True):
            state = self.states.get(id(p)) or ref.asgd_init(p, self.hp["lr"])
            new, self.states[id(p)] = ref.asgd_step(p, g, state, **self.hp)
            p[...] = new

    def _averaging_pairs(self):
        return [(p, s.ax if (s := self.states.get(id(p))) else None) for p in self.params]

    def _copy_into(self, dst, src):
        dst[...] = src

    def _snapshot(self, tensor):
        return tensor.copy()


class Model:
    """A model-like object: state_dict() and named_parameters(remove_duplicate=False)."""

    def __init__(self, w, b, buf):
        self.w, self.b, self.buf = w, b, buf

    def named_parameters(self, remove_duplicate=True):
        pairs = [("w", self.w), ("b", self.b)]
        return pairs + ([] if remove_duplicate else [("tied_w", self.w)])

    def state_dict(self):
        return {"w": self.w.copy(), "b": self.b.copy(), "tied_w": self.w.copy(), "buf": self.buf.copy()}


def test_mixin_imports_no_framework():
    tree = ast.parse(Path(averaging.__file__).read_text())
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert not imported & {"torch", "paddle", "numpy"}


def test_contract_with_a_numpy_backend(rng):
    w, b = rng.normal(size=(2, 3)), rng.normal(size=2)
    opt = NumpyASGD([w, b], lr=0.1, t0=0)
    iterates = []
    for _ in range(5):
        opt.step([rng.normal(size=(2, 3)), rng.normal(size=2)])
        iterates.append((w.copy(), b.copy()))
    raw = (w.copy(), b.copy())
    # torch's average after t0=0 leaves out the first iterate (see reference.py)
    want = [np.mean([it[i] for it in iterates[1:]], axis=0) for i in range(2)]
    got = opt.averaged_parameters()
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    with opt.swap_averaged():
        np.testing.assert_array_equal(w, got[0])
        np.testing.assert_array_equal(b, got[1])
    np.testing.assert_array_equal(w, raw[0])
    np.testing.assert_array_equal(b, raw[1])

    model = Model(w, b, np.arange(3.0))
    sd = opt.averaged_state_dict(model)
    np.testing.assert_array_equal(sd["w"], got[0])
    np.testing.assert_array_equal(sd["tied_w"], got[0])
    np.testing.assert_array_equal(sd["b"], got[1])
    np.testing.assert_array_equal(sd["buf"], np.arange(3.0))
    np.testing.assert_array_equal(w, raw[0])


def test_missing_hooks_say_which():
    class Bare(AveragedWeights):
        pass

    with pytest.raises(NotImplementedError, match="_averaging_pairs"):
        Bare().averaged_parameters()


def test_unstepped_parameters_are_their_own_average_with_a_warning(rng):
    w = rng.normal(size=3)
    before = w.copy()
    opt = NumpyASGD([w], lr=0.1)
    with pytest.warns(UserWarning, match="1 of 1 parameter\\(s\\) have not been stepped"):
        with opt.swap_averaged():
            np.testing.assert_array_equal(w, before)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(opt.averaged_parameters()[0], w)
