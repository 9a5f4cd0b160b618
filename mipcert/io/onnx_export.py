""":class:`~mipcert.network.Network` → ONNX file, built node by node with ``onnx.helper``.

The file has one input ``"input"`` of shape ``[1, n]`` (float32) and one output ``"output"``
of shape ``[1, m]``; Dense → Gemm (``transB=1``), a Dense that is a lowered convolution
(``layer.conv``) → Reshape + Conv + Flatten (so a changed kernel is still one kernel on re-import),
ReLU → Relu, Reshape → Flatten (a no-op on ``[1, n]``), Affine → Mul + Add. Weights are stored as float32, so the file reproduces the
float64 network up to float32 rounding (checked with onnxruntime before writing).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import ModelFileError, UnsupportedError
from ..network import Affine, Dense, Network, ReLU, Reshape
from ._common import atomic_write_bytes, compare_outputs, probe_inputs

log = logging.getLogger(__name__)

__all__ = ["save_onnx", "network_to_onnx"]

OPSET = 13
IR_VERSION = 8


def network_to_onnx(network: Network):
    """The network as an in-memory, checked ``onnx.ModelProto`` (opset 13)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur, size = "input", network.input_size

    def const(name: str, value: np.ndarray, dtype=np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    for name, layer in zip(network.layer_names, network.layers):
        out = f"{name}_out"
        if isinstance(layer, Dense) and layer.conv is not None:   # back to a Conv node
            t = layer.conv
            kernel, bias = t.parameters(layer.W, layer.b)
            shape = const(f"{name}_shape", np.array([1, *t.in_shape]), np.int64)
            k, b = const(f"{name}_kernel", kernel.reshape(t.kernel_shape)), const(f"{name}_b", bias)
            nodes += [helper.make_node("Reshape", [cur, shape], [f"{name}_in"], name=f"{name}_in"),
                      helper.make_node("Conv", [f"{name}_in", k, b], [f"{name}_map"], name=name,
                                       strides=list(t.strides), pads=list(t.pads),
                                       dilations=list(t.dilations)),
                      helper.make_node("Flatten", [f"{name}_map"], [out], name=f"{name}_flat",
                                       axis=1)]
        elif isinstance(layer, Dense):
            w, b = const(f"{name}_W", layer.W), const(f"{name}_b", layer.b)
            nodes.append(helper.make_node("Gemm", [cur, w, b], [out], name=name, transB=1))
        elif isinstance(layer, ReLU):
            nodes.append(helper.make_node("Relu", [cur], [out], name=name))
        elif isinstance(layer, Reshape):
            nodes.append(helper.make_node("Flatten", [cur], [out], name=name, axis=1))
        elif isinstance(layer, Affine):
            scale, c = (np.broadcast_to(v, (size,)) for v in (layer.scale, layer.shift))
            mid = f"{name}_scaled"
            nodes.append(helper.make_node("Mul", [cur, const(f"{name}_scale", scale)], [mid],
                                          name=name))
            nodes.append(helper.make_node("Add", [mid, const(f"{name}_shift", c)], [out],
                                          name=f"{name}_add"))
        else:
            raise UnsupportedError(
                f"layer {name!r} of type {type(layer).__name__} cannot be written to ONNX")
        cur, size = out, layer.out_size(size)
    nodes.append(helper.make_node("Identity", [cur], ["output"], name="output"))
    graph = helper.make_graph(
        nodes, "mipcert_network",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, network.input_size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, network.output_size])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="mipcert")
    model.ir_version = IR_VERSION
    model.doc_string = f"input_shape={list(network.input_shape)}"
    onnx.checker.check_model(model)
    return model


def save_onnx(network: Network, path: str | os.PathLike) -> Path:
    """Write ``network`` to ``path`` as ONNX (atomic: temp file in the same folder + rename).

    Before writing, the model is run with onnxruntime on zero and 8 uniform[-1, 1] inputs
    and compared with ``network.forward`` (tolerance ``1e-4 * (1 + max|y|)``).
    """
    from .onnx_runtime import make_session, onnx_forward

    data = network_to_onnx(network).SerializeToString()
    x = probe_inputs(network.input_size)
    try:
        compare_outputs(network.forward(x), onnx_forward(make_session(data), x),
                        "the exported ONNX model", "onnxruntime")
    except ModelFileError as exc:
        raise ModelFileError(f"not writing {path}: {exc}") from exc
    out = atomic_write_bytes(path, data)
    log.info("wrote %s (%d bytes)", out, len(data))
    return out
