"""``mipcert verify --json`` prints exactly one strict JSON document on standard output,
whatever the solver prints, on every path: falsification, input splitting, the MILP
(HiGHS and SCIP), early stops and time-outs.

The runs are real: the CLI's ``main`` under ``capfd`` (file-descriptor capture, so C-level
solver output would be caught) and, for the HiGHS banner that a process prints once, fresh
subprocesses.
"""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mipcert.cli import main
from mipcert.io import save_onnx, write_vnnlib
from mipcert.network import mlp
from mipcert.spec import Clause, Region, Specification

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
VNNCOMP = REPO.parent / "shared" / "vnncomp"
ROWS = list(csv.DictReader(open(VNNCOMP / "verdicts.csv"))) if (VNNCOMP / "verdicts.csv").exists() else []
SMALL_ROWS = [r for r in ROWS if r["onnx"].startswith("test/")]


def strict_json(text: str) -> dict:
    """Parse ``text`` as exactly one JSON document, refusing ``Infinity`` / ``NaN``."""
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=no_constants)


def run_json(capfd, *argv) -> dict:
    code = main([str(a) for a in argv] + ["--json"])
    out, _ = capfd.readouterr()
    assert code == 0
    return strict_json(out)


@pytest.fixture(scope="module")
def own_problem(tmp_path_factory):
    """A random 4-12-12-3 network (ONNX) and properties: one false (large box), one true
    but not provable by CROWN alone (so the MILP must run)."""
    tmp = tmp_path_factory.mktemp("clean")
    rng = np.random.default_rng(3)
    sizes = [4, 12, 12, 3]
    net = mlp([rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])],
              [rng.normal(size=o) * 0.3 for o in sizes[1:]])
    x0 = np.array([0.2, -0.1, 0.3, 0.05])
    label = int(np.argmax(net.forward(x0)))
    clauses = []
    for j in range(3):
        if j != label:
            C = np.zeros((1, 3))
            C[0, label], C[0, j] = 1.0, -1.0  # unsafe: z_label <= z_j
            clauses.append(Clause(C, [0.0]))
    onnx_path = tmp / "net.onnx"
    save_onnx(net, onnx_path)
    paths = {}
    for name, eps in [("large", 2.0), ("small", 0.002), ("medium", 0.1)]:
        spec = Specification([Region(x0 - eps, x0 + eps, clauses)], 4, 3)
        paths[name] = tmp / f"{name}.vnnlib"
        write_vnnlib(spec, paths[name])
    return net, onnx_path, paths


@pytest.mark.parametrize("flags", [[], ["--no-attack"], ["--no-attack", "--no-split"],
                                   ["--no-attack", "--no-split", "--solver", "scip"],
                                   ["--no-attack", "--no-split", "--relaxation", "lp"],
                                   ["--no-attack", "--timeout", "0.05"]],
                         ids=["default", "split", "milp-highs", "milp-scip", "lp", "early-timeout"])
@pytest.mark.parametrize("name", ["large", "small", "medium"])
def test_own_instances_print_one_json_document(own_problem, capfd, flags, name):
    net, onnx_path, paths = own_problem
    data = run_json(capfd, "verify", onnx_path, paths[name], *flags)
    assert data["verdict"] in ("sat", "unsat", "unknown", "timed-out")
    if name == "large" and "lp" not in flags and "0.05" not in flags:
        assert data["verdict"] == "sat"
    if data["verdict"] == "sat":  # the witness printed is a real one
        y = net.forward(np.array(data["counterexample"]["x"]))
        assert np.allclose(y, data["counterexample"]["y"])
    if name == "small" and "0.05" not in flags:
        assert data["verdict"] == "unsat"


@pytest.mark.skipif(not ROWS, reason="../shared/vnncomp is not present")
@pytest.mark.parametrize("flags", [[], ["--no-attack", "--no-split"],
                                   ["--no-attack", "--timeout", "0.2"]],
                         ids=["default", "milp", "early-timeout"])
@pytest.mark.parametrize("row", SMALL_ROWS, ids=lambda r: f"{Path(r['onnx']).stem}-{Path(r['vnnlib']).stem}")
def test_vnncomp_test_instances_print_one_json_document(capfd, row, flags):
    data = run_json(capfd, "verify", VNNCOMP / row["onnx"], VNNCOMP / row["vnnlib"], *flags)
    if "--timeout" not in flags:
        assert data["verdict"] == row["verdict"]
    else:
        assert data["verdict"] in (row["verdict"], "unknown", "timed-out")


@pytest.mark.skipif(not ROWS, reason="../shared/vnncomp is not present")
@pytest.mark.slow
@pytest.mark.parametrize("row", [r for r in ROWS if r not in SMALL_ROWS],
                         ids=lambda r: f"{Path(r['onnx']).stem}-{Path(r['vnnlib']).stem}")
def test_vnncomp_instances_json_under_a_short_timeout(capfd, row):
    """Every large instance, stopped early (splitting or MILP cut off by the time limit)."""
    data = run_json(capfd, "verify", VNNCOMP / row["onnx"], VNNCOMP / row["vnnlib"],
                    "--timeout", "2")
    assert data["verdict"] in (row["verdict"], "unknown", "timed-out")


ACAS = sorted((VNNCOMP / "acasxu").glob("*.onnx"))[:1] if VNNCOMP.exists() else []


@pytest.mark.skipif(not ACAS, reason="../shared/vnncomp is not present")
@pytest.mark.parametrize("vnnlib", sorted(DATA.glob("*.vnnlib")), ids=lambda p: p.stem)
def test_tests_data_properties_print_one_json_document(capfd, vnnlib):
    data = run_json(capfd, "verify", ACAS[0], vnnlib, "--timeout", "3")
    assert data["verdict"] in ("unsat", "unknown", "timed-out")  # property 1 holds


def _fresh_process(*argv):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mipcert.cli", *map(str, argv)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_highs_banner_stays_off_stdout_in_a_fresh_process(own_problem):
    """The first ``Highs()`` of a process prints a banner at C level: it must not reach
    stdout, in JSON mode or in the VNN-COMP text mode."""
    _, onnx_path, paths = own_problem
    proc = _fresh_process("verify", onnx_path, paths["medium"], "--no-attack", "--no-split",
                          "--json")
    assert proc.returncode == 0, proc.stderr
    data = strict_json(proc.stdout)
    assert data["stats"]["regions"][0].get("solves"), "the MILP path did not run"
    proc = _fresh_process("verify", onnx_path, paths["medium"], "--no-attack", "--no-split")
    assert proc.stdout.splitlines()[0] in ("sat", "unsat", "unknown", "timed-out")
    assert "HiGHS" not in proc.stdout


def test_new_highs_sends_its_banner_to_stderr():
    code = ("from mipcert.quiet import new_highs\n"
            "h = new_highs()\nprint('OK')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.stdout == "OK\n"
