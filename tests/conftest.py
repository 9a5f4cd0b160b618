"""Fixtures shared by every test package."""
from __future__ import annotations

import numpy as np
import pytest


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
