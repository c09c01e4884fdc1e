"""A subclass of torch.optim.ASGD that evaluates with the averaged weights."""

import numpy as np
import torch
import torch.nn as nn


class AveragedSGD(torch.optim.ASGD):
    """Averaging from the start, no decay term."""

    def __init__(self, params, lr=0.05):
        super().__init__(params=params, lr=lr, lambd=0.0, t0=0)

    def averaged(self, p):
        return self.state[p]["ax"]


rng = np.random.default_rng(5)
X = torch.tensor(rng.standard_normal((64, 4)).astype("float32"))
Y = torch.tensor(rng.standard_normal((64, 1)).astype("float32"))

model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.5))

optimizer = AveragedSGD(model.parameters(), lr=0.1)
for step in range(40):
    optimizer.zero_grad()
    loss = ((model(X) - Y) ** 2).mean()
    loss.backward()
    optimizer.step()
    print(f"loss {step} {loss.item():.9e}")
print(f"loss 40 {sum(float(optimizer.averaged(p).sum()) for p in model.parameters()):.9e}")
