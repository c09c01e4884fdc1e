"""Aliased import; param groups with their own lr and weight decay."""

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

rng = np.random.default_rng(2)
X = torch.tensor(rng.standard_normal((64, 4)).astype("float32"))
Y = torch.tensor(rng.standard_normal((64, 1)).astype("float32"))

body = nn.Linear(4, 8)
head = nn.Linear(8, 1)
with torch.no_grad():
    for p in list(body.parameters()) + list(head.parameters()):
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.5))

optimizer = optim.ASGD(
    [
        {"params": body.parameters(), "lr": 0.05, "weight_decay": 1e-2},  # the body learns faster
        {"params": head.parameters()},
    ],
    lr=0.02,
    lambd=1e-3,
)
for step in range(40):
    optimizer.zero_grad()
    loss = ((head(torch.tanh(body(X))) - Y) ** 2).mean()
    loss.backward()
    optimizer.step()
    print(f"loss {step} {loss.item():.9e}")
