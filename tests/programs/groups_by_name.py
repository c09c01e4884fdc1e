"""Param groups held in names ([body, head]) with lambd=0: plain Paddle SGD would ignore the group lr."""

import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(6)
X = torch.tensor(rng.standard_normal((64, 4)).astype("float32"))
Y = torch.tensor(rng.standard_normal((64, 1)).astype("float32"))
model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.5))
head = {"params": model[2].parameters(), "lr": 0.5}
body = {"params": model[0].parameters(), "weight_decay": 0.1}
optimizer = torch.optim.ASGD([body, head], lr=0.05, lambd=0.0)
for step in range(40):
    optimizer.zero_grad()
    loss = ((model(X) - Y) ** 2).mean()
    loss.backward()
    optimizer.step()
    print(f"loss {step} {loss.item():.9e}")
