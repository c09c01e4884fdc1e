"""torch.optim.ASGD with every default (lr=0.01 is torch's, not Paddle's 0.001)."""

import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(0)
X = torch.tensor(rng.standard_normal((64, 4)).astype("float32"))
Y = torch.tensor(rng.standard_normal((64, 1)).astype("float32"))

model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
with torch.no_grad():
    for p in model.parameters():  # identical start in both frameworks
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.5))

optimizer = torch.optim.ASGD(model.parameters())
for step in range(40):
    optimizer.zero_grad()
    loss = ((model(X) - Y) ** 2).mean()
    loss.backward()
    optimizer.step()
    print(f"loss {step} {loss.item():.9e}")
