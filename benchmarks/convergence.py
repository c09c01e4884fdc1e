r"""Convergence benchmark: what averaging and SAG buy, measured against an exact optimum.

Three experiments (``make bench-convergence``; ``--quick`` for a smaller, faster run):

1. **One pass of L2-regularised logistic regression**, samples one at a time,

   .. math:: F(w) = \frac{1}{n}\sum_i \log(1 + e^{-y_i x_i^\top w}) + \frac{\lambda}{2}\|w\|^2,

   synthetic data from a fixed seed (rows of unit norm, so :math:`R^2 = \max\|x_i\|^2 = 1`), several
   shuffles. Rows: SGD with a constant lr over a grid (the best one is "best-tuned SGD"); averaged
   SGD with ``t0=0, lambd=0`` and lr :math:`1/(2R^2)` (Bach & Moulines 2013) in
   ``asgd_bridge.torch.ASGD``, ``torch.optim.ASGD`` and ``asgd_bridge.paddle.ASGD``, read from the
   averaged weights (and their own last iterate); scikit-learn's ``SGDClassifier(loss="log_loss",
   average=True)`` with the same lr and sample order, the external anchor; torch's defaults
   (``t0=1e6``: the "average" is the last iterate). Reported: :math:`F - F^*` with :math:`F^*` from
   L-BFGS (scipy) polished by Newton steps (gradient norm < 1e-10), float64.
2. **SAG** (``asgd_bridge.torch.SAG``, ``asgd_bridge.paddle.SAG``, Schmidt, Le Roux & Bach 2017)
   over mini-batches with ``batch_num`` = batches per epoch, after 1/10/20 epochs, with a fixed batch
   order and with batches reshuffled every epoch, vs scikit-learn's ``LogisticRegression(solver="sag")``.
3. **NT-ASGD on a tiny LSTM language model** (synthetic Markov-chain corpus, CPU): validation loss per
   epoch of ``asgd_bridge.torch.NTASGD`` (evaluated with the averaged weights) vs plain SGD.

Writes ``benchmarks/results/convergence.json`` and ``convergence.png`` and prints a table.

References:
    F. Bach and E. Moulines. Non-strongly-convex smooth stochastic approximation with convergence
    rate O(1/n). NIPS 2013.
    B. T. Polyak and A. B. Juditsky. Acceleration of stochastic approximation by averaging. 1992.
    M. Schmidt, N. Le Roux and F. Bach. Minimizing finite sums with the stochastic average gradient.
    Math. Program. 162, 2017.
    S. Merity, N. S. Keskar and R. Socher. Regularizing and optimizing LSTM language models. ICLR 2018.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


# ---------------------------------------------------------------------- the problem


@dataclass
class Problem:
    """A logistic-regression instance: rows of unit norm, labels in {-1, +1}."""

    X: np.ndarray  # (n, d) float64
    y: np.ndarray  # (n,) float64 in {-1, +1}
    lam: float

    @property
    def R2(self) -> float:
        return float(np.max(np.sum(self.X**2, axis=1)))

    def objective(self, w: np.ndarray) -> float:
        z = self.y * (self.X @ np.asarray(w, dtype=np.float64))
        return float(np.mean(np.logaddexp(0.0, -z)) + 0.5 * self.lam * np.dot(w, w))

    def gradient(self, w: np.ndarray) -> np.ndarray:
        z = self.y * (self.X @ w)
        s = -self.y * _sigmoid(-z)
        return self.X.T @ s / len(self.y) + self.lam * w

    def optimum(self) -> float:
        """F* by L-BFGS (scipy), polished by Newton steps until the gradient norm is below 1e-10."""
        from scipy.optimize import minimize

        res = minimize(
            self.objective, np.zeros(self.X.shape[1]), jac=self.gradient, method="L-BFGS-B",
            options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 10_000},
        )  # fmt: skip
        w = res.x
        for _ in range(5):  # Newton: H = X^T diag(s(1-s)) X / n + lambda I
            s = _sigmoid(self.y * (self.X @ w))
            hessian = (self.X.T * (s * (1 - s))) @ self.X / len(self.y) + self.lam * np.eye(len(w))
            w = w - np.linalg.solve(hessian, self.gradient(w))
        grad_norm = float(np.linalg.norm(self.gradient(w)))
        if grad_norm > 1e-10:
            raise RuntimeError(f"the optimum's gradient norm is {grad_norm:.2e} (> 1e-10)")
        return self.objective(w)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def make_problem(n: int = 20_000, d: int = 50, lam: float = 1e-4, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    w_true = rng.normal(size=d) * 2.0
    p = _sigmoid(X @ w_true)
    y = np.where(rng.random(n) < p, 1.0, -1.0)
    return Problem(X, y, lam)


# ---------------------------------------------------------------------- one pass, per framework


def one_pass_torch(
    problem: Problem, order: np.ndarray, make_opt: Callable[[Any], Any]
) -> dict[str, np.ndarray]:
    """One pass over ``order``, one sample per step; returns the last iterate and the average (if any)."""
    import torch

    X = torch.tensor(problem.X[order], dtype=torch.float32)
    y = torch.tensor(problem.y[order], dtype=torch.float32)
    w = torch.zeros(problem.X.shape[1], requires_grad=True)
    opt = make_opt([w])
    with torch.no_grad():
        for i in range(len(order)):
            x_i, y_i = X[i], y[i]
            w.grad = (-y_i * torch.sigmoid(-y_i * torch.dot(x_i, w))) * x_i  # logistic loss gradient
            opt.step()
    out = {"last": w.detach().double().numpy().copy()}
    if "ax" in opt.state.get(w, {}):
        out["average"] = opt.state[w]["ax"].double().numpy().copy()
    return out


def one_pass_paddle(
    problem: Problem, order: np.ndarray, make_opt: Callable[[Any], Any]
) -> dict[str, np.ndarray]:
    import paddle

    X = paddle.to_tensor(problem.X[order].astype(np.float32))
    y = paddle.to_tensor(problem.y[order].astype(np.float32))
    w = paddle.create_parameter(
        [problem.X.shape[1]], "float32", default_initializer=paddle.nn.initializer.Constant(0.0)
    )
    opt = make_opt([w])
    with paddle.no_grad():
        for i in range(len(order)):
            x_i, y_i = X[i], y[i]
            w.grad = (-y_i * paddle.nn.functional.sigmoid(-y_i * paddle.dot(x_i, w))) * x_i
            opt.step()
    out = {"last": w.numpy().astype(np.float64)}
    state = opt.state.get(w)
    if state:
        out["average"] = state["ax"].numpy().astype(np.float64)
    return out


def sklearn_averaged_sgd(problem: Problem, order: np.ndarray, lr: float) -> np.ndarray:
    """scikit-learn's averaged SGD: one pass, same order, same constant lr, average from the first sample."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier

    clf = SGDClassifier(
        loss="log_loss", penalty="l2", alpha=problem.lam, fit_intercept=False, learning_rate="constant",
        eta0=lr, average=True, max_iter=1, tol=None, shuffle=False,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(problem.X[order], problem.y[order])
    return clf.coef_.ravel().astype(np.float64)


def logistic_one_pass(
    problem: Problem, shuffles: int, sgd_grid: list[float], backends: tuple[str, ...]
) -> dict:
    """Experiment 1: F - F* per method, mean over ``shuffles`` sample orders."""
    import torch

    from asgd_bridge.torch import ASGD

    f_star = problem.optimum()
    lr_avg = 1.0 / (2.0 * problem.R2)
    lam = problem.lam
    runs: dict[str, list[float]] = {}

    def record(name: str, w: np.ndarray) -> None:
        runs.setdefault(name, []).append(problem.objective(w) - f_star)

    for s in range(shuffles):
        order = np.random.default_rng(100 + s).permutation(len(problem.y))
        for lr in sgd_grid:
            w = one_pass_torch(problem, order, lambda ps, lr=lr: torch.optim.SGD(ps, lr=lr, weight_decay=lam))
            record(f"SGD lr={lr:g}", w["last"])
        asgd = dict(lr=lr_avg, t0=0, lambd=0.0, weight_decay=lam)
        got = one_pass_torch(problem, order, lambda ps, asgd=asgd: ASGD(ps, **asgd))
        record("averaged SGD, ours torch (ax)", got["average"])
        record("averaged SGD, ours torch (last iterate)", got["last"])
        got = one_pass_torch(problem, order, lambda ps, asgd=asgd: torch.optim.ASGD(ps, **asgd))
        record("averaged SGD, torch.optim.ASGD (ax)", got["average"])
        if "paddle" in backends:
            from asgd_bridge.paddle import ASGD as PaddleASGD

            got = one_pass_paddle(
                problem,
                order,
                lambda ps: PaddleASGD(learning_rate=lr_avg, t0=0, lambd=0.0, weight_decay=lam, parameters=ps),
            )
            record("averaged SGD, ours Paddle (ax)", got["average"])
        record(
            "averaged SGD, scikit-learn SGDClassifier(average=True)",
            sklearn_averaged_sgd(problem, order, lr_avg),
        )
        got = one_pass_torch(problem, order, lambda ps: torch.optim.ASGD(ps, lr=lr_avg, weight_decay=lam))
        record("torch.optim.ASGD defaults (t0=1e6, lambd=1e-4) (ax)", got["average"])
        record(
            "torch.optim.ASGD defaults: ax == last iterate",
            got["last"] if np.array_equal(got["average"], got["last"]) else np.full_like(got["last"], np.nan),
        )
    mean = {name: float(np.mean(v)) for name, v in runs.items()}
    sgd_rows = {k: v for k, v in mean.items() if k.startswith("SGD lr=")}
    best_sgd = min(sgd_rows, key=sgd_rows.get)  # type: ignore[arg-type]
    return {
        "f_star": f_star, "lr_averaged": lr_avg, "R2": problem.R2, "shuffles": shuffles, "mean": mean,
        "runs": runs, "best_sgd": best_sgd,
    }  # fmt: skip


# ---------------------------------------------------------------------- SAG


def sag_run(
    problem: Problem, backend: str, batch: int, epochs: int, reshuffle: bool, lr: float
) -> list[float]:
    """SAG over mini-batches (``batch_num`` = batches per epoch); F - F* is taken after every epoch."""
    n, d = problem.X.shape
    num = n // batch
    rng = np.random.default_rng(7)
    perm = rng.permutation(n)
    lam = problem.lam
    values = []
    if backend == "torch":
        import torch

        from asgd_bridge.torch import SAG

        X, y = torch.tensor(problem.X, dtype=torch.float32), torch.tensor(problem.y, dtype=torch.float32)
        w = torch.zeros(d, requires_grad=True)
        opt = SAG([w], lr=lr, batch_num=num, weight_decay=lam)
        for _ in range(epochs):
            idx = torch.as_tensor(perm)
            Xs, ys = X[idx].view(num, batch, d), y[idx].view(num, batch)
            for b in range(num):
                xb, yb = Xs[b], ys[b]
                with torch.no_grad():
                    w.grad = xb.T @ (-yb * torch.sigmoid(-yb * (xb @ w))) / batch
                opt.step()
            values.append(problem.objective(w.detach().double().numpy()))
            if reshuffle:
                perm = rng.permutation(n)
    else:
        import paddle

        from asgd_bridge.paddle import SAG as PaddleSAG

        X, y = paddle.to_tensor(problem.X.astype(np.float32)), paddle.to_tensor(problem.y.astype(np.float32))
        w = paddle.create_parameter([d], "float32", default_initializer=paddle.nn.initializer.Constant(0.0))
        opt = PaddleSAG(learning_rate=lr, batch_num=num, parameters=[w], weight_decay=lam)
        for _ in range(epochs):
            idx = paddle.to_tensor(perm)
            Xs, ys = X[idx].reshape([num, batch, d]), y[idx].reshape([num, batch])
            for b in range(num):
                xb, yb = Xs[b], ys[b]
                with paddle.no_grad():
                    w.grad = xb.T @ (-yb * paddle.nn.functional.sigmoid(-yb * (xb @ w))) / batch
                opt.step()
            values.append(problem.objective(w.numpy().astype(np.float64)))
            if reshuffle:
                perm = rng.permutation(n)
    return values


def sklearn_sag(problem: Problem, epochs: int) -> float:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    n = len(problem.y)
    clf = LogisticRegression(
        C=1.0 / (n * problem.lam), solver="sag", fit_intercept=False, max_iter=epochs, tol=0.0, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(problem.X, problem.y)
    return problem.objective(clf.coef_.ravel())


def sag_experiment(problem: Problem, epochs_list: list[int], batch: int, backends: tuple[str, ...]) -> dict:
    f_star = problem.optimum()
    # the mean logistic loss over a batch is L = (R^2/4 + lambda)-smooth; lr = 1/(2L): with a fixed order
    # (incremental-aggregated-gradient-like staleness) 1/L diverges for small batches (Schmidt et al.
    # prove 1/(16L) for random sampling)
    lr = 0.5 / (0.25 * problem.R2 + problem.lam)
    top = max(epochs_list)
    rows: dict[str, dict[str, float]] = {}
    for backend in backends:
        for reshuffle in (False, True):
            curve = sag_run(problem, backend, batch, top, reshuffle, lr)
            name = f"SAG ours {backend}, {'reshuffled' if reshuffle else 'fixed'} order"
            rows[name] = {str(e): curve[e - 1] - f_star for e in epochs_list}
    rows["scikit-learn LogisticRegression(solver='sag')"] = {
        str(e): sklearn_sag(problem, e) - f_star for e in epochs_list
    }
    return {"f_star": f_star, "lr": lr, "batch": batch, "batch_num": len(problem.y) // batch, "rows": rows}


# ---------------------------------------------------------------------- NT-ASGD on a tiny LSTM


def lstm_experiment(epochs: int, tokens: int, lr: float = 5.0, nonmono: int = 2, seed: int = 0) -> dict:
    """A 1-layer LSTM LM on a synthetic Markov chain; NT-ASGD (averaged weights) vs plain SGD."""
    import torch

    from asgd_bridge.torch import NTASGD

    torch.set_num_threads(1)
    vocab, bptt, batch = 32, 20, 16
    rng = np.random.default_rng(seed)
    # each token has 3 likely successors: a learnable, noisy language
    succ = rng.integers(0, vocab, size=(vocab, 3))
    probs = np.array([0.6, 0.25, 0.1])

    def corpus(length: int) -> torch.Tensor:
        out, t = np.empty(length, dtype=np.int64), 0
        for i in range(length):
            t = succ[t, rng.choice(3, p=probs / probs.sum())] if rng.random() < 0.95 else rng.integers(vocab)
            out[i] = t
        return torch.as_tensor(out)

    train, valid = corpus(tokens), corpus(tokens // 4)

    class LM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, 32)
            self.rnn = torch.nn.LSTM(32, 64, batch_first=True)
            self.out = torch.nn.Linear(64, vocab)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.rnn(self.emb(x))[0])

    def batches(data: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        n = (len(data) - 1) // (batch * bptt) * batch * bptt
        x, y = data[:n].view(batch, -1), data[1 : n + 1].view(batch, -1)
        return [(x[:, i : i + bptt], y[:, i : i + bptt]) for i in range(0, x.shape[1], bptt)]

    def evaluate(model: torch.nn.Module) -> float:
        with torch.no_grad():
            losses = [
                torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
                for x, y in batches(valid)
            ]
        return float(torch.stack(losses).mean())

    results = {}
    for name in ("SGD", "NT-ASGD"):
        torch.manual_seed(seed)
        model = LM()
        wd = 1e-6
        opt = (
            torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd)
            if name == "SGD"
            else NTASGD(model.parameters(), lr=lr, weight_decay=wd, nonmono=nonmono)
        )
        curve, switched = [], None
        for epoch in range(epochs):
            model.train()
            for x, y in batches(train):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
                opt.step()
            model.eval()
            if name == "SGD":
                val = evaluate(model)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # before the switch: the raw weights
                    with opt.swap_averaged():
                        val = evaluate(model)
                if opt.report(val):
                    switched = epoch + 1
            curve.append(val)
        results[name] = {"val_loss": curve, "switched_after_epoch": switched}
    return results


# ---------------------------------------------------------------------- output


def print_table(report: dict) -> None:
    lo = report["logistic"]
    print(
        f"\n1. logistic regression, one pass (n={report['n']}, d={report['d']}, lambda={report['lambda']:g}, "
        f"{lo['shuffles']} shuffles), F* = {lo['f_star']:.10f}, averaged lr 1/(2R^2) = {lo['lr_averaged']:g}"
    )
    print(f"{'method':<62} {'F - F* (mean)':>14}")
    for name, value in lo["mean"].items():
        mark = "  <- best SGD" if name == lo["best_sgd"] else ""
        print(f"{name:<62} {value:>14.3e}{mark}")
    sag = report["sag"]
    epochs = list(next(iter(sag["rows"].values())))
    print(
        f"\n2. SAG, batch {sag['batch']} (batch_num={sag['batch_num']}), lr = {sag['lr']:.3g}: "
        "F - F* after epochs"
    )
    print(f"{'method':<62} " + " ".join(f"{e:>10}" for e in epochs))
    for name, row in sag["rows"].items():
        print(f"{name:<62} " + " ".join(f"{row[e]:>10.2e}" for e in epochs))
    lm = report["lstm"]
    print("\n3. tiny LSTM LM, validation loss per epoch")
    for name, row in lm.items():
        extra = (
            f"  (switched after epoch {row['switched_after_epoch']})"
            if row.get("switched_after_epoch")
            else ""
        )
        print(f"{name:<10} " + " ".join(f"{v:.4f}" for v in row["val_loss"]) + extra)
    print("\ntargets:")
    for name, ok in report["targets"].items():
        print(f"  [{'x' if ok else ' '}] {name}")


def check_targets(report: dict) -> dict[str, bool]:
    m = report["logistic"]["mean"]
    best = m[report["logistic"]["best_sgd"]]
    sk = m["averaged SGD, scikit-learn SGDClassifier(average=True)"]
    out = {}
    for key in [k for k in m if k.startswith("averaged SGD, ours") and k.endswith("(ax)")]:
        v = m[key]
        out[f"{key}: <= 5e-4 ({v:.2e})"] = v <= 5e-4
        out[f"{key}: >= 5x better than best SGD ({best / v:.1f}x)"] = best / v >= 5
        out[f"{key}: within 1.5x of scikit-learn ({v / sk:.2f}x)"] = v <= 1.5 * sk
    for name, row in report["sag"]["rows"].items():
        if name.startswith("SAG ours") and "fixed" in name and "10" in row:
            out[f"{name}: <= 1e-5 after 10 epochs ({row['10']:.2e})"] = row["10"] <= 1e-5
    return out


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    lo = report["logistic"]
    names = list(lo["mean"])
    values = [lo["mean"][n] for n in names]
    axes[0].barh(range(len(names)), values, color=["C0" if n.startswith("SGD") else "C1" for n in names])
    axes[0].set_yticks(range(len(names)), [n.replace("averaged SGD, ", "") for n in names], fontsize=6)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("F - F* after one pass")
    axes[0].set_title("logistic regression, one pass")
    for name, row in report["sag"]["rows"].items():
        axes[1].plot([int(e) for e in row], list(row.values()), marker="o", label=name)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("epochs")
    axes[1].set_ylabel("F - F*")
    axes[1].set_title("SAG")
    axes[1].legend(fontsize=6)
    for name, row in report["lstm"].items():
        axes[2].plot(range(1, len(row["val_loss"]) + 1), row["val_loss"], marker="o", label=name)
        if row.get("switched_after_epoch"):
            axes[2].axvline(row["switched_after_epoch"], color="gray", linestyle=":")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("validation loss")
    axes[2].set_title("tiny LSTM LM: NT-ASGD vs SGD")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller problem, one shuffle, fewer epochs")
    parser.add_argument("--no-paddle", action="store_true", help="torch and scikit-learn only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for convergence.json / .png")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    backends: tuple[str, ...] = ("torch",) if args.no_paddle else ("torch", "paddle")
    n, shuffles, epochs_lm, tokens, nonmono = (
        (5_000, 1, 8, 12_000, 1) if args.quick else (20_000, 3, 12, 30_000, 2)
    )
    d, lam = 50, 1e-4
    problem = make_problem(n, d, lam)
    start = time.perf_counter()
    report: dict[str, Any] = {"n": n, "d": d, "lambda": lam, "quick": args.quick}
    report["logistic"] = logistic_one_pass(problem, shuffles, [0.5, 0.25, 0.1, 0.05, 0.025], backends)
    t1 = time.perf_counter()
    report["sag"] = sag_experiment(problem, [1, 10, 20], batch=100, backends=backends)
    t2 = time.perf_counter()
    report["lstm"] = lstm_experiment(epochs_lm, tokens, lr=5.0, nonmono=nonmono)
    t3 = time.perf_counter()
    report["seconds"] = {
        "logistic": round(t1 - start, 1),
        "sag": round(t2 - t1, 1),
        "lstm": round(t3 - t2, 1),
    }
    report["targets"] = check_targets(report)
    print_table(report)
    print(f"\ntime: {report['seconds']}")
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (args.out / f"convergence{suffix}.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    plot(report, args.out / f"convergence{suffix}.png")
    return report


if __name__ == "__main__":
    main()
