"""save_onnx / save_npz round trips, atomic writes and bad files."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from mipcert.errors import ModelFileError, UnsupportedError
from mipcert.io import load_network, load_npz, load_onnx, save_npz, save_onnx
from mipcert.network import Affine, Dense, Flatten, Layer, Network, ReLU


def _net(seed=0) -> Network:
    rng = np.random.default_rng(seed)
    return Network([Affine(rng.uniform(0.5, 2, 12), rng.normal(size=12)), Flatten(),
                    Dense(rng.normal(size=(9, 12)), rng.normal(size=9)), ReLU(),
                    Dense(rng.normal(size=(3, 9)), rng.normal(size=3))],
                   (3, 2, 2), names=["norm", "flat", "fc1", "act1", "logits"])


def _close(a: Network, b: Network, tol: float) -> None:
    x = np.random.default_rng(9).uniform(-1, 1, size=(10, a.input_size))
    ya, yb = a.forward(x), b.forward(x)
    assert np.max(np.abs(ya - yb)) <= tol * (1 + np.abs(ya).max())


def test_save_onnx_then_load(tmp_path):
    import onnx

    net = _net()
    path = save_onnx(net, tmp_path / "net.onnx")
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 13
    assert [i.name for i in model.graph.input] == ["input"]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 12]
    back = load_onnx(path)
    assert back.layer_names == ["norm", "flat", "fc1", "act1", "logits"]
    assert back.input_shape == (3, 2, 2)
    _close(net, back, 1e-5)  # float32 weights
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]


def test_vnncomp_network_through_onnx_and_npz(vnncomp, tmp_path):
    net = load_onnx(vnncomp / "acasxu" / "ACASXU_run2a_5_5_batch_2000.onnx")
    _close(net, load_onnx(save_onnx(net, tmp_path / "acas.onnx")), 1e-5)
    again = load_network(save_npz(net, tmp_path / "acas.npz"))
    assert again.layer_names == net.layer_names and again.input_shape == net.input_shape
    _close(net, again, 0.0)


def test_npz_round_trip_is_exact(tmp_path):
    net = _net(3)
    back = load_npz(save_npz(net, tmp_path / "n.npz"))
    assert back.layer_names == net.layer_names
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in net.layers]
    assert back.input_shape == (3, 2, 2)
    for a, b in zip(net.layers, back.layers):
        for field in ("W", "b", "scale", "shift", "shape"):
            if hasattr(a, field):
                assert np.array_equal(getattr(a, field), getattr(b, field))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.npz"]


def test_bad_npz_files(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        load_npz(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(ModelFileError, match="junk.npz is not a mipcert network file"):
        load_npz(tmp_path / "junk.npz")
    np.savez(tmp_path / "plain.npz", W=np.ones(3))
    with pytest.raises(ModelFileError, match="no __meta__"):
        load_npz(tmp_path / "plain.npz")
    good = save_npz(_net(), tmp_path / "good.npz")
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(tmp_path / "cut.npz", "w") as zout:
        for item in zin.infolist():
            if item.filename != "L2.W.npy":
                zout.writestr(item, zin.read(item.filename))
    with pytest.raises(ModelFileError, match="damaged"):
        load_npz(tmp_path / "cut.npz")
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="trunc.npz"):
        load_npz(tmp_path / "trunc.npz")


def test_failed_write_leaves_nothing(tmp_path):
    class Odd(Layer):
        def forward(self, x):
            return x

        def as_affine(self, n):
            return np.eye(n), np.zeros(n)

    net = Network([Dense(np.ones((2, 2)), np.zeros(2)), Odd()], (2,))
    with pytest.raises(UnsupportedError, match="Odd"):
        save_npz(net, tmp_path / "odd.npz")
    with pytest.raises(UnsupportedError, match="Odd"):
        save_onnx(net, tmp_path / "odd.onnx")
    with pytest.raises(ModelFileError, match="does not exist"):
        save_npz(_net(), tmp_path / "no" / "such" / "dir.npz")
    assert list(tmp_path.iterdir()) == []
