"""Every torch.optim.ASGD argument given positionally (t0=5, so averaging starts early)."""

import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(1)
X = torch.tensor(rng.standard_normal((64, 4)).astype("float32"))
Y = torch.tensor(rng.standard_normal((64, 2)).astype("float32"))

model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.5))

# params, lr, lambd, alpha, t0, weight_decay, foreach, maximize, differentiable, capturable
optimizer = torch.optim.ASGD(model.parameters(), 0.05, 1e-2, 0.6, 5.0, 1e-3, None, False, False, False)
for step in range(40):
    optimizer.zero_grad()
    loss = ((model(X) - Y) ** 2).mean()
    loss.backward()
    optimizer.step()
    print(f"loss {step} {loss.item():.9e}")
