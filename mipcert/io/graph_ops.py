"""ONNX operators in float64 numpy: the reference semantics of the general graph path.

Each entry of :data:`OPS` maps an ONNX ``op_type`` to ``f(operands, attrs) -> [outputs]``
(``operands``: numpy arrays, ``None`` for an omitted optional input; ``attrs``: the node's
attributes as Python values). Floating data is float64 throughout (float32 weights are
widened once at load), integer and Boolean tensors keep their types, so comparisons,
``Where`` and ``Cast`` behave as in onnxruntime up to float32 rounding. Attributes that moved
to inputs between opsets (``axes``, ``split``, ``starts``/``ends``) are read from either.

The graph encoder (:mod:`mipcert.encode.graph`) folds constant sub-graphs and probes linear
ops with these same functions, so the MILP and the reference cannot drift apart.
"""
from __future__ import annotations

import numpy as np

from ._lowering import conv2d_to_dense

#: ONNX element types → numpy
ONNX_DTYPES = {1: np.float64, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
               9: np.bool_, 10: np.float64, 11: np.float64, 12: np.uint32, 13: np.uint64}


def _axes(ops, attrs, key="axes", pos=1):
    """The axes (or split sizes) given as input ``pos`` or attribute ``key``; None when
    neither is given (an empty input tensor gives ``[]``)."""
    if len(ops) > pos and ops[pos] is not None:
        return [int(v) for v in ops[pos].reshape(-1)]
    axes = attrs.get(key)
    return None if axes is None else [int(v) for v in axes]


def _norm(axes, ndim):
    return tuple(sorted(a + ndim if a < 0 else a for a in axes))


