"""asgd_bridge.torch.ASGD's averaged weights: averaged_parameters, swap_averaged, averaged_state_dict."""

from __future__ import annotations

import io
import pickle
import warnings

import pytest
import torch

from asgd_bridge.torch import ASGD


def trained(t0: float = 0, steps: int = 6, **hp):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))
    opt = ASGD(model.parameters(), lr=0.05, t0=t0, **hp)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return model, opt


def raw_of(model):
    return [p.detach().clone() for p in model.parameters()]


def test_averaged_parameters_are_copies_of_ax_in_parameter_order():
    model, opt = trained()
    got = opt.averaged_parameters()
    params = list(model.parameters())
    assert len(got) == len(params)
    for a, p in zip(got, params, strict=True):
        assert torch.equal(a, opt.state[p]["ax"]) and not a.requires_grad
        assert a.data_ptr() != opt.state[p]["ax"].data_ptr()
    assert not any(torch.equal(a, p.detach()) for a, p in zip(got, params, strict=True))


def test_swap_puts_averages_in_and_raw_weights_back():
    model, opt = trained()
    raw, avg = raw_of(model), opt.averaged_parameters()
    ids = [id(p) for p in model.parameters()]
    with opt.swap_averaged():
        assert all(torch.equal(p.detach(), a) for p, a in zip(model.parameters(), avg, strict=True))
        # the optimizer's state stays valid inside: a checkpoint taken here holds the true averages
        saved = opt.state_dict()
        assert all(torch.equal(saved["state"][i]["ax"], a) for i, a in enumerate(avg))
        pickle.dumps(opt)
    assert [id(p) for p in model.parameters()] == ids
    assert all(torch.equal(p.detach(), r) for p, r in zip(model.parameters(), raw, strict=True))


def test_swap_restores_when_the_body_raises():
    model, opt = trained()
    raw = raw_of(model)
    with pytest.raises(ValueError, match="evaluation failed"):
        with opt.swap_averaged():
            raise ValueError("evaluation failed")
    assert all(torch.equal(p.detach(), r) for p, r in zip(model.parameters(), raw, strict=True))
    with opt.swap_averaged():  # usable again
        pass


def test_nested_swap_is_refused_and_outer_swap_still_restores():
    model, opt = trained()
    raw = raw_of(model)
    with opt.swap_averaged():
        with pytest.raises(RuntimeError, match="already active"):
            with opt.swap_averaged():
                pass
        assert torch.equal(next(model.parameters()).detach(), opt.averaged_parameters()[0])
    assert all(torch.equal(p.detach(), r) for p, r in zip(model.parameters(), raw, strict=True))


def test_step_inside_swap_is_refused():
    model, opt = trained()
    with opt.swap_averaged(), pytest.raises(RuntimeError, match="inside swap_averaged"):
        opt.step()


def test_before_the_first_step_parameters_are_their_own_average():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = ASGD(model.parameters(), t0=0)
    raw = raw_of(model)
    with pytest.warns(UserWarning, match="2 of 2 parameter\\(s\\) have not been stepped"):
        with opt.swap_averaged():
            assert all(torch.equal(p.detach(), r) for p, r in zip(model.parameters(), raw, strict=True))
    with pytest.warns(UserWarning, match="not been stepped"):
        sd = opt.averaged_state_dict(model)
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())
    assert not opt.state  # nothing was created


def test_partly_stepped_uses_ax_where_it_exists():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(3))
    opt = ASGD([a, b], lr=0.1, t0=0)
    for _ in range(3):
        a.grad = torch.randn(3)
        opt.step()
    with pytest.warns(UserWarning, match="1 of 2"):
        got = opt.averaged_parameters()
    assert torch.equal(got[0], opt.state[a]["ax"]) and torch.equal(got[1], b.detach())


def test_averaged_state_dict_replaces_parameters_only_and_leaves_the_model_alone():
    model, opt = trained()
    live = {k: v.clone() for k, v in model.state_dict().items()}
    sd = opt.averaged_state_dict(model)
    assert list(sd) == list(live)
    for name, param in model.named_parameters():
        assert torch.equal(sd[name], opt.state[param]["ax"]) and not torch.equal(sd[name], live[name])
    for name in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(sd[name], live[name])
    assert all(torch.equal(v, live[k]) for k, v in model.state_dict().items())
    # loads into a fresh model, also through torch.save, and equals the swapped-in model
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    fresh = trained(steps=0)[0]
    fresh.load_state_dict(torch.load(buf))
    with opt.swap_averaged():
        assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in model.state_dict().items())


def test_averaged_state_dict_with_tied_weights():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(5, 3)
    dec = torch.nn.Linear(3, 5, bias=False)
    dec.weight = emb.weight  # AWD-LSTM ties encoder and decoder
    model = torch.nn.ModuleDict({"enc": emb, "dec": dec})
    opt = ASGD(model.parameters(), lr=0.1, t0=0)
    for _ in range(3):
        opt.zero_grad()
        model["dec"](model["enc"](torch.tensor([0, 1, 2]))).sum().backward()
        opt.step()
    sd = opt.averaged_state_dict(model)
    ax = opt.state[emb.weight]["ax"]
    assert torch.equal(sd["enc.weight"], ax) and torch.equal(sd["dec.weight"], ax)


def test_no_unstepped_warning_once_every_parameter_has_stepped():
    model, opt = trained(t0=1e6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with opt.swap_averaged():
            pass
        # t0 not reached: torch copies p into ax every step, so the average is the parameter itself
        assert all(torch.equal(a, p.detach()) for a, p in zip(opt.averaged_parameters(),
                                                              model.parameters(), strict=True))
    # the one warning is the t0 trap's (tests/test_t0_trap.py), not "not been stepped"
    assert len(caught) == 1 and "averaging has not started (t0=1e+06" in str(caught[0].message)


def test_averaged_state_dict_keeps_parameters_the_optimizer_does_not_own():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    frozen = model[0].weight  # e.g. a frozen embedding: not given to the optimizer
    opt = ASGD([p for p in model.parameters() if p is not frozen], lr=0.1, t0=0)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 3)).sum().backward()
        opt.step()
    sd = opt.averaged_state_dict(model)
    assert torch.equal(sd["0.weight"], frozen.detach())
    for name in ("0.bias", "1.weight", "1.bias"):
        param = dict(model.named_parameters())[name]
        assert torch.equal(sd[name], opt.state[param]["ax"]) and not torch.equal(sd[name], param.detach())


def test_two_swaps_in_a_row_with_training_between_use_the_current_averages():
    model, opt = trained()
    with opt.swap_averaged():
        first = raw_of(model)
    x = torch.randn(16, 3)
    opt.zero_grad()
    model(x).sum().backward()
    opt.step()
    raw = raw_of(model)
    with opt.swap_averaged():
        second = raw_of(model)
    assert all(torch.equal(s, a) for s, a in zip(second, opt.averaged_parameters(), strict=True))
    assert not all(torch.equal(f, s) for f, s in zip(first, second, strict=True))
    assert all(torch.equal(p.detach(), r) for p, r in zip(model.parameters(), raw, strict=True))
