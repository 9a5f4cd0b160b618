"""``mipcert repair`` end to end: the table, one JSON document, the corrected ONNX file (read
back and verified by ``mipcert verify``), and bad input (exit 2, one line, no output file)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mipcert.cli import main
from mipcert.io import load_network, write_vnnlib
from mipcert.spec import robustness_spec

from .conftest import MODELS

FAST = """
[model]
path = "{model}"
[attack]
kind = "{attack}"
eps = {eps}
[correction]
n_adv = {n_adv}
layers = {layers}
rounds = 2
delta = {delta}
max_change = {max_change}
norm = {norm}
[baseline]
epochs = 1
pgd_steps = 1
[certify]
n_points = {n_points}
eps_cert = 0.01
timeout = 5.0
"""


def _instance(tmp_path, **kw):
    values = dict(model=MODELS / "digits_mlp.onnx", attack="fgsm", eps=0.1, n_adv=5,
                  layers='"last"', delta=0.5, max_change=10.0, norm='["l2", "linf_l1"]',
                  n_points=0)
    values.update(kw)
    path = tmp_path / "inst.toml"
    path.write_text(FAST.format(**values))
    return path


@pytest.mark.slow
def test_json_is_one_document_and_the_onnx_output_verifies(tmp_path, capfd, digits_split):
    out = tmp_path / "corrected.onnx"
    inst = _instance(tmp_path, n_points=2, attack="pgd")
    assert main(["repair", str(inst), "--json", "--quiet", "-o", str(out),
                 "--plot", str(tmp_path / "pool.png")]) == 0
    captured = capfd.readouterr()
    doc = json.loads(captured.out)            # exactly one JSON document on stdout
    names = [r["network"] for r in doc["rows"]]
    assert names == ["original", "corrected (l2)", "corrected (linf_l1)",
                     "fine-tuning (given set)", "PGD fine-tuning"]
    l2 = doc["corrections"]["l2"]
    assert set(doc["corrections"]["l2"]["picks"]) == {"0.0", "0.2", "0.4"}
    assert doc["output"] == str(out) and (tmp_path / "pool.png").stat().st_size > 0
    for r in doc["rows"]:
        assert r["certify"]["points"] == 2
        assert r["certify"]["certified"] + r["certify"]["falsified"] + r["certify"]["open"] == 2
    # the ONNX file holds the pick of the l2 pool and feeds `mipcert verify`
    net = load_network(out)
    member = l2["pool"][l2["pick"]]
    row = doc["rows"][1]
    assert row["violated"] == member["violated"]
    _, Xte, _, yte = digits_split
    assert np.mean(net.forward(Xte).argmax(1) == yte) == pytest.approx(row["clean_acc"],
                                                                       abs=1 / len(yte))
    prop = tmp_path / "p.vnnlib"
    write_vnnlib(robustness_spec(Xte[0], int(yte[0]), 0.005, 10), prop)
    assert main(["verify", str(out), str(prop)]) == 0
    assert capfd.readouterr().out.split()[0] in ("unsat", "sat")


def test_table_output(tmp_path, capfd):
    assert main(["repair", str(_instance(tmp_path, norm='"linf_l1"')), "--quiet"]) == 0
    out = capfd.readouterr().out
    assert "corrected (linf_l1)" in out and "PGD fine-tuning" in out and "efficacy" in out
    lines = out.splitlines()
    header = next(l for l in lines if l.startswith("network"))
    gain = header.index("FGSM gain pp")
    original = next(l for l in lines if l.startswith("original "))
    assert original[gain:].split()[0] == "+0.0"
    assert lines[-1].startswith("paper: MNIST CNN") and ">= +40" in lines[-1]


@pytest.mark.parametrize("kw, match", [
    ({"eps": -0.1}, "eps = -0.1"),
    ({"layers": '["nope"]'}, "unknown layer 'nope'"),
    ({"n_adv": 5000}, "n_adv = 5000"),
    ({"norm": '"l3"'}, "norm"),
])
def test_bad_input_exits_2_without_output(tmp_path, capfd, kw, match):
    out = tmp_path / "corrected.onnx"
    assert main(["repair", str(_instance(tmp_path, **kw)), "-o", str(out), "--quiet"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and match in err[0]
    assert not out.exists()


def test_infeasible_correction_is_stated_and_writes_nothing(tmp_path, capfd):
    out = tmp_path / "corrected.onnx"
    inst = _instance(tmp_path, delta=1e4, max_change=1e-3, norm='"l2"')
    assert main(["repair", str(inst), "-o", str(out), "--quiet"]) == 1
    captured = capfd.readouterr()
    assert "infeasible" in captured.out and "infeasible" in captured.err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [inst]
