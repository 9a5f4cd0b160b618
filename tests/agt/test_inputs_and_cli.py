"""Bad input is refused clearly; the CLI prints one JSON object; the reference is right."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mipcert.agt.instance import load_instance, parse_instance
from mipcert.cli import main
from mipcert.errors import InputError
from mipcert.network import training as ref

from .helpers import small_doc

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("section,key", [("data", "n_sample"), ("training", "learning_rate"),
                                         ("perturbation", "epsilon"), ("model", "widths")])
def test_unknown_keys_are_refused_by_name(section, key):
    doc = small_doc(kind="bounded", eps=0.1)
    doc[section][key] = 1
    with pytest.raises(InputError, match=key):
        parse_instance(doc)


@pytest.mark.parametrize("change,match", [
    (lambda d: d["perturbation"].update(k=99), "larger than the batch"),
    (lambda d: d["perturbation"].update(kind="bounded", eps=-0.1), "eps"),
    (lambda d: d["perturbation"].update(kind="substitution"), "clip"),
    (lambda d: d["perturbation"].update(kind="removal", k=16), "empty"),
    (lambda d: d["training"].update(loss="hinge"), "pm1"),
])
def test_bad_values_give_clear_errors(change, match):
    doc = small_doc()
    change(doc)
    with pytest.raises(InputError, match=match):
        parse_instance(doc)


def test_all_instances_load():
    for path in sorted((ROOT / "instances").glob("agt_*.toml")):
        load_instance(path)


def test_cli_json_one_object(capsys):
    assert main(["agt", str(ROOT / "instances/agt_moons_svm.toml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("param_names", "param_nominal", "param_lower", "param_upper", "total_width",
                "seconds", "layers", "loss", "clip", "perturbation", "init", "batches", "lr",
                "X", "y"):
        assert key in out
    assert len(out["param_names"]) == 10 and len(out["batches"]) == 14
    assert out["total_width"] == pytest.approx(sum(np.subtract(out["param_upper"],
                                                               out["param_lower"])))
    # the JSON alone replays the nominal run
    layers = [ref.LayerShape(*l["shape"], l["bias"]) for l in out["layers"]]
    theta = ref.train(np.array(out["theta0"]), layers, np.array(out["X"]), np.array(out["y"]),
                      out["batches"], out["lr"], out["loss"], out["clip"])
    np.testing.assert_allclose(theta, out["param_nominal"], rtol=1e-12)


def test_cli_train_json_and_errors(capsys, tmp_path):
    assert main(["train", str(ROOT / "instances/agt_digits_flip.toml"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "param_nominal" in out and "batches" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nsource = "moons"\nbogus = 1\n[training]\nloss="bce"\nlr=1.0\n'
                   'batch_size=4\nepochs=1\n')
    assert main(["agt", str(bad)]) == 2
    assert "bogus" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["agt", str(ROOT / "instances/agt_moons_svm.toml"), "--device", "cuda"]) == 2
        assert "CUDA" in capsys.readouterr().err


def test_plot_is_written(tmp_path):
    png = tmp_path / "moons.png"
    assert main(["agt", str(ROOT / "instances/agt_moons_svm.toml"), "--plot", str(png),
                 "--json"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("loss", ["bce", "cross_entropy", "squared"])
def test_reference_gradients_match_autograd(loss):
    rng = np.random.default_rng(0)
    layers = [ref.LayerShape(5, 3, True), ref.LayerShape(3 if loss == "cross_entropy" else 1, 5,
                                                         True)]
    theta = rng.normal(size=ref.param_count(layers))
    X = rng.normal(size=(4, 3))
    y = {"bce": rng.integers(0, 2, 4), "cross_entropy": rng.integers(0, 3, 4),
         "squared": rng.normal(size=4)}[loss].astype(float)
    G = ref.per_sample_grads(theta, layers, X, y, loss)
    for i in range(4):
        t = torch.tensor(theta, requires_grad=True)
        pos, a = 0, torch.tensor(X[i:i + 1])
        for l, s in enumerate(layers):
            W = t[pos:pos + s.out * s.inp].view(s.out, s.inp)
            pos += s.out * s.inp
            a = a @ W.T + t[pos:pos + s.out]
            pos += s.out
            if l == 0:
                a = torch.relu(a)
        yi = torch.tensor(y[i:i + 1])
        L = {"bce": lambda: torch.nn.functional.binary_cross_entropy_with_logits(a[:, 0], yi),
             "cross_entropy": lambda: torch.nn.functional.cross_entropy(a, yi.long()),
             "squared": lambda: ((a[:, 0] - yi) ** 2).sum()}[loss]()
        (g,) = torch.autograd.grad(L, t)
        np.testing.assert_allclose(G[i], g.numpy(), rtol=1e-10, atol=1e-12)


def test_hinge_derivative_is_zero_at_the_kink():
    z = np.array([[1.0], [0.5], [-1.0]])
    d = ref.loss_delta(z, np.array([1.0, 1.0, -1.0]), "hinge")
    assert d[:, 0].tolist() == [0.0, -1.0, 0.0]
