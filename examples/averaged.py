"""Train a small regression MLP with averaged SGD and compare raw against averaged weights per epoch.

Run: ``python examples/averaged.py`` (CPU, a few seconds, deterministic).
"""

from __future__ import annotations

import torch

from asgd_bridge.torch import ASGD

EPOCHS = 10
BATCH = 8


def make_data(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 8, generator=gen)
    y = torch.sin(x[:, :1] * 2) + 0.5 * x[:, 1:2] * x[:, 2:3] + 0.3 * torch.randn(n, 1, generator=gen)
    return x, y


@torch.no_grad()
def val_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return torch.nn.functional.mse_loss(model(x), y).item()


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x_train, y_train = make_data(2048, gen)
    x_val, y_val = make_data(512, gen)
    model = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    steps_per_epoch = len(x_train) // BATCH
    # A large lr and small batches make the raw iterates noisy; averaging starts after three epochs
    # (t0 counts steps).
    opt = ASGD(model.parameters(), lr=0.2, lambd=0.0, t0=3 * steps_per_epoch, bottou_average=True)

    print(f"{'epoch':>5} | {'val loss (raw)':>14} | {'val loss (averaged)':>19}")
    print(f"{'-' * 5}-+-{'-' * 14}-+-{'-' * 19}")
    for epoch in range(1, EPOCHS + 1):
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(steps_per_epoch):
            idx = order[i * BATCH : (i + 1) * BATCH]
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
        raw = val_loss(model, x_val, y_val)
        with opt.swap_averaged():
            averaged = val_loss(model, x_val, y_val)
        print(f"{epoch:>5} | {raw:>14.5f} | {averaged:>19.5f}")


if __name__ == "__main__":
    main()