def _reshape(ops, a):
    data, shape = ops[0], [int(v) for v in ops[1].reshape(-1)]
    if not a.get("allowzero", 0):
        shape = [data.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return [data.reshape(shape)]


def _flatten(ops, a):
    x, axis = ops[0], a.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    return [x.reshape(int(np.prod(x.shape[:axis])), -1)]


def _squeeze(ops, a):
    axes = _axes(ops, a)
    if not axes:
        return [np.squeeze(ops[0])]
    return [np.squeeze(ops[0], axis=_norm(axes, ops[0].ndim))]


def _unsqueeze(ops, a):
    axes = _axes(ops, a)
    out_nd = ops[0].ndim + len(axes)
    return [np.expand_dims(ops[0], _norm(axes, out_nd))]


def _div(ops, a):
    x, y = ops
    with np.errstate(divide="ignore", invalid="ignore"):
        if x.dtype.kind in "iu" and y.dtype.kind in "iu":
            return [np.trunc(x / y).astype(np.result_type(x, y))]
        return [x / y]


def _gemm(ops, a):
    A = ops[0].T if a.get("transA", 0) else ops[0]
    B = ops[1].T if a.get("transB", 0) else ops[1]
    out = a.get("alpha", 1.0) * (A @ B)
    if len(ops) > 2 and ops[2] is not None:
        out = out + a.get("beta", 1.0) * ops[2]
    return [out]


def _conv(ops, a):
    x, w = ops[0], ops[1]
    b = ops[2] if len(ops) > 2 else None
    if a.get("group", 1) != 1:
        from ..errors import UnsupportedError

        raise UnsupportedError("grouped convolutions (group > 1) are not supported")
    one_d = x.ndim == 3
    if one_d:  # a 1-D convolution is a 2-D one of height 1
        x, w = x[:, :, None, :], w[:, :, None, :]
    kdim = w.ndim - 2
    strides = list(a.get("strides", [1] * kdim)) + [1] * (2 - kdim)
    dil = list(a.get("dilations", [1] * kdim)) + [1] * (2 - kdim)
    pads = list(a.get("pads", [0] * 2 * kdim))
    if one_d:
        strides, dil, pads = [1] + strides[:1], [1] + dil[:1], [0, pads[0], 0, pads[1]]
    auto = a.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0, 0, 0, 0]
        for i in range(2):
            size = x.shape[2 + i]
            need = max(0, (-(-size // strides[i]) - 1) * strides[i]
                       + dil[i] * (w.shape[2 + i] - 1) + 1 - size)
            small, big = need // 2, need - need // 2
            pads[i], pads[i + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    W, bias, shape, _ = conv2d_to_dense(w, b, x.shape[1:], strides, pads, dil)
    y = (x.reshape(x.shape[0], -1) @ W.T + bias).reshape((x.shape[0],) + tuple(shape))
    return [y[:, :, 0, :] if one_d else y]


def max_pool_windows(shape, a):
    """Index windows of a MaxPool on an input of ``shape`` ``(N, C, *spatial)``: an int array
    ``(*out_shape, k)`` of flat input indices, ``-1`` where a window covers padding."""
    kernel = list(a["kernel_shape"])
    d = len(kernel)
    strides = list(a.get("strides", [1] * d))
    dil = list(a.get("dilations", [1] * d))
    pads = list(a.get("pads", [0] * 2 * d))
    auto = a.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    spatial = shape[2:]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        for i in range(d):
            out = -(-spatial[i] // strides[i])
            need = max(0, (out - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1 - spatial[i])
            small, big = need // 2, need - need // 2
            pads[i], pads[i + d] = (small, big) if auto == "SAME_UPPER" else (big, small)
    rnd = np.ceil if a.get("ceil_mode", 0) else np.floor
    out_sp = [int(rnd((spatial[i] + pads[i] + pads[i + d] - dil[i] * (kernel[i] - 1) - 1)
                      / strides[i])) + 1 for i in range(d)]
    flat = np.arange(int(np.prod(shape))).reshape(shape)
    wins = np.full(tuple(shape[:2]) + tuple(out_sp) + (int(np.prod(kernel)),), -1, np.int64)
    for o in np.ndindex(*out_sp):
        for t, k in enumerate(np.ndindex(*kernel)):
            pos = [o[i] * strides[i] - pads[i] + k[i] * dil[i] for i in range(d)]
            if all(0 <= pos[i] < spatial[i] for i in range(d)):
                wins[(slice(None), slice(None)) + o + (t,)] = flat[(slice(None), slice(None))
                                                                   + tuple(pos)]
    return wins


def _max_pool(ops, a):
    x = ops[0]
    wins = max_pool_windows(x.shape, a)
    vals = np.where(wins >= 0, x.reshape(-1)[np.maximum(wins, 0)], -np.inf)
    return [vals.max(axis=-1)]


def _split(ops, a):
    x = ops[0]
    axis = a.get("axis", 0)
    axis = axis + x.ndim if axis < 0 else axis
    sizes = _axes(ops, a, key="split")
    if sizes is None:
        k = a.get("num_outputs", a.get("_n_outputs"))
        step = -(-x.shape[axis] // k)
        sizes = [min(step, x.shape[axis] - i * step) for i in range(k)]
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


def _slice(ops, a):
    x = ops[0]
    if len(ops) > 1:
        starts, ends = ops[1].reshape(-1), ops[2].reshape(-1)
        axes = ops[3].reshape(-1) if len(ops) > 3 and ops[3] is not None else range(len(starts))
        steps = ops[4].reshape(-1) if len(ops) > 4 and ops[4] is not None else [1] * len(starts)
    else:  # opset < 10: attributes
        starts, ends = a["starts"], a["ends"]
        axes, steps = a.get("axes", range(len(starts))), [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        ax = int(ax) + x.ndim if int(ax) < 0 else int(ax)
        s, e, st = int(s), int(e), int(st)
        # clamp as ONNX does (and keep Python from reading e = -1 as "the last one")
        n = x.shape[ax]
        s = s + n if s < 0 else s
        e = e + n if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), n), min(max(e, 0), n)
            index[ax] = slice(s, e, st)
        else:
            s, e = min(max(s, -1), n - 1), min(max(e, -1), n - 1)
            index[ax] = slice(s, e if e >= 0 else None, st)
    return [x[tuple(index)]]


def _reduce(fn):
    def run(ops, a):
        x = ops[0]
        axes = _axes(ops, a)
        if axes is None or len(axes) == 0:
            if a.get("noop_with_empty_axes", 0) and axes is not None:
                return [x]
            axes = list(range(x.ndim))
        return [fn(x, axis=_norm(axes, x.ndim), keepdims=bool(a.get("keepdims", 1)))]
    return run


def _batch_norm(ops, a):
    x, scale, bias, mean, var = ops[:5]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    s = scale / np.sqrt(var + a.get("epsilon", 1e-5))
    return [x * s.reshape(shape) + (bias - mean * s).reshape(shape)]


def _cast(ops, a):
    to = ONNX_DTYPES.get(a.get("to"))
    if to is None:
        from ..errors import UnsupportedError

        raise UnsupportedError(f"Cast to ONNX type {a.get('to')} is not supported")
    x = ops[0]
    if np.dtype(to).kind in "iu" and x.dtype.kind == "f":
        return [np.trunc(x).astype(to)]
    return [x.astype(to)]


def _shape(ops, a):
    dims = list(ops[0].shape)
    start, end = a.get("start", 0), a.get("end", None)
    return [np.array(dims[start:end], np.int64)]


def _constant_of_shape(ops, a):
    value = a.get("value")
    v = np.zeros(1) if value is None else _tensor(value)
    return [np.full([int(d) for d in ops[0].reshape(-1)], v.reshape(-1)[0], dtype=v.dtype)]


def _tensor(t):
    from onnx import numpy_helper

    arr = numpy_helper.to_array(t)
    return arr.astype(np.float64) if arr.dtype.kind == "f" else arr


def _constant(ops, a):
    if "value" in a:
        return [_tensor(a["value"])]
    for key in ("value_float", "value_int"):
        if key in a:
            return [np.array(a[key], np.float64 if key == "value_float" else np.int64)]
    for key in ("value_floats", "value_ints"):
        if key in a:
            return [np.array(a[key], np.float64 if key == "value_floats" else np.int64)]
    from ..errors import UnsupportedError

    raise UnsupportedError(f"Constant with attributes {sorted(a)} is not supported")


def _variadic(fn):
    def run(ops, a):
        out = ops[0]
        for o in ops[1:]:
            out = fn(out, o)
        return [out]
    return run


OPS = {
    "Constant": _constant,
    "Identity": lambda ops, a: [ops[0]],
    "Add": lambda ops, a: [ops[0] + ops[1]],
    "Sub": lambda ops, a: [ops[0] - ops[1]],
    "Mul": lambda ops, a: [ops[0] * ops[1]],
    "Div": _div,
    "Neg": lambda ops, a: [-ops[0]],
    "MatMul": lambda ops, a: [np.matmul(ops[0], ops[1])],
    "Gemm": _gemm,
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "Relu": lambda ops, a: [np.maximum(ops[0], 0.0)],
    "MaxPool": _max_pool,
    "Max": _variadic(np.maximum),
    "Min": _variadic(np.minimum),
    "Transpose": lambda ops, a: [np.transpose(ops[0], a.get("perm"))],
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": lambda ops, a: [np.concatenate(ops, axis=a.get("axis", 0))],
    "Split": _split,
    "Slice": _slice,
    "Gather": lambda ops, a: [np.take(ops[0], ops[1].astype(np.int64), axis=a.get("axis", 0))],
    "Expand": lambda ops, a: [np.broadcast_to(ops[0], np.broadcast_shapes(
        ops[0].shape, tuple(int(d) for d in ops[1].reshape(-1)))).copy()],
    "ReduceSum": _reduce(np.sum),
    "ReduceMean": _reduce(np.mean),
    "Cast": _cast,
    "Shape": _shape,
    "ConstantOfShape": _constant_of_shape,
    "Greater": lambda ops, a: [ops[0] > ops[1]],
    "Less": lambda ops, a: [ops[0] < ops[1]],
    "GreaterOrEqual": lambda ops, a: [ops[0] >= ops[1]],
    "LessOrEqual": lambda ops, a: [ops[0] <= ops[1]],
    "Equal": lambda ops, a: [ops[0] == ops[1]],
    "Not": lambda ops, a: [np.logical_not(ops[0])],
    "Where": lambda ops, a: [np.where(ops[0], ops[1], ops[2])],
}
