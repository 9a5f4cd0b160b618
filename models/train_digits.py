"""Train the bundled digits MLP (64-32-32-10 ReLU) and save it as ONNX and mipcert .npz.

Data: ``sklearn.datasets.load_digits`` (8x8 images, 1797 samples), pixels divided by 16 so
every input lies in [0, 1]; split by ``train_test_split(test_size=0.25, random_state=0,
stratify=y)`` (1347 train / 450 test). Training: torch, CPU, float32, seed 0, deterministic
algorithms, Adam (lr 1e-3, mini-batches of 64, 60 epochs, weight decay 1e-4); weights below
1e-6 in magnitude are then set to 0.

Run from the repository root::

    python models/train_digits.py            # writes models/digits_mlp.onnx and .npz

The script prints the train / test accuracy (quoted in ``models/README.md``). Re-running it on
the same torch version reproduces the same weights; other versions may differ in the last
bits, so the committed files, not the script, are the reference.
"""
from __future__ import annotations

import argparse
from pathlib import Path

HERE = Path(__file__).resolve().parent
HIDDEN = (32, 32)
SEED = 0
TINY = 1e-6


def load_split():
    """``(X_train, X_test, y_train, y_test)``; X ``(n, 64)`` float64 in [0, 1], y ``(n,)`` int."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


def build_model(hidden=HIDDEN):
    import torch.nn as nn

    sizes = (64, *hidden, 10)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def fit(build, input_shape=(64,), epochs: int = 60, batch: int = 64, lr: float = 1e-3,
        weight_decay: float = 1e-4, split=None):
    """Train ``build()`` on ``split`` (``(Xtr, Xte, ytr, yte)``, default the digits split;
    inputs reshaped to ``input_shape``) and return ``(module, train_acc, test_acc)``; shared
    with ``train_digits_cnn.py`` and ``train_mnist_cnn.py``."""
    import torch

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    Xtr, Xte, ytr, yte = load_split() if split is None else split
    Xtr_t = torch.tensor(Xtr, dtype=torch.float32).reshape(-1, *input_shape)
    Xte_t = torch.tensor(Xte, dtype=torch.float32).reshape(-1, *input_shape)
    ytr_t = torch.tensor(ytr, dtype=torch.long)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        perm = torch.randperm(len(Xtr_t), generator=gen)
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss_fn(model(Xtr_t[idx]), ytr_t[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        # Weights of pixels that are 0 in every training image only feel the weight decay
        # and end near 1e-30 (a few others are tiny too); set every |w| < TINY to exactly 0.
        # mipcert's ONNX import recovers W by probing the affine map, (w + b) - b, which
        # loses such tiny weights; with them zeroed the ONNX and .npz weights are identical.
        for p in model.parameters():
            p[p.abs() < TINY] = 0.0
        acc_tr = float((model(Xtr_t).argmax(1).numpy() == ytr).mean())
        acc_te = float((model(Xte_t).argmax(1).numpy() == yte).mean())
    return model, acc_tr, acc_te


def train(epochs: int = 60, batch: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4):
    """Train and return ``(module, train_acc, test_acc)``."""
    return fit(build_model, (64,), epochs, batch, lr, weight_decay)


def report(net, acc_tr: float, acc_te: float, Xte, yte) -> None:
    """Print the training run's accuracies and the float64 network's test accuracy."""
    acc64 = float((net.forward(Xte).argmax(1) == yte).mean())
    print(f"{net}: train accuracy {acc_tr:.4f}, test accuracy {acc_te:.4f} "
          f"(float64 network: {acc64:.4f}, {int(round(acc64 * len(yte)))}/{len(yte)})")


def main(argv=None) -> int:
    from mipcert.io import from_torch, save_npz, save_onnx

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE), help="folder for digits_mlp.onnx / .npz")
    p.add_argument("--epochs", type=int, default=60)
    args = p.parse_args(argv)
    model, acc_tr, acc_te = train(args.epochs)
    net = from_torch(model, (64,))
    out = Path(args.out)
    save_npz(net, out / "digits_mlp.npz")
    save_onnx(net, out / "digits_mlp.onnx")
    _, Xte, _, yte = load_split()
    report(net, acc_tr, acc_te, Xte, yte)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
