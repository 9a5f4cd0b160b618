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
from train_digits import fit, load_split, report  # noqa: E402

CHANNELS = 4


def build_model(channels: int = CHANNELS):
    import torch.nn as nn

    return nn.Sequential(nn.Conv2d(1, channels, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(channels * 6 * 6, 10))


def train(epochs: int = 80, batch: int = 64, lr: float = 3e-3, weight_decay: float = 1e-4):
    """Train and return ``(module, train_acc, test_acc)``."""
    return fit(build_model, (1, 8, 8), epochs, batch, lr, weight_decay)


def sequential_to_onnx(model, input_shape, name: str, producer: str) -> bytes:
    """A trained ``nn.Sequential`` of Conv2d (no padding), ReLU, Flatten and Linear as an ONNX
    model (opset 13) with real Conv / Relu / Flatten / Gemm nodes; input ``"input"`` of shape
    ``[1, *input_shape]``, output ``"output"`` ``[1, classes]``. Shared with
    ``train_mnist_cnn.py``."""
    import onnx
    import torch.nn as nn
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, prev = [], [], "input"
    for k, m in enumerate(model):
        out = "output" if k == len(model) - 1 else f"t{k}"
        params = ()
        if isinstance(m, nn.Conv2d):
            params = (f"conv{k}_W", m.weight), (f"conv{k}_b", m.bias)
            nodes.append(helper.make_node("Conv", [prev, *(n for n, _ in params)], [out],
                                          name=f"conv{k}", kernel_shape=list(m.kernel_size),
                                          strides=list(m.stride), pads=[0, 0, 0, 0]))
        elif isinstance(m, nn.Linear):
            params = (f"dense{k}_W", m.weight), (f"dense{k}_b", m.bias)
            nodes.append(helper.make_node("Gemm", [prev, *(n for n, _ in params)], [out],
                                          name=f"dense{k}", transB=1))
        elif isinstance(m, nn.ReLU):
            nodes.append(helper.make_node("Relu", [prev], [out], name=f"relu{k}"))
        elif isinstance(m, nn.Flatten):
            nodes.append(helper.make_node("Flatten", [prev], [out], name=f"flatten{k}", axis=1))
        else:
            raise TypeError(f"module {type(m).__name__} has no ONNX node here")
        inits += [numpy_helper.from_array(t.detach().numpy().astype(np.float32), n)
                  for n, t in params]
        prev = out
    classes = model[-1].out_features
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, *input_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, classes])],
        initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name=producer)
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def to_onnx_bytes(model) -> bytes:
    """The trained module as an ONNX model with a Conv node (opset 13)."""
    return sequential_to_onnx(model, (1, 8, 8), "digits_cnn",
                              "mipcert models/train_digits_cnn.py")


def write_checked(model, input_shape, onnx_bytes: bytes, out: Path, stem: str, Xte,
                  npz: bool = True):
    """Write ``stem.onnx`` (and ``stem.npz``) and check that mipcert's import of the ONNX file
    (lowered, and checked against onnxruntime by the importer) computes what the trained
    module does on the test inputs ``Xte``. Returns the lowered network."""
    from mipcert.io import from_torch, load_onnx, save_npz
    from mipcert.io._common import atomic_write_bytes

    net = from_torch(model, input_shape)
    if npz:
        save_npz(net, out / f"{stem}.npz")
    atomic_write_bytes(out / f"{stem}.onnx", onnx_bytes)
    onnx_net = load_onnx(out / f"{stem}.onnx")
    assert np.allclose(onnx_net.forward(Xte), net.forward(Xte), atol=1e-5)
    return net


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(HERE), help="folder for digits_cnn.onnx / .npz")
    p.add_argument("--epochs", type=int, default=80)
    args = p.parse_args(argv)
    model, acc_tr, acc_te = train(args.epochs)
    _, Xte, _, yte = load_split()
    net = write_checked(model, (1, 8, 8), to_onnx_bytes(model), Path(args.out), "digits_cnn",
                        Xte)
    report(net, acc_tr, acc_te, Xte, yte)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
