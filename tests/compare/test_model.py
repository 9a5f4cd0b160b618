"""The committed digits model: ONNX == npz == onnxruntime, and the accuracy the README states."""
from __future__ import annotations

import re

import numpy as np

from mipcert.io import load_network, load_npz, load_onnx, onnx_forward
from mipcert.network import Dense, ReLU

from .conftest import MODELS


def test_onnx_equals_npz_exactly():
    """Weights were trained in float32, so the float32 ONNX file holds them exactly."""
    a, b = load_npz(MODELS / "digits_mlp.npz"), load_onnx(MODELS / "digits_mlp.onnx")
    la = [l for l in a.layers if isinstance(l, (Dense, ReLU))]
    lb = [l for l in b.layers if isinstance(l, (Dense, ReLU))]
    assert [type(l) for l in la] == [type(l) for l in lb] == [Dense, ReLU, Dense, ReLU, Dense]
    for x, y in zip(la, lb):
        if isinstance(x, Dense):
            np.testing.assert_array_equal(x.W, y.W)
            np.testing.assert_array_equal(x.b, y.b)
            assert np.array_equal(x.W, x.W.astype(np.float32).astype(np.float64))
    assert [blk.W.shape for blk in a.affine_relu_stack()] == [(32, 64), (32, 32), (10, 32)]


def test_forward_matches_onnxruntime(network, test_points):
    X, _ = test_points
    z = network.forward(X)
    # same weights; only the summation order of the matrix products may differ
    np.testing.assert_allclose(z, load_network(MODELS / "digits_mlp.onnx").forward(X),
                               rtol=0, atol=1e-12)
    z_ort = onnx_forward(MODELS / "digits_mlp.onnx", X)
    assert np.max(np.abs(z - z_ort)) < 1e-4 * (1 + np.abs(z).max())
    assert np.array_equal(z.argmax(1), z_ort.argmax(1))


def test_accuracy_is_what_the_readme_says(network, test_points):
    X, y = test_points
    assert X.shape == (450, 64) and X.min() >= 0 and X.max() <= 1
    correct = int((network.forward(X).argmax(1) == y).sum())
    text = (MODELS / "README.md").read_text()
    m = re.search(r"test accuracy[^\d]*(\d+\.\d+) ?% \((\d+)/(\d+)\)", text)
    assert m, "models/README.md must state 'test accuracy NN.NN % (k/450)'"
    assert (int(m.group(2)), int(m.group(3))) == (correct, len(y))
    assert abs(float(m.group(1)) - 100 * correct / len(y)) < 0.01
