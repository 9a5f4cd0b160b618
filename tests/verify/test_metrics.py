"""Metrics and the property-kind compare on random tiny instances: the inequalities of
``papers/004_*`` hold point by point, ``--json`` is one JSON document on stdout, and the
results are the same on 1 worker, local processes and a real Dask ``LocalCluster``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mipcert.cli import main
from mipcert.io import save_npz
from mipcert.network import mlp
from mipcert.verify.metrics import metrics
from mipcert.verify.props import PropertyConfig

KINDS = {
    "cr": PropertyConfig("cr"),
    "targeted": PropertyConfig("targeted", target=1),
    "sr": PropertyConfig("sr", delta=0.6),
    "lr": PropertyConfig("lr", L=6.0),
    "scr": PropertyConfig("scr", eta=0.7),
    "fairness": PropertyConfig("fairness", sensitive=[0], values=[[0.0, 1.0]]),
}
TOML_PARAMS = {"cr": "", "targeted": "target = 1", "sr": "delta = 0.6", "lr": "L = 6.0",
               "scr": "eta = 0.7", "fairness": "sensitive = [0]\nvalues = [[0.0, 1.0]]"}


def random_problem(seed, n0=3, m=3, points=3):
    rng = np.random.default_rng(seed)
    sizes = [n0, 6, 5, m]
    W = [rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    b = [rng.normal(size=o) * 0.3 for o in sizes[1:]]
    net = mlp(W, b)
    X = rng.uniform(0.1, 0.9, (points, n0))
    y = net.forward(X).argmax(axis=1)
    y[0] = (y[0] + 1) % m            # one misclassified point
    return net, X, y


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_metric_inequalities_hold_point_by_point(seed):
    net, X, y = random_problem(seed)
    for kind, config in KINDS.items():
        res = metrics(net, X, y, [0.05, 0.3], config, samples=200, timeout=20, workers=1,
                      seed=seed)
        assert res.conflicts == [], (kind, res.conflicts)
        for p in res.points:
            if p.satisfied:       # a proof leaves no violation for the attack or a sample
                assert p.secure and p.accuracy == 1.0, (kind, p)
            if not p.secure:
                assert not p.satisfied
        for s in res.summary():
            assert s["satisfaction"] <= s["security"] and s["satisfaction"] <= s["accuracy"]
            assert 0.0 <= s["accuracy"] <= 1.0


def write_instance(tmp_path, kind, eps="[0.02, 0.2]", net_seed=0):
    net, X, y = random_problem(net_seed)
    save_npz(net, tmp_path / "net.npz")
    np.savez(tmp_path / "pts.npz", X=X, y=y)
    text = f"""name = "tiny_{kind}"
[network]
path = "net.npz"
[data]
source = "points"
points = "pts.npz"
[property]
kind = "{kind}"
eps = {eps}
{TOML_PARAMS[kind]}
[solver]
timeout = 20.0
"""
    path = tmp_path / f"{kind}.toml"
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(KINDS))
def test_metrics_json_is_the_only_stdout(tmp_path, capfd, kind):
    inst = write_instance(tmp_path, kind)
    assert main(["metrics", str(inst), "--json", "--samples", "200", "--workers", "1"]) == 0
    out, err = capfd.readouterr()
    data = json.loads(out)          # one document, nothing else (banners go to stderr)
    assert data["property"].startswith(kind) and data["conflicts"] == []
    labels = np.load(tmp_path / "pts.npz")["y"]
    assert len(data["points"]) == 2 * (int(np.sum(labels != 1)) if kind == "targeted" else 3)
    assert [s["eps"] for s in data["summary"]] == [0.02, 0.2]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sr", "lr", "scr", "fairness", "targeted"])
def test_compare_table_for_every_kind(tmp_path, capsys, kind):
    inst = write_instance(tmp_path, kind)
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["compare", str(inst), "--plain", "-q", "--workers", "1", "--json",
                 str(out_json), "--plot", str(out_png)]) == 0
    text = capsys.readouterr().out
    assert "milp bound" in text and "summary" in text
    data = json.loads(out_json.read_text())
    assert data["property"].startswith(kind) and data["conflicts"] == []
    for p in data["points"]:
        ms = p["methods"]
        # every lower bound is below the attack's margin (an upper bound of the minimum)
        for m in ("ibp", "crown", "lp"):
            if ms[m]["bound"] is not None and p["attack_margin"] is not None:
                assert ms[m]["bound"] <= p["attack_margin"] + 1e-6, (kind, m, p)
        if ms["milp"]["status"] == "certified":
            assert not p["falsified"]
    assert out_png.read_bytes()[:4] == b"\x89PNG"


def test_metrics_plot_and_csv(tmp_path, capsys):
    inst = write_instance(tmp_path, "sr", eps="[0.02]")
    png, csv_path = tmp_path / "m.png", tmp_path / "m.csv"
    assert main(["metrics", str(inst), "--samples", "50", "--workers", "1", "-q", "--plot",
                 str(png), "--csv", str(csv_path)]) == 0
    assert "satisfaction" in capsys.readouterr().out
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert len(csv_path.read_text().splitlines()) == 1 + 3


def test_metrics_bad_arguments(tmp_path, capsys):
    inst = write_instance(tmp_path, "sr", eps="[0.02]")
    assert main(["metrics", str(inst), "--samples", "0", "--workers", "1"]) == 2
    assert "--samples" in capsys.readouterr().err
    assert main(["metrics", str(inst), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


@pytest.mark.slow
def test_same_results_on_processes_and_a_dask_local_cluster():
    from dask.distributed import LocalCluster

    from mipcert.verify.compare import compare
    from mipcert.verify.props.compare import compare_property

    net, X, y = random_problem(5)
    cfg = PropertyConfig("sr", delta=0.6)

    def key(res):
        return [(p.eps, p.index, p.satisfied, p.secure, p.accuracy, p.verdict)
                for p in res.points]

    def ckey(res):
        return [(p.eps, p.index, p.falsified, {m: (r.bound, r.status) for m, r in
                                              p.methods.items()}) for p in res.points]

    serial = metrics(net, X, y, [0.05, 0.2], cfg, samples=100, workers=1)
    procs = metrics(net, X, y, [0.05, 0.2], cfg, samples=100, workers=2)
    cr_serial = compare(net, X, y, [0.05, 0.2], ("crown", "lp", "milp"), workers=1)
    assert {p.methods["milp"].status for p in cr_serial.points} >= {"certified"}
    sr_serial = compare_property(net, X, y, [0.05], cfg, ("crown", "milp"), workers=1)
    assert key(serial) == key(procs)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        dask = metrics(net, X, y, [0.05, 0.2], cfg, samples=100, scheduler=address)
        cr_dask = compare(net, X, y, [0.05, 0.2], ("crown", "lp", "milp"), scheduler=address)
        sr_dask = compare_property(net, X, y, [0.05], cfg, ("crown", "milp"),
                                   scheduler=address)
    assert key(serial) == key(dask)
    assert ckey(cr_serial) == ckey(cr_dask)
    assert ckey(sr_serial) == ckey(sr_dask)


def test_unreachable_scheduler_is_a_clear_error(monkeypatch):
    from mipcert.errors import InputError
    from mipcert.verify import pointjobs
    from mipcert.verify.pointjobs import run_jobs

    monkeypatch.setattr(pointjobs, "CONNECT_TIMEOUT", 1)
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        run_jobs(abs, [1, 2], scheduler="tcp://127.0.0.1:1")
