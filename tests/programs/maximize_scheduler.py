"""maximize=True with an lr scheduler attached (torch's ASGD takes a new lr one step late)."""

import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(3)
X = torch.tensor(rng.standard_normal((64, 4)).astype("float32"))
Y = torch.tensor(rng.standard_normal((64, 1)).astype("float32"))

model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.5))

optimizer = torch.optim.ASGD(model.parameters(), lr=0.05, maximize=True, t0=10)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
for step in range(40):
    optimizer.zero_grad()
    score = -((model(X) - Y) ** 2).mean()  # maximised
    score.backward()
    optimizer.step()
    scheduler.step()
    print(f"loss {step} {score.item():.9e}")
