"""The ``mipcert`` command end to end: verify, export, and bad input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import highspy
import numpy as np
import pytest
from onnx import helper

from mipcert.cli import main
from mipcert.io import load_network, parse_vnnlib, save_onnx
from mipcert.network import mlp
from mipcert.spec import Clause, Region, Specification
from mipcert.io import write_vnnlib

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_problem(tmp_path):
    """A random 3-8-8-2 network and a property whose truth depends on the box."""
    rng = np.random.default_rng(7)
    sizes = [3, 8, 8, 2]
    net = mlp([rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])],
              [rng.normal(size=o) * 0.3 for o in sizes[1:]])
    x0 = np.array([0.1, -0.2, 0.3])
    y0 = net.forward(x0)
    label = int(np.argmax(y0))
    C = np.zeros((1, 2))
    C[0, label], C[0, 1 - label] = 1.0, -1.0     # unsafe: z_label <= z_other

    def make(eps, name):
        spec = Specification([Region(x0 - eps, x0 + eps, [Clause(C, [0.0])])], 3, 2)
        path = tmp_path / name
        write_vnnlib(spec, path)
        return path

    onnx_path = tmp_path / "net.onnx"
    save_onnx(net, onnx_path)
    return net, onnx_path, make


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_verify_unsat_and_sat_with_json(small_problem, capsys, tmp_path):
    net, onnx_path, make = small_problem
    code, out, _ = run_cli(capsys, "verify", onnx_path, make(0.01, "small.vnnlib"))
    assert code == 0 and out.splitlines()[0] == "unsat"
    code, out, _ = run_cli(capsys, "verify", onnx_path, make(3.0, "large.vnnlib"), "--json",
                           "--result-file", tmp_path / "res.txt")
    data = json.loads(out)
    assert code == 0 and data["verdict"] == "sat"
    x = np.array(data["counterexample"]["x"])
    y = net.forward(x)
    assert np.allclose(y, data["counterexample"]["y"])
    text = (tmp_path / "res.txt").read_text()
    assert text.startswith("sat\n((X_0 ")
    assert "(Y_1 " in text


def test_lp_relaxation_never_says_sat(small_problem, capsys):
    _, onnx_path, make = small_problem
    code, out, _ = run_cli(capsys, "verify", onnx_path, make(3.0, "large.vnnlib"),
                           "--relaxation", "lp", "--no-attack")
    assert code == 0 and out.splitlines()[0] in ("unknown", "unsat")
    assert out.splitlines()[0] == "unknown"


@pytest.mark.parametrize("fmt", ["lp", "mps"])
def test_export_round_trip_through_highs(small_problem, capsys, tmp_path, fmt):
    net, onnx_path, make = small_problem
    from mipcert.solve import solve
    from mipcert.verify.export import margin_model

    for eps, name in ((0.01, "small.vnnlib"), (3.0, "large.vnnlib")):
        prop = make(eps, name)
        out_file = tmp_path / f"model.{fmt}"
        code, out, _ = run_cli(capsys, "export", onnx_path, prop, "-o", out_file)
        assert code == 0 and out_file.exists()
        first = out_file.read_bytes()
        run_cli(capsys, "export", onnx_path, prop, "-o", out_file)
        assert out_file.read_bytes() == first, "export is not deterministic"
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        assert h.readModel(str(out_file)) == highspy.HighsStatus.kOk
        h.run()
        file_opt = h.getInfo().objective_function_value
        spec = parse_vnnlib(prop, 3, 2)
        in_memory = solve(margin_model(load_network(onnx_path), spec.regions[0]), "highs")
        assert file_opt == pytest.approx(in_memory.value, abs=1e-6)
        # the sign of the optimum is the verdict
        code, out, _ = run_cli(capsys, "verify", onnx_path, prop)
        assert out.splitlines()[0] == ("unsat" if file_opt > 0 else "sat")


def test_export_names_are_readable(small_problem, capsys, tmp_path):
    _, onnx_path, make = small_problem
    out_file = tmp_path / "m.lp"
    run_cli(capsys, "export", onnx_path, make(0.3, "p.vnnlib"), "-o", out_file)
    text = out_file.read_text()
    assert "net.layer0_affine" in text.replace("_", "_") or "layer0_affine" in text
    assert "net.x(0)" in text or "x(0)" in text


# ------------------------------------------------------------------ bad input: exit code 2
def _expect_error(capsys, *argv, match):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert match.lower() in err.lower(), err
    return err


def test_truncated_onnx(small_problem, capsys, tmp_path):
    _, onnx_path, make = small_problem
    bad = tmp_path / "truncated.onnx"
    data = onnx_path.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    _expect_error(capsys, "verify", bad, make(0.1, "p.vnnlib"), match="truncated.onnx")


def test_unsupported_op(capsys, tmp_path, make_onnx):
    path = make_onnx([helper.make_node("Sigmoid", ["x"], ["y"], name="squash")], {}, [1, 2],
                     [1, 2], name="sig.onnx")
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                    "(declare-const Y_1 Real)\n(assert (>= X_0 0))\n(assert (<= X_0 1))\n"
                    "(assert (>= X_1 0))\n(assert (<= X_1 1))\n(assert (<= Y_0 Y_1))\n")
    _expect_error(capsys, "verify", path, prop, match="Sigmoid")


def test_vnnlib_syntax_error_and_undeclared_variable(small_problem, capsys, tmp_path):
    _, onnx_path, _ = small_problem
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)\n(assert (<= X_0 1)\n")
    _expect_error(capsys, "verify", onnx_path, bad, match="bad.vnnlib")
    undeclared = tmp_path / "undeclared.vnnlib"
    undeclared.write_text("".join(f"(declare-const X_{i} Real)\n(assert (>= X_{i} 0))\n"
                                  f"(assert (<= X_{i} 1))\n" for i in range(3))
                          + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n(assert (<= Y_7 0))\n")
    _expect_error(capsys, "verify", onnx_path, undeclared, match="Y_7")


def test_mismatched_input_size(small_problem, capsys, tmp_path):
    _, onnx_path, _ = small_problem
    prop = tmp_path / "one_input.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
                    "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (<= Y_0 Y_1))\n")
    _expect_error(capsys, "verify", onnx_path, prop, match="input")


def test_nan_weights(capsys, tmp_path, make_onnx):
    path = make_onnx([helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1, name="fc")],
                     {"W": np.array([[1.0, np.nan]]), "b": np.zeros(1)}, [1, 2], [1, 1],
                     name="nan.onnx")
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n"
                    "(assert (>= X_0 0))\n(assert (<= X_0 1))\n(assert (>= X_1 0))\n"
                    "(assert (<= X_1 1))\n(assert (<= Y_0 0))\n")
    _expect_error(capsys, "verify", path, prop, match="nan")


def test_missing_solver(small_problem):
    """A fresh interpreter in which gurobipy cannot be imported, as on a machine without it."""
    _, onnx_path, make = small_problem
    code = ("import sys, importlib.abc\n"
            "class NoGurobi(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] == 'gurobipy':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, NoGurobi())\n"
            "from mipcert.cli import main\n"
            f"sys.exit(main(['verify', {str(onnx_path)!r}, {str(make(0.5, 'p.vnnlib'))!r}, "
            "'--solver', 'gurobi']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith("error: ") and "gurobipy" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_export_to_missing_folder_leaves_no_file(small_problem, capsys, tmp_path):
    _, onnx_path, make = small_problem
    target = tmp_path / "nope" / "m.lp"
    _expect_error(capsys, "export", onnx_path, make(0.1, "p.vnnlib"), "-o", target, match="nope")
    assert not target.exists()


def test_real_entry_point_exit_code(tmp_path):
    """The installed console script: a missing file is exit 2 with a one-line message."""
    proc = subprocess.run([sys.executable, "-m", "mipcert.cli", "verify", str(tmp_path / "no.onnx"),
                           str(tmp_path / "no.vnnlib")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


@pytest.mark.parametrize("fmt", ["lp", "mps"])
def test_exported_tight_margin_bound_is_not_called_infeasible(capsys, tmp_path, fmt):
    """alpha-CROWN's clause margin bound of this 2-input network (found by fuzzing) is within
    1.5e-9 of the true minimum; written as the epigraph variable's bound, HiGHS's default
    presolve called the exported model infeasible although onnxruntime reaches margin
    -0.54637 at (0.57709, -1.90962). The bound is now widened by 1e-7 relative."""
    import onnxruntime as ort

    data = Path(__file__).resolve().parents[1] / "data" / "export_tight"
    out_file = tmp_path / f"model.{fmt}"
    code, _, _ = run_cli(capsys, "export", data / "net.onnx", data / "prop.vnnlib", "-o",
                         out_file, "--bounds", "alpha")
    assert code == 0
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    assert h.readModel(str(out_file)) == highspy.HighsStatus.kOk
    h.run()                                   # default options: presolve on
    assert h.modelStatusToString(h.getModelStatus()) == "Optimal"
    sess = ort.InferenceSession(str(data / "net.onnx"))
    x = np.array([[0.5770858759334995, -1.9096200108120605]], np.float32)
    y = sess.run(None, {sess.get_inputs()[0].name: x})[0][0].astype(np.float64)
    C, d = np.array([[-1.444, -0.021], [0.629, 1.125]]), np.array([0.4391, 1.1121])
    assert h.getInfo().objective_function_value <= (C @ y - d).max() + 1e-6 < 0
