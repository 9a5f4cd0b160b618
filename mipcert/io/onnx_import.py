"""ONNX → :class:`~mipcert.network.Network` (a chain of Dense / Affine / ReLU / Reshape).

The graph is read as a single chain from its one real input to its one output. Every linear
op is turned into the exact matrix it applies to the C-order flattened tensor (the batch
dimension fixed to 1), elementwise constants into :class:`Affine` (folded into a directly
preceding Dense), and nodes whose inputs are all constants are evaluated at import time.
With ``check=True`` the import is compared with onnxruntime on random inputs.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import InputError, MipcertError, ModelFileError, UnsupportedError
from ..network import Affine, Dense, Network, ReLU, Reshape
from ._common import NameMaker, compare_outputs, probe_inputs
from ._lowering import check_dense_size, conv2d_to_dense
from ._onnx_fold import FOLDABLE, fold_constant_node
from .onnx_runtime import get_session, onnx_forward

log = logging.getLogger(__name__)

__all__ = ["load_onnx", "onnx_forward", "SUPPORTED_OPS"]

_LAYER_OPS = ("Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg", "Relu", "Flatten", "Reshape",
              "Identity", "Constant", "Conv", "BatchNormalization", "Squeeze", "Unsqueeze")
#: ONNX ops the importer understands (the last group only with constant inputs, or Shape).
SUPPORTED_OPS = tuple(sorted(set(_LAYER_OPS) | set(FOLDABLE) | {"Shape"}))


def load_onnx(path: str | os.PathLike, check: bool = True) -> Network:
    """Import an ONNX ReLU network as a :class:`Network` (flat float64 data ``(batch, n)``).

    ``check``: compare with onnxruntime on ``zero`` and 8 uniform[-1, 1] inputs; a difference
    above ``1e-4 * (1 + max|y|)`` raises :class:`ModelFileError`.
    Raises :class:`ModelFileError` (missing, truncated or corrupt file),
    :class:`UnsupportedError` (an op or graph form mipcert does not handle) and
    :class:`InputError` (NaN / infinite weights).
    """
    path = Path(path)
    model = _read_model(path)
    try:
        net = _Importer(model.graph, path.name).run(_declared_shape(model))
    except MipcertError as exc:
        msg = str(exc)
        raise type(exc)(msg if str(path) in msg else f"{path}: {msg}") from exc
    if check:
        x = probe_inputs(net.input_size)
        compare_outputs(net.forward(x), onnx_forward(get_session(path), x),
                        f"{path}", "onnxruntime")
    log.info("imported %s as %r", path, net)
    return net


def _read_model(path: Path):
    import onnx

    if not path.is_file():
        raise ModelFileError(f"{path}: no such ONNX file; check the path and the file name")
    hint = "the file may be truncated or corrupt: export or download it again"
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, OSError, ...
        raise ModelFileError(
            f"{path} is not a valid ONNX model ({type(exc).__name__}: {str(exc).strip()[:300]}); "
            f"{hint}") from exc
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # the checker is stricter than onnxruntime: let it decide
        try:
            get_session(path)
        except ModelFileError:
            raise ModelFileError(
                f"{path} is not a valid ONNX model ({type(exc).__name__}: "
                f"{str(exc).strip()[:300]}); {hint}") from exc
        log.warning("%s fails onnx.checker (%s) but onnxruntime loads it; continuing", path, exc)
    return model


def _declared_shape(model) -> tuple[int, ...] | None:
    """The logical input shape mipcert's own exporter records in the doc string."""
    if model.producer_name == "mipcert" and model.doc_string.startswith("input_shape=["):
        try:
            return tuple(int(v) for v in model.doc_string[13:].split("]")[0].split(",") if v.strip())
        except ValueError:
            return None
    return None


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Importer:
    """Walks the nodes of one ONNX graph (in their topological order) along the chain."""

    def __init__(self, graph, label: str):
        from onnx import numpy_helper

        self.graph, self.label = graph, label
        self.consts: dict[str, np.ndarray] = {}
        for init in graph.initializer:
            self._add_const(init.name, numpy_helper.to_array(init))
        inputs = [i for i in graph.input if i.name not in self.consts]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise UnsupportedError(
                f"the graph has {len(inputs)} inputs (besides its weights) and "
                f"{len(graph.output)} outputs; mipcert imports networks with exactly one input "
                "and one output")
        tt = inputs[0].type.tensor_type
        if tt.elem_type not in (1, 10, 11):  # float, float16, double
            raise UnsupportedError(f"the input {inputs[0].name!r} is not a float tensor")
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in tt.shape.dim]
        if any(d is None for d in dims[1:]):
            raise UnsupportedError(f"the input {inputs[0].name!r} has unknown dimensions {dims}")
        self.batched = len(dims) >= 2 and dims[0] in (None, 1)
        self.shape: tuple[int, ...] = tuple(1 if d is None else d for d in dims) or (1,)
        self.input_shape = self._sample_shape(self.shape)
        self.tip = inputs[0].name
        self.dead: set[str] = set()
        self.layers: list = []
        self.names: list[str] = []
        self.name_maker = NameMaker()
        self.op_counts: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers
    def _add_const(self, name: str, value: np.ndarray) -> None:
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            raise InputError(
                f"the weight {name!r} contains NaN or infinite values: retrain or re-export "
                "the network with finite weights")
        self.consts[name] = value

    def _sample_shape(self, shape) -> tuple[int, ...]:
        shape = tuple(int(d) for d in shape)
        return shape[1:] if self.batched and len(shape) >= 2 and shape[0] == 1 else shape

    def _where(self, node) -> str:
        return f"node {node.name or '(unnamed)'!r} ({node.op_type})"

    def _operands(self, node) -> list:
        """Each input as ``None`` (the chain's tensor) or a constant array."""
        out = []
        for name in node.input:
            if name == "":
                out.append(np.empty(0))  # omitted optional input
            elif name == self.tip:
                out.append(None)
            elif name in self.consts:
                out.append(self.consts[name])
            elif name in self.dead:
                raise UnsupportedError(
                    f"{self._where(node)} reads {name!r}, an earlier tensor of the chain: "
                    "branches and skip connections are not supported")
            else:
                raise ModelFileError(f"{self._where(node)} reads the unknown tensor {name!r}")
        return out

    def _advance(self, node, shape) -> None:
        self.dead.add(self.tip)
        self.tip = node.output[0]
        self.shape = tuple(int(d) for d in shape)

    def _emit(self, node, layer) -> None:
        self.layers.append(layer)
        kind = node.op_type.lower()
        self.op_counts[kind] = self.op_counts.get(kind, -1) + 1
        self.names.append(self.name_maker(node.name, f"{kind}{self.op_counts[kind]}"))

    def _emit_affine(self, node, scale: np.ndarray, shift: np.ndarray) -> None:
        last = self.layers[-1] if self.layers else None
        if isinstance(last, Dense):  # fold x -> s * (W x + b) + c into the Dense
            W, b = scale[:, None] * last.W, scale * last.b + shift
            # a per-channel scale (BatchNormalization) keeps a convolution a convolution
            tying = last.conv if last.conv is not None and last.conv.matches(W, b) else None
            self.layers[-1] = Dense(W, b, conv=tying)
        elif isinstance(last, Affine):  # s * (s0 x + c0) + c
            s0, c0 = last._full(scale.size)
            self.layers[-1] = Affine(scale * s0, scale * c0 + shift)
        else:
            self._emit(node, Affine(scale, shift))

    def _emit_linear(self, node, f) -> None:
        """Emit ``Dense`` for an affine ``f`` on tensors with a leading probe axis."""
        n = int(np.prod(self.shape))
        try:
            y0 = np.asarray(f(np.zeros((1, *self.shape))), dtype=np.float64)
        except ValueError as exc:
            raise ModelFileError(f"{self._where(node)}: the operand shapes do not fit the input "
                                 f"of shape {self.shape} ({exc})") from None
        out_shape = y0.shape[1:]
        check_dense_size(int(np.prod(out_shape)), n, self._where(node))
        ys = np.asarray(f(np.eye(n).reshape(n, *self.shape)), dtype=np.float64) - y0
        W = ys.reshape(n, -1).T if y0.shape[:1] == (1,) and ys.shape == (n, *out_shape) else None
        z = np.random.default_rng(0).uniform(-1.0, 1.0, n)
        if W is None or not np.allclose(np.asarray(f(z.reshape(1, *self.shape)),
                                                   np.float64).reshape(-1),
                                        y0.reshape(-1) + W @ z, rtol=1e-9, atol=1e-9):
            # the probe axis did not come out first (a constant of higher rank broadcasts
            # it elsewhere, e.g. MatMul of (1, 2) by (2, 2, 3)): not a chain layer
            raise UnsupportedError(f"{self._where(node)}: {node.op_type} with these operand "
                                   "shapes is not a layer of a chain network")
        self._emit(node, Dense(W, y0.reshape(-1)))
        self._advance(node, out_shape)

    # ------------------------------------------------------------------ main loop
    def run(self, declared_shape: tuple[int, ...] | None = None) -> Network:
        for node in self.graph.node:
            op = node.op_type
            if node.domain not in ("", "ai.onnx"):
                raise self._unsupported(node)
            if op == "Constant":
                self._constant(node)
                continue
            ops = self._operands(node)
            if op == "Shape" and ops and ops[0] is None:
                self.consts[node.output[0]] = np.array(self.shape, dtype=np.int64)
            elif all(o is not None for o in ops) and op in FOLDABLE:
                for name, value in zip(node.output, fold_constant_node(node, ops, _attrs(node))):
                    self._add_const(name, value)
            elif not any(o is None for o in ops):
                raise self._unsupported(node)
            else:
                handler = getattr(self, f"_op_{op}", None)
                if handler is None:
                    raise self._unsupported(node)
                handler(node, ops, _attrs(node))
        out = self.graph.output[0].name
        if out != self.tip:
            raise UnsupportedError(
                f"the graph output {out!r} is not the end of the chain from the input "
                f"(which ends at {self.tip!r}); only single-chain networks are supported")
        if not self.layers:
            self.layers, self.names = [Reshape(self.input_shape)], ["identity"]
        if declared_shape and int(np.prod(declared_shape)) == int(np.prod(self.input_shape)):
            self.input_shape = declared_shape
        return Network(self.layers, self.input_shape, names=self.names)

    def _unsupported(self, node) -> UnsupportedError:
        return UnsupportedError(
            f"{self._where(node)} uses the ONNX op {node.op_type!r}"
            f"{'' if node.domain in ('', 'ai.onnx') else f' of domain {node.domain!r}'}, "
            f"which mipcert does not support; supported ops: {', '.join(SUPPORTED_OPS)} "
            f"(ops besides {', '.join(_LAYER_OPS)} only on constants)")

    def _constant(self, node) -> None:
        from onnx import numpy_helper

        a = _attrs(node)
        if "value" in a:
            value = numpy_helper.to_array(a["value"])
        elif "value_float" in a or "value_floats" in a:
            value = np.array(a.get("value_float", a.get("value_floats")), dtype=np.float32)
        elif "value_int" in a or "value_ints" in a:
            value = np.array(a.get("value_int", a.get("value_ints")), dtype=np.int64)
        else:
            raise UnsupportedError(f"{self._where(node)}: unsupported Constant attribute {list(a)}")
        self._add_const(node.output[0], value)

    # ------------------------------------------------------------------ ops on the chain
    def _op_Relu(self, node, ops, a):
        self._emit(node, ReLU())
        self._advance(node, self.shape)

    def _op_Identity(self, node, ops, a):
        self._advance(node, self.shape)

    def _op_Neg(self, node, ops, a):
        n = int(np.prod(self.shape))
        self._emit_affine(node, -np.ones(n), np.zeros(n))
        self._advance(node, self.shape)

    def _op_Flatten(self, node, ops, a):
        axis = a.get("axis", 1)
        axis = axis + len(self.shape) if axis < 0 else axis
        new = (int(np.prod(self.shape[:axis])), int(np.prod(self.shape[axis:])))
        self._emit(node, Reshape(self._sample_shape(new)))
        self._advance(node, new)

    def _op_Reshape(self, node, ops, a):
        if ops[1] is None:
            raise UnsupportedError(f"{self._where(node)}: the target shape must be a constant")
        target = [int(v) for v in np.asarray(ops[1]).reshape(-1)]
        if not a.get("allowzero", 0):
            target = [self.shape[i] if v == 0 else v for i, v in enumerate(target)]
        try:
            new = np.zeros(self.shape).reshape(target).shape
        except ValueError:
            raise ModelFileError(f"{self._where(node)}: cannot reshape {self.shape} to {target}") from None
        self._emit(node, Reshape(self._sample_shape(new)))
        self._advance(node, new)

    def _axes(self, node, ops, a):
        if len(ops) > 1 and ops[1] is not None and ops[1].size:
            return [int(v) for v in ops[1].reshape(-1)]
        return a.get("axes")

    def _op_Squeeze(self, node, ops, a):
        axes = self._axes(node, ops, a)
        shape = np.squeeze(np.zeros(self.shape), axis=None if axes is None else tuple(axes)).shape
        self._advance(node, shape)

    def _op_Unsqueeze(self, node, ops, a):
        axes = self._axes(node, ops, a)
        if not axes:
            raise ModelFileError(f"{self._where(node)}: Unsqueeze without axes")
        self._advance(node, np.expand_dims(np.zeros(self.shape), tuple(axes)).shape)

    def _op_MatMul(self, node, ops, a):
        if ops[0] is None and ops[1] is None:
            raise UnsupportedError(f"{self._where(node)}: a product of two variable tensors is not linear")
        if ops[0] is None:
            w = ops[1].astype(np.float64)
            self._emit_linear(node, lambda e: np.matmul(e, w))
        else:
            w = ops[0].astype(np.float64)
            if len(self.shape) == 1:  # W @ x with a 1-D x: one probe per column
                self._emit_linear(node, lambda e: np.moveaxis(np.matmul(w, e.T), -1, 0))
            else:
                self._emit_linear(node, lambda e: np.matmul(w, e))

    def _op_Gemm(self, node, ops, a):
        alpha, beta = a.get("alpha", 1.0), a.get("beta", 1.0)
        ta, tb = a.get("transA", 0), a.get("transB", 0)
        if len(self.shape) != 2:
            raise UnsupportedError(f"{self._where(node)}: Gemm needs a 2-D input, got shape {self.shape}")
        c = ops[2].astype(np.float64) if len(ops) > 2 and ops[2].size else np.zeros(())

        def f(e):
            A = ops[0] if ops[0] is not None else e
            B = ops[1] if ops[1] is not None else e
            A = np.swapaxes(A, -1, -2) if ta else A
            B = np.swapaxes(B, -1, -2) if tb else B
            return alpha * np.matmul(A.astype(np.float64), B.astype(np.float64)) + beta * c

        if ops[0] is None and ops[1] is None:
            raise UnsupportedError(f"{self._where(node)}: a product of two variable tensors is not linear")
        self._emit_linear(node, f)

    def _op_Add(self, node, ops, a):
        self._elementwise(node, ops)

    _op_Sub = _op_Mul = _op_Div = _op_Add

    def _elementwise(self, node, ops):
        if len(ops) != 2 or (ops[0] is None and ops[1] is None):
            raise UnsupportedError(f"{self._where(node)}: both operands are variable tensors")
        var_first = ops[0] is None
        c = np.asarray(ops[1] if var_first else ops[0], dtype=np.float64)
        try:
            out = np.broadcast_shapes(self.shape, c.shape)
        except ValueError:
            raise ModelFileError(f"{self._where(node)}: constant {c.shape} does not broadcast to {self.shape}") from None
        if tuple(out) != self.shape:
            raise UnsupportedError(
                f"{self._where(node)}: the constant of shape {c.shape} enlarges the tensor "
                f"{self.shape} to {tuple(out)}; only same-shape elementwise ops are supported")
        c = np.broadcast_to(c, self.shape).reshape(-1)
        one, zero = np.ones_like(c), np.zeros_like(c)
        op = node.op_type
        if op == "Add":
            scale, shift = one, c
        elif op == "Sub":
            scale, shift = (one, -c) if var_first else (-one, c)
        elif op == "Mul":
            scale, shift = c, zero
        else:
            if not var_first:
                raise UnsupportedError(f"{self._where(node)}: dividing a constant by the tensor is not linear")
            if np.any(c == 0):
                raise InputError(f"{self._where(node)}: division by zero in the constant divisor")
            scale, shift = 1.0 / c, zero
        self._emit_affine(node, scale, shift)
        self._advance(node, self.shape)

    def _op_BatchNormalization(self, node, ops, a):
        if a.get("training_mode", 0):
            raise UnsupportedError(f"{self._where(node)}: BatchNormalization in training mode")
        if any(o is None for o in ops[1:]) or len(self.shape) < 2:
            raise UnsupportedError(f"{self._where(node)}: BatchNormalization needs constant statistics and a channel axis")
        gamma, beta, mean, var = (np.asarray(o, dtype=np.float64).reshape(-1) for o in ops[1:5])
        s = gamma / np.sqrt(var + a.get("epsilon", 1e-5))
        chan = (-1,) + (1,) * (len(self.shape) - 2)
        scale = np.broadcast_to(s.reshape(chan), self.shape).reshape(-1)
        shift = np.broadcast_to((beta - mean * s).reshape(chan), self.shape).reshape(-1)
        self._emit_affine(node, scale, shift)
        self._advance(node, self.shape)

    def _op_Conv(self, node, ops, a):
        one_d = len(self.shape) == 3 and ops[1] is not None and np.ndim(ops[1]) == 3
        if not (len(self.shape) == 4 or one_d) or self.shape[0] != 1 or ops[1] is None:
            raise UnsupportedError(
                f"{self._where(node)}: only 1-D and 2-D convolutions of an (1, C, W) or "
                f"(1, C, H, W) input with a constant kernel are supported (input shape {self.shape})")
        if a.get("group", 1) != 1:
            raise UnsupportedError(f"{self._where(node)}: grouped convolutions (group={a['group']}) are not supported")
        w = np.asarray(ops[1], dtype=np.float64)
        bias = ops[2] if len(ops) > 2 and ops[2].size else None
        if one_d:  # a 1-D convolution is the 2-D one of height 1
            w = w[:, :, None, :]
            a = dict(a, strides=[1, *a.get("strides", [1])], dilations=[1, *a.get("dilations", [1])],
                     pads=[0, a.get("pads", [0, 0])[0], 0, a.get("pads", [0, 0])[-1]])
            self.shape = (1, self.shape[1], 1, self.shape[2])
        strides = list(a.get("strides", [1, 1]))
        dil = list(a.get("dilations", [1, 1]))
        pads = list(a.get("pads", [0, 0, 0, 0]))
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        hw = self.shape[2:]
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0, 0, 0, 0]
            for i in range(2):
                total = max((-(-hw[i] // strides[i]) - 1) * strides[i]
                            + dil[i] * (w.shape[2 + i] - 1) + 1 - hw[i], 0)
                small, big = total // 2, total - total // 2
                pads[i], pads[i + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        W, b, out, tying = conv2d_to_dense(w, bias, self.shape[1:], strides, pads, dil,
                                           what=self._where(node))
        self._emit(node, Dense(W, b, conv=tying))
        self._advance(node, (1, out[0], out[2]) if one_d else (1, *out))
