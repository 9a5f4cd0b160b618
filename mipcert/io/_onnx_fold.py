"""Evaluation of ONNX nodes whose inputs are all constants (weight preprocessing, shapes)."""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedError

_ONNX_TO_NUMPY = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32,
                  7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64}


def _axes(ops, attrs):
    if len(ops) > 1 and ops[1].size:
        return tuple(int(v) for v in ops[1].reshape(-1))
    axes = attrs.get("axes")
    return None if axes is None else tuple(axes)


def _reshape(ops, attrs):
    data, shape = ops[0], [int(v) for v in ops[1].reshape(-1)]
    if not attrs.get("allowzero", 0):
        shape = [data.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return data.reshape(shape)


def _flatten(ops, attrs):
    x, axis = ops[0], attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _div(ops, attrs):
    a, b = ops
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return (a // b).astype(np.result_type(a, b))
    return a / b


def _gemm(ops, attrs):
    A = ops[0].T if attrs.get("transA", 0) else ops[0]
    B = ops[1].T if attrs.get("transB", 0) else ops[1]
    out = attrs.get("alpha", 1.0) * (A @ B)
    if len(ops) > 2 and ops[2].size:
        out = out + attrs.get("beta", 1.0) * ops[2]
    return out.astype(ops[0].dtype)


_FOLD = {
    "Identity": lambda ops, a: ops[0],
    "Add": lambda ops, a: ops[0] + ops[1],
    "Sub": lambda ops, a: ops[0] - ops[1],
    "Mul": lambda ops, a: ops[0] * ops[1],
    "Div": _div,
    "Neg": lambda ops, a: -ops[0],
    "MatMul": lambda ops, a: np.matmul(ops[0], ops[1]),
    "Gemm": _gemm,
    "Transpose": lambda ops, a: np.transpose(ops[0], a.get("perm")),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Squeeze": lambda ops, a: np.squeeze(ops[0], axis=_axes(ops, a)),
    "Unsqueeze": lambda ops, a: np.expand_dims(ops[0], _axes(ops, a)),
    "Concat": lambda ops, a: np.concatenate([np.atleast_1d(o) for o in ops], axis=a.get("axis", 0)),
    "Gather": lambda ops, a: np.take(ops[0], ops[1].astype(np.int64), axis=a.get("axis", 0)),
    "Cast": lambda ops, a: ops[0].astype(_ONNX_TO_NUMPY.get(a.get("to"), np.float64)),
    "Relu": lambda ops, a: np.maximum(ops[0], 0),
}
#: ops evaluated at import time when all their inputs are constants
FOLDABLE = tuple(_FOLD)


def fold_constant_node(node, ops: list[np.ndarray], attrs: dict) -> list[np.ndarray]:
    """Outputs of ``node`` evaluated with numpy on constant inputs ``ops``."""
    try:
        out = _FOLD[node.op_type](ops, attrs)
    except (ValueError, IndexError, TypeError) as exc:
        raise UnsupportedError(
            f"node {node.name or '(unnamed)'!r} ({node.op_type}) on constants could not be "
            f"evaluated: {exc}") from exc
    return [np.asarray(out)]
