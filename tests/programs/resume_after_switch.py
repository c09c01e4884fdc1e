"""NT-ASGD resume from a checkpoint saved AFTER the switch (the optimizer is ASGD).

SGD first, ASGD from step 10; at step 25 the run saves, rebuilds the optimizer the loaded state dict
names (``'t0' in sd['param_groups'][0]``), loads it, and evaluates with the averaged weights of its state.
"""

import os
import tempfile

import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(12)
X = torch.tensor(rng.standard_normal((64, 4)).astype("float32"))
Y = torch.tensor(rng.standard_normal((64, 1)).astype("float32"))

model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.5))

lr, wdecay = 0.05, 1e-3
optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wdecay)
path = os.path.join(tempfile.mkdtemp(), "optimizer.pt")
for step in range(40):
    if step == 10:
        optimizer = torch.optim.ASGD(model.parameters(), lr=lr, t0=0, lambd=0.0, weight_decay=wdecay)
    if step == 25:
        torch.save(optimizer.state_dict(), path)
        optimizer_state = torch.load(path)
        if "t0" in optimizer_state["param_groups"][0]:
            optimizer = torch.optim.ASGD(model.parameters(), lr=lr, t0=0, lambd=0.0, weight_decay=wdecay)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wdecay)
        optimizer.load_state_dict(optimizer_state)
        print(f"val 0 {optimizer_state['param_groups'][0]['lr']:.9e}")
        print(f"val 1 {float(len(optimizer_state['state'])):.9e}")
    optimizer.zero_grad()
    loss = ((model(X) - Y) ** 2).mean()
    loss.backward()
    optimizer.step()
    print(f"loss {step} {loss.item():.9e}")
with torch.no_grad():
    for i, prm in enumerate(model.parameters()):
        print(f"val {2 + i} {optimizer.state[prm]['ax'].sum().item():.9e}")
