"""Fixtures for the io tests: the shared VNN-COMP files and small hand-built ONNX graphs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
VNNCOMP = (REPO / ".." / "shared" / "vnncomp").resolve()


def vnncomp_files(pattern: str) -> list[Path]:
    """Files of the shared VNN-COMP folder (empty when the folder is absent)."""
    return sorted(VNNCOMP.glob(pattern)) if VNNCOMP.is_dir() else []


def pytest_generate_tests(metafunc):
    """Tests taking ``onnx_file`` / ``vnnlib_file`` run once per shared file (skip if none)."""
    for arg, pattern in (("onnx_file", "*/*.onnx"), ("vnnlib_file", "*/*.vnnlib")):
        if arg in metafunc.fixturenames:
            files = vnncomp_files(pattern)
            params = [pytest.param(f, id=str(f.relative_to(VNNCOMP))) for f in files] or [
                pytest.param(None, marks=pytest.mark.skip(reason=f"no {pattern} in {VNNCOMP}"))]
            metafunc.parametrize(arg, params)


@pytest.fixture
def vnncomp() -> Path:
    if not VNNCOMP.is_dir():
        pytest.skip(f"{VNNCOMP} is absent")
    return VNNCOMP


@pytest.fixture
def make_onnx(tmp_path):
    """``make_onnx(nodes, inits, in_shape, out_shape, name=...)`` → path of a saved model.

    ``inits``: dict name → array (stored as float32 unless integer); the graph input is
    ``"x"`` and the output ``"y"``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def make(nodes, inits, in_shape, out_shape, name="model.onnx", opset=13, check=True):
        tensors = [numpy_helper.from_array(
            np.asarray(v) if np.asarray(v).dtype.kind in "iu" else np.asarray(v, np.float32), k)
            for k, v in inits.items()]
        graph = helper.make_graph(
            nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
            initializer=tensors)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        if check:
            onnx.checker.check_model(model)
        path = tmp_path / name
        onnx.save(model, str(path))
        return path

    return make
