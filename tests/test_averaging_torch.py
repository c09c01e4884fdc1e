"""asgd_bridge.torch.ASGD's averaged weights, what is particular to torch (copies, nn.Module models, tied
weights, torch.save). The shared contract (true averages, swap and restore, nesting, step inside, before
the first step, parameters not owned) runs for every backend in ``test_backends.py``."""

from __future__ import annotations

import io
import pickle
import warnings

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


def test_pickle_and_state_dict_inside_swap_hold_the_true_averages():
    model, opt = trained()
    avg = opt.averaged_parameters()
    with opt.swap_averaged():
        saved = pickle.loads(pickle.dumps(opt)).state_dict()
    assert all(torch.equal(saved["state"][i]["ax"], a) for i, a in enumerate(avg))
