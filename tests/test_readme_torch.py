"""The README's usage snippets for ``asgd_bridge.torch.ASGD`` run as written, on a tiny model."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parent.parent / "README.md"
HEADING = "### `asgd_bridge.torch.ASGD`"


def torch_asgd_snippets() -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(HEADING)
    end = text.index("\n### ", start + len(HEADING))
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def test_the_section_has_the_usage_and_the_fixes_snippets():
    snippets = torch_asgd_snippets()
    assert len(snippets) == 2
    assert "swap_averaged" in snippets[0] and "immediate_lr=True" in snippets[1]


def test_snippets_run_on_a_tiny_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snippet saves model_avg.pt into the working directory
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    loader = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 16, 4)]
    loss_fn = torch.nn.functional.mse_loss
    seen = []

    def evaluate(m):
        seen.append([p.detach().clone() for p in m.parameters()])
        return loss_fn(m(x), y).item()

    # What the snippets take as given (the usage snippet calls torch.save without importing torch).
    namespace = {"torch": torch, "model": model, "loader": loader, "loss_fn": loss_fn, "evaluate": evaluate,
                 "params": list(model.parameters())}  # fmt: skip
    usage, fixes = torch_asgd_snippets()
    exec(compile(usage, "<README.md: torch ASGD usage>", "exec"), namespace)
    opt = namespace["opt"]
    assert all(opt.state[p]["step"].item() == len(loader) for p in model.parameters())
    avg = opt.averaged_parameters()
    assert all(torch.equal(a, b) for a, b in zip(seen[0], avg, strict=True))  # evaluated on the average
    saved = torch.load(tmp_path / "model_avg.pt")
    assert torch.equal(saved["weight"], avg[0]) and torch.equal(saved["bias"], avg[1])
    assert not torch.equal(model.weight.detach(), avg[0])  # raw weights are back

    exec(compile(fixes, "<README.md: torch ASGD fixes>", "exec"), namespace)
    assert namespace["opt"].param_groups[0]["bottou_average"] is True
