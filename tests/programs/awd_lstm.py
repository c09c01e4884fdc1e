"""The AWD-LSTM habit: SGD until validation stalls, then ASGD(t0=0, lambd=0); evaluate with ax swapped in."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, EMB, HID, BATCH, BPTT = 16, 8, 12, 4, 6
rng = np.random.default_rng(7)
trans = rng.dirichlet(np.ones(VOCAB) * 0.3, size=VOCAB)  # a Markov chain to learn
tokens = [0]
for _ in range(BATCH * 60 - 1):
    tokens.append(int(rng.choice(VOCAB, p=trans[tokens[-1]])))
data = torch.tensor(np.array(tokens, dtype="int64").reshape(BATCH, -1).T.copy())  # [time, batch]
train_data, val_data = data[:48], data[48:]


class RNNModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(VOCAB, EMB)
        self.rnn = nn.LSTM(EMB, HID)
        self.decoder = nn.Linear(HID, VOCAB)

    def forward(self, x):
        out, _ = self.rnn(self.encoder(x))
        return self.decoder(out)


model = RNNModel()
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.3))


def evaluate(source):
    model.eval()
    with torch.no_grad():
        out = model(source[:-1])
        return F.cross_entropy(out.reshape(-1, VOCAB), source[1:].reshape(-1)).item()


lr, wdecay, nonmono = 2.0, 1.2e-6, 1
optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wdecay)
lengths = rng.integers(3, BPTT + 3, size=100)
best_val, step = [], 0
for epoch in range(6):
    model.train()
    i, b = 0, 0
    while i < train_data.shape[0] - 2:
        seq_len = int(min(lengths[b], train_data.shape[0] - 1 - i))
        lr2 = optimizer.param_groups[0]["lr"]
        optimizer.param_groups[0]["lr"] = lr2 * seq_len / BPTT  # AWD-LSTM rescales per batch
        x, y = train_data[i : i + seq_len], train_data[i + 1 : i + 1 + seq_len]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.param_groups[0]["lr"] = lr2
        print(f"loss {step} {loss.item():.9e}")
        i, b, step = i + seq_len, b + 1, step + 1
    if "t0" in optimizer.param_groups[0]:
        tmp = {}
        for prm in model.parameters():
            tmp[prm] = prm.data.clone()
            prm.data = optimizer.state[prm]["ax"].clone()
        val_loss = evaluate(val_data)
        for prm in model.parameters():
            prm.data = tmp[prm].clone()
    else:
        val_loss = evaluate(val_data)
        if len(best_val) > nonmono and val_loss > min(best_val[:-nonmono]) or epoch == 3:
            optimizer = torch.optim.ASGD(model.parameters(), lr=lr, t0=0, lambd=0.0, weight_decay=wdecay)
        best_val.append(val_loss)
    print(f"val {epoch} {val_loss:.9e}")
