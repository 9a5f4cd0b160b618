"""Fan-out (local processes, a real Dask LocalCluster), the agt / agt-table / export-agt
command lines, and bad input: one-line errors, exit 2, no partial output file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mipcert.agt.instance import PerturbationConfig
from mipcert.agt.mip_agt import mip_agt
from mipcert.cli import main

from .helpers import tiny_run

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "instances" / "agt_moons_mlp_small.toml"
FLIP = PerturbationConfig(kind="label_flip", k=1, flips=True)

SVM_TINY = """
name = "svm_tiny"
[data]
source = "moons"
n_samples = 24
noise = 0.1
random_state = 0
n_test = 12
features = "poly3"
labels = "pm1"
[model]
hidden = []
bias = false
init = "zeros"
[training]
loss = "hinge"
lr = 1.0
batch_size = 6
epochs = 2
[perturbation]
kind = "label_flip"
k = 1
"""


@pytest.fixture
def svm_tiny(tmp_path):
    p = tmp_path / "svm_tiny.toml"
    p.write_text(SVM_TINY)
    return p


@pytest.mark.slow
def test_boxes_identical_for_any_number_of_workers_and_on_dask():
    from dask.distributed import LocalCluster

    run = tiny_run("hinge", (), n=10, steps=2, batch=5, seed=8)
    serial = mip_agt(run, FLIP, "milp", 1, params_per_job=1)
    procs = mip_agt(run, FLIP, "milp", 1, workers=2, params_per_job=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        dask = mip_agt(run, FLIP, "milp", 1, scheduler=cluster.scheduler_address,
                       params_per_job=1)
    for other in (procs, dask):
        np.testing.assert_array_equal(serial.lower, other.lower)
        np.testing.assert_array_equal(serial.upper, other.upper)


def test_agt_json_is_one_document_with_windows(svm_tiny, capsys):
    assert main(["agt", str(svm_tiny), "--method", "milp", "--horizon", "2", "--json",
                 "--faces", "2", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "milp" and out["horizon"] == 2
    assert [(w["start"], w["stop"]) for w in out["windows"]] == [(0, 2), (2, 4)]
    rec = out["windows"][0]["solves"][0]
    assert {"status", "bound", "gap", "seconds"} <= set(rec)
    assert out["total_width"] <= out["interval_total_width"] + 1e-9
    assert len(out["faces"]["bounds"]) == 2
    assert "polytope_certified_stable" in out["certificates"]
    assert out["certificates"]["polytope_certified_stable"] >= out["certificates"]["certified_stable"]


@pytest.mark.slow
def test_agt_json_stdout_clean_in_a_fresh_process(svm_tiny):
    """The first HiGHS object of a process prints a banner on fd 1: it must not reach stdout."""
    proc = subprocess.run([sys.executable, "-m", "mipcert.cli", "agt", str(svm_tiny),
                           "--method", "lp", "--horizon", "full", "--json", "--workers", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)


def test_agt_methods_are_ibp_and_the_four_relaxations():
    from mipcert.relaxation import AGT_METHODS, Relaxation
    assert AGT_METHODS[0] == "ibp"
    assert sorted(AGT_METHODS[1:]) == sorted(r.label for r in Relaxation)


@pytest.mark.parametrize("argv,needle", [
    (["--method", "simplex"], "invalid choice"),
    (["--method", "milp", "--horizon", "0"], "horizon 0"),
    (["--method", "milp", "--horizon", "abc"], "horizon 'abc'"),
    (["--method", "miqcp", "--solver", "highs"], "HiGHS cannot solve"),
    (["--method", "milp", "--workers", "0"], "--workers 0"),
    (["--method", "ibp", "--faces", "2"], "--faces needs"),
    (["--method", "milp", "--tighten-every", "0"], "tighten_every 0"),
])
def test_agt_bad_input(argv, needle, capsys):
    path = SMALL
    try:
        code = main(["agt", str(path), *argv, "--quiet"])
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err


def test_agt_table_csv_json_plot_and_exact_check(svm_tiny, tmp_path, capsys):
    out = tmp_path / "t"
    assert main(["agt-table", str(svm_tiny), "--methods", "ibp,lp,milp", "--horizons", "1,full",
                 "--exact-check", "--json", f"{out}.json", "--csv", f"{out}.csv",
                 "--plot", f"{out}.png", "--quiet"]) == 0
    table = json.loads(Path(f"{out}.json").read_text())
    rows = {(r["method"], r["horizon"]): r for r in table["rows"]}
    assert set(rows) == {("ibp", "-"), ("lp", "1"), ("lp", "full"), ("milp", "1"),
                         ("milp", "full")}
    assert all(r["contains_hull"] for r in table["rows"])
    hull = table["hull"]["total_width"]
    assert rows[("milp", "full")]["total_width"] == pytest.approx(hull, rel=1e-4, abs=1e-6)
    assert rows[("milp", "full")]["attained_lower"] == table["n_params"]
    assert rows[("milp", "1")]["total_width"] >= rows[("milp", "full")]["total_width"] - 1e-6
    assert Path(f"{out}.png").stat().st_size > 1000
    assert Path(f"{out}.csv").read_text().startswith("method,horizon")


def test_agt_table_bad_method_writes_nothing(svm_tiny, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["agt-table", str(svm_tiny), "--methods", "ibp,foo", "--json", str(out)]) == 2
    assert "unknown method 'foo'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("method,fmt,reader", [("milp", "mps", "highs"), ("miqcp", "lp", "scip")])
def test_export_agt_is_deterministic_and_readable(method, fmt, reader, tmp_path, capsys):
    files = []
    for k in range(2):
        f = tmp_path / f"w{k}.{fmt}"
        assert main(["export-agt", str(SMALL), "--method", method, "--horizon", "1",
                     "--window", "1", "--objective", "max W0[0,1]", "-o", str(f)]) == 0
        files.append(f.read_bytes())
    assert files[0] == files[1]
    path = tmp_path / f"w0.{fmt}"
    if reader == "highs":
        from mipcert.quiet import new_highs
        h = new_highs()
        h.setOptionValue("output_flag", False)
        assert str(h.readModel(str(path))).endswith("kOk")
        assert h.getNumCol() > 0
    else:
        import pyscipopt
        m = pyscipopt.Model()
        m.hideOutput()
        m.readProblem(str(path))
        assert m.getNVars() > 0
        assert any(c.getConshdlrName() in ("quadratic", "nonlinear") for c in m.getConss())


def test_export_agt_bad_objective(tmp_path, capsys):
    f = tmp_path / "w.lp"
    assert main(["export-agt", str(SMALL), "--objective", "max nothing[0]", "-o", str(f)]) == 2
    assert "no parameter" in capsys.readouterr().err
    assert not f.exists()


def test_agt_table_solves_a_linear_models_twin_methods_once(svm_tiny, tmp_path, capsys):
    # a linear SVM under label flips has no product of two continuous variables: MIQCP
    # builds the MILP's model and QCP the LP's, so each pair is solved once
    out = tmp_path / "t.json"
    assert main(["agt-table", str(svm_tiny), "--methods", "miqcp,milp,lp,qcp", "--horizons",
                 "1", "--json", str(out), "--quiet"]) == 0
    rows = {r["method"]: r for r in json.loads(out.read_text())["rows"]}
    assert "same_model_as" not in rows["miqcp"] and rows["milp"]["same_model_as"] == "miqcp"
    assert "same_model_as" not in rows["lp"] and rows["qcp"]["same_model_as"] == "lp"
    assert rows["milp"]["total_width"] == rows["miqcp"]["total_width"]
    assert rows["qcp"]["total_width"] == rows["lp"]["total_width"]
    assert rows["milp"]["total_width"] < rows["lp"]["total_width"]
    assert "solved once, shown twice" in capsys.readouterr().out


def test_a_run_over_the_gurobi_size_limit_is_refused_before_any_solve(tmp_path, capsys):
    pytest.importorskip("gurobipy")
    from mipcert.solve import available_solvers
    from mipcert.solve.gurobi import licence_is_size_limited

    if "gurobi" not in available_solvers() or not licence_is_size_limited():
        pytest.skip("needs gurobipy with pip's size-limited licence")
    from pathlib import Path
    svm = Path(__file__).resolve().parents[2] / "instances" / "agt_moons_svm.toml"
    assert main(["agt", str(svm), "--method", "milp", "--horizon", "3", "--solver", "gurobi",
                 "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    # one line, and no step proved first: refused from the model sizes, before any solve
    assert err.count("\n") == 1 and "size-limited" in err and "steps 6..8" in err
    assert "proved" not in err
