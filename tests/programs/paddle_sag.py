# ruff: noqa: E501  (model lines carry their torch twin in a trailing comment)
"""Paddle programs using paddle.optimizer.ASGD (SAG) with every argument, for ``--to torch``.

Three models, one per kind of weight decay (L2Decay, L1Decay, float). The converter migrates the optimizer
lines; the lines tagged ``# torch:`` are the model code, which a user migrates by hand (the e2e test swaps
in the tagged torch line).
"""

import numpy as np
import paddle  # torch: import torch

rng = np.random.default_rng(3)
xs = rng.standard_normal((32, 4)).astype("float32")
ys = rng.standard_normal((32, 1)).astype("float32")
w0 = rng.standard_normal((4, 1)).astype("float32")
X, Y = paddle.to_tensor(xs), paddle.to_tensor(ys)  # torch: X, Y = torch.tensor(xs), torch.tensor(ys)


def make_model():
    w = paddle.create_parameter([4, 1], "float32", default_initializer=paddle.nn.initializer.Assign(w0))  # torch: w = torch.nn.Parameter(torch.tensor(w0))
    b = paddle.create_parameter([1], "float32", is_bias=True)  # torch: b = torch.nn.Parameter(torch.zeros(1))
    return w, b


w1, b1 = make_model()
opt1 = paddle.optimizer.ASGD(
    learning_rate=0.05,
    batch_num=3,
    parameters=[w1, b1],
    weight_decay=paddle.regularizer.L2Decay(1e-3),
    grad_clip=paddle.nn.ClipGradByGlobalNorm(clip_norm=1.0),
    multi_precision=False,
    name="asgd",
)
w2, b2 = make_model()
opt2 = paddle.optimizer.ASGD(0.05, 2, [w2, b2], paddle.regularizer.L1Decay(coeff=1e-2))
w3, b3 = make_model()
opt3 = paddle.optimizer.ASGD(parameters=[w3, b3], batch_num=4, weight_decay=1e-3)



def train_step(w, b, i):
    loss = ((X[i * 8 : i * 8 + 8] @ w + b - Y[i * 8 : i * 8 + 8]) ** 2).mean()
    loss.backward()
    return loss.item()


for step in range(20):
    i = step % 4
    loss1 = train_step(w1, b1, i)
    opt1.step()
    opt1.clear_grad()
    loss2 = train_step(w2, b2, i)
    opt2.step()
    opt2.clear_gradients()
    loss3 = train_step(w3, b3, i)
    opt3.step()
    opt3.clear_grad(set_to_zero=False)
    for k, loss in enumerate((loss1, loss2, loss3)):
        print(f"loss {3 * step + k} {loss:.9e}")
    if step == 10:
        opt1.set_lr(opt1.get_lr() * 0.5)
    if step == 15:
        opt2.set_state_dict(opt2.state_dict())
