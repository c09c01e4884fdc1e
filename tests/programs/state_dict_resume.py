"""Save the optimizer's state_dict mid-run, build a fresh optimizer, load it and resume."""

import os
import tempfile

import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(4)
X = torch.tensor(rng.standard_normal((64, 4)).astype("float32"))
Y = torch.tensor(rng.standard_normal((64, 1)).astype("float32"))

model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.5))

optimizer = torch.optim.ASGD(model.parameters(), lr=0.05, t0=5)
path = os.path.join(tempfile.mkdtemp(), "optimizer.pt")
for step in range(40):
    if step == 20:
        torch.save(optimizer.state_dict(), path)
        optimizer = torch.optim.ASGD(model.parameters(), lr=0.05, t0=5)
        optimizer.load_state_dict(torch.load(path))
    optimizer.zero_grad()
    loss = ((model(X) - Y) ** 2).mean()
    loss.backward()
    optimizer.step()
    print(f"loss {step} {loss.item():.9e}")
