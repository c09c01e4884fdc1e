"""A small AWD-LSTM-style language model in PyTorch: SGD until validation stalls, then NT-ASGD.

The habits of salesforce/awd-lstm-lm's main.py: per-batch lr rescaled with the sequence length through
``optimizer.param_groups[0]['lr']``, the switch detected with ``'t0' in optimizer.param_groups[0]``,
``torch.optim.ASGD(..., t0=0, lambd=0.)`` after the switch, and evaluation with the averaged weights
``optimizer.state[p]['ax']`` swapped in. Data: a fixed random Markov chain, so both frameworks see the
same tokens. Prints ``epoch <i> train <loss> val <loss>`` lines.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, EMB, HID, BATCH, BPTT, EPOCHS = 24, 16, 24, 8, 8, 12
rng = np.random.default_rng(2024)
trans = rng.dirichlet(np.ones(VOCAB) * 0.2, size=VOCAB)  # the language to learn
tokens = [0]
for _ in range(BATCH * 160 - 1):
    tokens.append(int(rng.choice(VOCAB, p=trans[tokens[-1]])))
data = torch.tensor(np.array(tokens, dtype="int64").reshape(BATCH, -1).T.copy())  # [time, batch]
train_data, val_data = data[:128], data[128:]


class RNNModel(nn.Module):
    """Embedding, one LSTM layer, linear decoder."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Embedding(VOCAB, EMB)
        self.rnn = nn.LSTM(EMB, HID)
        self.decoder = nn.Linear(HID, VOCAB)

    def forward(self, x):
        out, _ = self.rnn(self.encoder(x))
        return self.decoder(out)


model = RNNModel()
with torch.no_grad():  # the same start in every framework
    for p in model.parameters():
        p.copy_(torch.tensor(rng.standard_normal(tuple(p.shape)).astype("float32") * 0.2))


def evaluate(source):
    model.eval()
    with torch.no_grad():
        out = model(source[:-1])
        return F.cross_entropy(out.reshape(-1, VOCAB), source[1:].reshape(-1)).item()


lr, wdecay, nonmono = 10.0, 1.2e-6, 1
optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wdecay)
lengths = rng.integers(BPTT // 2, BPTT + 4, size=1000)
best_val, b = [], 0
for epoch in range(EPOCHS):
    model.train()
    i, total, count = 0, 0.0, 0
    while i < train_data.shape[0] - 2:
        seq_len = int(min(lengths[b], train_data.shape[0] - 1 - i))
        lr2 = optimizer.param_groups[0]["lr"]
        optimizer.param_groups[0]["lr"] = lr2 * seq_len / BPTT
        x, y = train_data[i : i + seq_len], train_data[i + 1 : i + 1 + seq_len]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        optimizer.param_groups[0]["lr"] = lr2
        total, count = total + loss.item(), count + 1
        i, b = i + seq_len, b + 1
    if "t0" in optimizer.param_groups[0]:  # averaged SGD: evaluate with the averaged weights
        tmp = {}
        for prm in model.parameters():
            tmp[prm] = prm.data.clone()
            prm.data = optimizer.state[prm]["ax"].clone()
        val_loss = evaluate(val_data)
        for prm in model.parameters():
            prm.data = tmp[prm].clone()
    else:
        val_loss = evaluate(val_data)
        if len(best_val) > nonmono and val_loss > min(best_val[:-nonmono]):
            print("switching to ASGD")
            optimizer = torch.optim.ASGD(model.parameters(), lr=lr, t0=0, lambd=0.0, weight_decay=wdecay)
        best_val.append(val_loss)
    print(f"epoch {epoch} train {total / count:.9e} val {val_loss:.9e}")
