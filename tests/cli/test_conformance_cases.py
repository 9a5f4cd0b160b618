"""A handful of ``vnnlib-satisfactory``'s own test cases, run through ``mipcert verify``
in-process: each case module builds its ONNX model (onnxscript) and its VNN-LIB 2.0 query,
and states the expected verdict."""
import importlib.util
import sys
from pathlib import Path

import onnx
import pytest

from mipcert.cli import main

tests_dir = pytest.importorskip("vnntest.core.paths").CASES_DIR
pytest.importorskip("onnxscript")

CASES = ["maxpool/maxpool03", "where/where05", "where/where06", "equal/equal01",
         "equal/equal02", "cast/cast05", "cast/cast08", "split/split08", "gather/gather05",
         "slice/slice05", "multi_io/multi_io03", "hidden/hidden03", "network_equal/network_equal01",
         "network_multiple/network_multiple01",
         "network_isomorphic/network_isomorphic01", "arithmetic_lin/arithmetic_lin02",
         "mul/mul03", "div/div02", "constantofshape/constantofshape06"]


def _load(case):
    path = Path(tests_dir) / f"{case}.py"
    if not path.exists():
        pytest.skip(f"{case} is not in this vnnlib-satisfactory")
    spec = importlib.util.spec_from_file_location(f"mipcert_case_{case.replace('/', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", CASES)
def test_suite_case_gets_its_expected_verdict(tmp_path, capfd, case):
    module = _load(case)
    onnx_path, query = tmp_path / "net.onnx", tmp_path / "query.vnnlib"
    onnx.save(module.build_onnx_model(), str(onnx_path))
    text = module.build_vnnlib_spec()
    query.write_text(text if isinstance(text, str) else text[0])
    from mipcert.io.vnnlib2_query import read_query

    # as the driver does: every network but those equal-to another gets the file
    nets = [a for n in read_query(query).networks if not n.equal_to
            for a in ("--network", f"{n.name}={onnx_path}")]
    code = main(["verify", str(query), *nets, "--timeout", "30"])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert out == module.return_expected_output().lower() + "\n"


def test_net_query_form_also_reaches_the_graph_path(tmp_path, capfd):
    module = _load("where/where06")
    onnx.save(module.build_onnx_model(), str(tmp_path / "net.onnx"))
    (tmp_path / "q.vnnlib").write_text(module.build_vnnlib_spec())
    code = main(["verify", str(tmp_path / "net.onnx"), str(tmp_path / "q.vnnlib")])
    out, err = capfd.readouterr()
    assert code == 0, err
    assert out.splitlines()[0] == "sat" and "(X_0 " in out   # the witness follows
