"""The bundled digits CNN: its ONNX file (a real Conv) and .npz agree, and the accuracy
quoted in models/README.md holds."""
from __future__ import annotations

import numpy as np

from mipcert.io import load_npz, load_onnx, onnx_forward

from .conftest import MODELS


def test_cnn_onnx_npz_and_onnxruntime_agree(digits_split):
    _, Xte, _, yte = digits_split
    onnx_net = load_onnx(MODELS / "digits_cnn.onnx")
    npz_net = load_npz(MODELS / "digits_cnn.npz")
    np.testing.assert_allclose(onnx_net.forward(Xte), npz_net.forward(Xte), atol=1e-9)
    np.testing.assert_allclose(onnx_forward(MODELS / "digits_cnn.onnx", Xte[:50]),
                               npz_net.forward(Xte[:50]), atol=1e-4)
    assert int((npz_net.forward(Xte).argmax(1) == yte).sum()) == 439
    assert npz_net.num_relus == 144
