"""Train the bundled digits CNN (conv 3x3 x4 + ReLU + dense) and save it as ONNX and .npz.

Architecture: input ``(1, 8, 8)``; ``Conv2d(1, 4, 3)`` (no padding, stride 1) -> ReLU ->
Flatten (144) -> ``Linear(144, 10)`` (logits). 144 ReLUs: small enough for the MILP verifier.
Data and training as ``train_digits.py`` (pixels / 16 in [0, 1], the same stratified split,
torch CPU float32, seed 0, deterministic, Adam lr 3e-3, mini-batches of 64, 80 epochs,
weight decay 1e-4, cross-entropy; weights with |w| < 1e-6 set to 0).

The ONNX file is written node by node (Conv, Relu, Flatten, Gemm; input ``"input"`` of shape
``[1, 1, 8, 8]``, output ``"output"`` ``[1, 10]``) so that it holds a real convolution;
mipcert's import lowers it to a dense layer, and is checked against onnxruntime when loaded.
The ``.npz`` file holds the lowered network (``from_torch``) in float64.

    python models/train_digits_cnn.py        # writes models/digits_cnn.onnx and .npz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from train_digits import fit, load_split  # noqa: E402

CHANNELS = 4


def build_model(channels: int = CHANNELS):
    import torch.nn as nn

    return nn.Sequential(nn.Conv2d(1, channels, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(channels * 6 * 6, 10))


def train(epochs: int = 80, batch: int = 64, lr: float = 3e-3, weight_decay: float = 1e-4):
    """Train and return ``(module, train_acc, test_acc)``."""
    return fit(build_model, (1, 8, 8), epochs, batch, lr, weight_decay)


def to_onnx_bytes(model) -> bytes:
    """The trained module as an ONNX model with a Conv node (opset 13)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    conv, _, _, dense = list(model)

    def init(name, t):
        return numpy_helper.from_array(t.detach().numpy().astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["input", "conv_W", "conv_b"], ["conv_out"], name="conv",
                              kernel_shape=[3, 3], strides=[1, 1], pads=[0, 0, 0, 0]),
             helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu"),
             helper.make_node("Flatten", ["relu_out"], ["flat_out"], name="flatten", axis=1),
             helper.make_node("Gemm", ["flat_out", "dense_W", "dense_b"], ["output"],
                              name="dense", transB=1)]
    graph = helper.make_graph(
        nodes, "digits_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])],
        initializer=[init("conv_W", conv.weight), init("conv_b", conv.bias),
                     init("dense_W", dense.weight), init("dense_b", dense.bias)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="mipcert models/train_digits_cnn.py")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def main(argv=None) -> int:
    from mipcert.io import from_torch, load_onnx, save_npz
    from mipcert.io._common import atomic_write_bytes

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE), help="folder for digits_cnn.onnx / .npz")
    p.add_argument("--epochs", type=int, default=80)
    args = p.parse_args(argv)
    model, acc_tr, acc_te = train(args.epochs)
    net = from_torch(model, (1, 8, 8))
    out = Path(args.out)
    save_npz(net, out / "digits_cnn.npz")
    atomic_write_bytes(out / "digits_cnn.onnx", to_onnx_bytes(model))
    onnx_net = load_onnx(out / "digits_cnn.onnx")  # lowered and checked against onnxruntime
    _, Xte, _, yte = load_split()
    assert np.allclose(onnx_net.forward(Xte), net.forward(Xte), atol=1e-5)
    acc64 = float((net.forward(Xte).argmax(1) == yte).mean())
    print(f"{net}: train accuracy {acc_tr:.4f}, test accuracy {acc_te:.4f} "
          f"(float64 network: {acc64:.4f}, {int(round(acc64 * len(yte)))}/{len(yte)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
