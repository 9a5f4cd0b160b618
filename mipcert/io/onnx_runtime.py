"""Running ONNX models with onnxruntime on mipcert's flat float64 batches (cached sessions)."""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFileError, UnsupportedError

log = logging.getLogger(__name__)

_MAX_SESSIONS = 16
_SESSIONS: OrderedDict[tuple, Any] = OrderedDict()
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}


def make_session(model: str | os.PathLike | bytes):
    """A fresh CPU onnxruntime session for a file path or serialized model bytes."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        where = "the model" if isinstance(model, bytes) else str(model)
        raise ModelFileError(
            f"onnxruntime cannot load {where} ({type(exc).__name__}: {exc}); check that the "
            "file is a complete ONNX model (re-export or download it again)") from exc


def get_session(path: str | os.PathLike):
    """The cached session for ``path`` (re-created when the file changes)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise ModelFileError(f"{p}: no such ONNX file; check the path") from None
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    sess = _SESSIONS.get(key)
    if sess is None:
        sess = make_session(p)
        _SESSIONS[key] = sess
        while len(_SESSIONS) > _MAX_SESSIONS:
            _SESSIONS.popitem(last=False)
    else:
        _SESSIONS.move_to_end(key)
    return sess


def onnx_forward(path_or_session, x) -> np.ndarray:
    """Run an ONNX model with onnxruntime on flat inputs.

    ``path_or_session``: a file path or an ``onnxruntime.InferenceSession``; ``x``: ``(n,)`` or
    ``(batch, n)``. Each sample is reshaped to the model's input shape and cast to its input
    dtype; models whose batch dimension is fixed (e.g. ``[1, 784]`` or ``[1]``) are run one
    sample at a time. Returns float64 ``(batch, n_out)``.
    """
    sess = path_or_session if hasattr(path_or_session, "run") else get_session(path_or_session)
    inp, out = sess.get_inputs(), sess.get_outputs()
    if len(inp) != 1 or len(out) < 1:
        raise UnsupportedError(
            f"the model has {len(inp)} inputs and {len(out)} outputs; mipcert needs exactly one of each")
    inp = inp[0]
    dtype = _ORT_DTYPES.get(inp.type)
    if dtype is None:
        raise UnsupportedError(f"the model input {inp.name!r} has type {inp.type}; only float inputs are supported")
    x = np.asarray(x, dtype=np.float64)
    x = x.reshape(1, -1) if x.ndim <= 1 else x.reshape(x.shape[0], -1)
    batch, n = x.shape
    dims = [d if isinstance(d, int) and d > 0 else None for d in inp.shape]
    rest = dims[1:]
    if dims and dims[0] is None and None not in rest and int(np.prod(rest)) == n:
        arr = x.reshape(batch, *rest).astype(dtype)
        y = sess.run([out[0].name], {inp.name: arr})[0]
        return np.asarray(y, dtype=np.float64).reshape(batch, -1)
    if None in dims:
        if dims.count(None) > 1:
            raise UnsupportedError(
                f"the model input {inp.name!r} has shape {inp.shape} with several unknown dimensions")
        known = int(np.prod([d for d in dims if d is not None]))
        if n % known:
            raise ModelFileError(f"{n} values per sample do not fit the model input shape {inp.shape}")
        dims = [n // known if d is None else d for d in dims]
    if int(np.prod(dims)) != n:
        raise ModelFileError(
            f"the model input {inp.name!r} has shape {inp.shape} ({int(np.prod(dims))} values) but "
            f"the data has {n} values per sample")
    ys = [sess.run([out[0].name], {inp.name: row.reshape(dims).astype(dtype)})[0] for row in x]
    return np.asarray(np.stack([np.ravel(y) for y in ys]), dtype=np.float64).reshape(batch, -1)
