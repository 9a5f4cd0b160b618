"""The VNN-LIB 2.0 solver command line: ``verify QUERY --network N=NET --timeout S`` and
``supports --CAPABILITY``, checked with the reference parser and, when installed, the
format checks of ``vnnlib-satisfactory``."""
import csv
from pathlib import Path

import numpy as np
import pytest

from mipcert.cli import main
from mipcert.io import parse_vnnlib, save_onnx, write_vnnlib
from mipcert.io.vnnlib2 import vnnlib2_text
from mipcert.network import mlp
from mipcert.spec import Clause, Region, Specification

pytest.importorskip("vnnlib")

REPO = Path(__file__).resolve().parents[2]
VNNCOMP = REPO.parent / "shared" / "vnncomp"
ROWS = list(csv.DictReader(open(VNNCOMP / "verdicts.csv"))) if (VNNCOMP / "verdicts.csv").exists() else []


def run_cli(capfd, *argv):
    code = main([str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def _to_2_0(path_1_0, nx, ny, target, shape=None):
    target.write_text(vnnlib2_text(parse_vnnlib(path_1_0, nx, ny), input_shape=shape))
    return target


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("v2")
    rng = np.random.default_rng(11)
    sizes = [3, 10, 10, 2]
    net = mlp([rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])],
              [rng.normal(size=o) * 0.3 for o in sizes[1:]])
    x0 = np.array([0.1, 0.4, -0.3])
    label = int(np.argmax(net.forward(x0)))
    C = np.zeros((1, 2))
    C[0, label], C[0, 1 - label] = 1.0, -1.0
    save_onnx(net, tmp / "net.onnx")
    props = {}
    for name, eps in [("unsat", 0.01), ("sat", 3.0)]:
        p1 = tmp / f"{name}_1.vnnlib"
        write_vnnlib(Specification([Region(x0 - eps, x0 + eps, [Clause(C, [0.0])])], 3, 2), p1)
        props[name] = (p1, _to_2_0(p1, 3, 2, tmp / f"{name}_2.vnnlib"))
    return net, tmp / "net.onnx", props


@pytest.mark.parametrize("name", ["unsat", "sat"])
def test_2_0_command_line_prints_the_verdict_alone(problem, capfd, name):
    net, onnx_path, props = problem
    p1, p2 = props[name]
    code, out, _ = run_cli(capfd, "verify", p2, "--network", f"N={onnx_path}", "--timeout", "20")
    assert code == 0 and out == f"{name}\n"
    # the 1.0 file and its 2.0 twin, both as NET PROP, give the same verdict
    for prop in (p1, p2):
        code, out, _ = run_cli(capfd, "verify", onnx_path, prop, "--timeout", "20")
        assert code == 0 and out.splitlines()[0] == name


def test_network_name_must_match_the_query(problem, capfd):
    _, onnx_path, props = problem
    code, out, err = run_cli(capfd, "verify", props["sat"][1], "--network", f"M={onnx_path}")
    assert code == 2 and out == "" and "declares network 'N'" in err
    code, out, err = run_cli(capfd, "verify", props["sat"][1], "--network", str(onnx_path))
    assert code == 2 and "NAME=PATH" in err


@pytest.mark.skipif(not ROWS, reason="../shared/vnncomp is not present")
@pytest.mark.parametrize("row", [r for r in ROWS if r["onnx"].startswith("test/")] +
                         [pytest.param(r, marks=pytest.mark.slow) for r in ROWS
                          if not r["onnx"].startswith("test/")],
                         ids=lambda r: f"{Path(r['onnx']).stem}-{Path(r['vnnlib']).stem}")
def test_vnncomp_1_0_files_and_their_2_0_equivalents_give_identical_verdicts(capfd, tmp_path, row):
    onnx_path, p1 = VNNCOMP / row["onnx"], VNNCOMP / row["vnnlib"]
    from mipcert.io import load_network

    net = load_network(onnx_path)
    shape = [1, 784] if net.input_size == 784 else None   # X[0,i] as the ONNX input is shaped
    p2 = _to_2_0(p1, net.input_size, net.output_size, tmp_path / "q.vnnlib", shape)
    code, out, _ = run_cli(capfd, "verify", p2, "--network", f"N={onnx_path}", "--timeout", "60")
    verdict_2 = out.strip()
    code, out, _ = run_cli(capfd, "verify", onnx_path, p1, "--timeout", "60")
    verdict_1 = out.splitlines()[0]
    assert verdict_1 == verdict_2 == row["verdict"]


CAPABILITIES = ["onnx-operators", "onnx-opset-versions", "vnnlib-versions",
                "serialise-assignments", "multiple-network-theories", "hidden-node-theories",
                "multiple-input-output-theories", "arithmetic-complexity-theories"]


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_supports_answers_one_item_a_line(capfd, capability):
    code, out, err = run_cli(capfd, "supports", f"--{capability}")
    assert code == 0 and err == "" and out.endswith("\n")
    lines = out.splitlines()
    assert lines and all(line.strip() == line and line for line in lines)


def test_supports_passes_the_compliance_format_checks(capfd):
    compliance = pytest.importorskip("vnntest.core.compliance")
    answers = {}
    for cap in ("onnx-opset-versions", "vnnlib-versions", "serialise-assignments"):
        code, out, _ = run_cli(capfd, "supports", f"--{cap}")
        answers[cap] = out
    assert compliance.validate_opset_versions(answers["onnx-opset-versions"]) is None
    assert compliance.validate_vnnlib_versions(answers["vnnlib-versions"]) is None
    assert compliance.validate_serialise_assignments(answers["serialise-assignments"]) is None


def test_declared_operators_never_include_approximated_ones(capfd):
    _, out, _ = run_cli(capfd, "supports", "--onnx-operators")
    ops = set(out.split())
    assert "Relu" in ops and "Gemm" in ops
    assert not ops & {"Sigmoid", "Softmax", "Pow", "Tanh", "Exp", "Log"}


def test_declared_operators_are_all_interpreted_and_encoded():
    from mipcert.cli.supports import DECLARED_OPS
    from mipcert.encode.graph import AFFINE, COMPARISONS, STRUCTURAL
    from mipcert.io.onnx_graph import GRAPH_OPS

    assert set(DECLARED_OPS) <= set(GRAPH_OPS)
    special = {"Constant", "ConstantOfShape", "Shape", "Relu", "MaxPool", "Max", "Min", "Not",
               "Where", "Cast"}
    assert set(DECLARED_OPS) <= set(STRUCTURAL) | set(AFFINE) | set(COMPARISONS) | special
