"""NT-ASGD resume from a checkpoint saved BEFORE the switch (the optimizer is still SGD).

The resumed run asks the loaded optimizer state dict which phase it is in (``'t0' in
sd['param_groups'][0]``), rebuilds that optimizer, loads the dict, reads its lr and state, and switches to
ASGD later.
"""

import os
import tempfile

import numpy as np
import torch
import torch.nn as nn

rng = np.random.default_rng(11)
X = torch.tensor(rng.standard_normal((64, 4)).astype("float32"))
Y = torch.tensor(rng.standard_normal((64, 1)).astype("float32"))

model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.5))

lr, wdecay = 0.05, 1e-3
optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wdecay)
folder = tempfile.mkdtemp()
for step in range(40):
    if step == 12:  # checkpoint, then resume from it as a fresh run would
        torch.save(model.state_dict(), os.path.join(folder, "model.pt"))
        torch.save(optimizer.state_dict(), os.path.join(folder, "optimizer.pt"))
        model.load_state_dict(torch.load(os.path.join(folder, "model.pt")))
        optimizer_state = torch.load(os.path.join(folder, "optimizer.pt"))
        if "t0" in optimizer_state["param_groups"][0]:
            optimizer = torch.optim.ASGD(model.parameters(), lr=lr, t0=0, lambd=0.0, weight_decay=wdecay)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=1.0, weight_decay=wdecay)
        optimizer.load_state_dict(optimizer_state)  # torch restores the saved lr
        lr = optimizer_state["param_groups"][0]["lr"]
        print(f"val 0 {lr:.9e}")
        print(f"val 1 {float(len(optimizer_state['state'])):.9e}")
    if step == 25:
        optimizer = torch.optim.ASGD(model.parameters(), lr=lr, t0=0, lambd=0.0, weight_decay=wdecay)
    optimizer.zero_grad()
    loss = ((model(X) - Y) ** 2).mean()
    loss.backward()
    optimizer.step()
    print(f"loss {step} {loss.item():.9e}")
