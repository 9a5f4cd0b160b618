"""A whole ONNX graph (:class:`~mipcert.io.onnx_graph.OnnxGraph`) as rows of one Pyomo model.

Every tensor becomes either a numpy constant or a :class:`VArray` (constants, variables or
linear expressions with interval bounds); a node is encoded by what its operands are:

* all operands constant: the node is evaluated by the reference interpreter
  (:data:`mipcert.io.graph_ops.OPS`) — shapes, ``Shape``/``ConstantOfShape``, weights;
* structural ops (``Reshape``, ``Transpose``, ``Concat``, ``Split``, ``Slice``, ``Gather``
  with constant indices, ``Expand``, ``Squeeze``, ...): the interpreter's own numpy code moves
  the entries (applied to the items and to their bounds), so no row is added;
* affine ops (``Add``/``Sub``/``Mul``/``Div`` with constant factors, ``MatMul``, ``Gemm``,
  ``Conv``, ``BatchNormalization``, ``ReduceSum``/``ReduceMean``, ``Neg``): ``y = A z + b`` where
  ``z`` stacks the variable operands; ``b = f(0)`` and column ``i`` of ``A`` is
  ``f(e_i) - f(0)``, both by the interpreter. Entries stay linear expressions; their bounds
  are ``b + A+ l - A- u`` (and symmetric), widened for rounding;
* ``Relu``: :func:`mipcert.encode.relu.relu_gate` (the one Big-M ReLU encoding);
* ``MaxPool``, ``Max``, ``Min``, comparisons, ``Not``, ``Where``, ``Cast`` to Boolean or integer
  types: :mod:`mipcert.encode.select`;
* ``Mul`` of two variables and ``Div`` by a variable (``q b = a`` with ``0`` outside ``b``'s
  range): :func:`mipcert.encode.products.product` (exact Big-M for an indicator factor;
  bilinear or McCormick for two continuous factors, by the relaxation).

Names: ``{prefix}{node}_...`` with the node's name made readable and unique.
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from ..errors import UnsupportedError
from ..io._common import NameMaker
from ..io._lowering import check_dense_size
from ..io.graph_ops import OPS, max_pool_windows
from ..relaxation import Relaxation
from . import select
from .products import product
from .relu import relu_gate
from .varray import VArray, add_rows, const, define, linear, new_vars, widen

STRUCTURAL = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat",
              "Split", "Slice", "Gather", "Expand")
ELEMENTWISE = ("Add", "Sub", "Neg", "Mul", "Div")
AFFINE = ("Add", "Sub", "Neg", "Mul", "Div", "MatMul", "Gemm", "Conv", "BatchNormalization",
          "ReduceSum", "ReduceMean")
COMPARISONS = {"Greater": ("gt", False), "Less": ("gt", True), "GreaterOrEqual": ("ge", False),
               "LessOrEqual": ("ge", True), "Equal": ("eq", False)}
_FLOAT_TYPES = (1, 11)      # float32, double: the graph path's reals
_HALF_TYPES = (10, 16)      # float16, bfloat16
_BOOL_TYPE = 9


def _as_const(v):
    """A VArray whose entries are all constants becomes a float64 array."""
    if isinstance(v, VArray) and all(isinstance(x, float) for x in v.items.reshape(-1)):
        return np.array(v.items.tolist(), np.float64).reshape(v.shape)
    return v


def _varray(v) -> VArray:
    return v if isinstance(v, VArray) else const(np.asarray(v, np.float64))


def _apply(fn, v: VArray) -> VArray:
    return VArray(fn(v.items), fn(v.lo), fn(v.hi), fn(v.indicator))


def _broadcast(vs, shape=None):
    shape = shape or np.broadcast_shapes(*(v.shape for v in vs))
    return [_apply(lambda a: np.broadcast_to(a, shape).copy(), v) for v in vs], shape


def negate(v: VArray) -> VArray:
    items = np.array([-x if isinstance(x, float) else linear([(-1.0, x)])
                      for x in v.items.reshape(-1)] + [None], dtype=object)[:-1]
    return VArray(items.reshape(v.shape), -v.hi, -v.lo, np.zeros(v.shape, bool))


class GraphEncoder:
    """Encodes one graph into ``block``; ``bilinear`` counts products of two continuous
    variables (the model is quadratic when they are kept exact)."""

    def __init__(self, block: pyo.Block, graph, relaxation="milp", prefix: str = ""):
        self.block, self.graph = block, graph
        self.relaxation = Relaxation.parse(relaxation)
        self.prefix = prefix
        self.names = NameMaker(())
        self.bilinear = 0

    def encode(self, inputs: dict) -> dict:
        """Values of every tensor: ``inputs`` maps each graph input name to a VArray (any
        shape with the input's number of entries); returns name → VArray or array."""
        env = dict(self.graph.consts)
        for name, shape in self.graph.inputs:
            env[name] = inputs[name].reshape(tuple(shape))
        for node in self.graph.nodes:
            ops = [_as_const(env[i]) if i else None for i in node.inputs]
            if not any(isinstance(o, VArray) for o in ops):
                outs = [np.asarray(o) for o in OPS[node.op](ops, node.attrs)]
                outs = [o.astype(np.float64) if o.dtype.kind == "f" else o for o in outs]
            else:
                name = self.prefix + self.names(node.name, node.op)
                outs = self._node(node, ops, name)
            for tensor, value in zip(node.outputs, outs):
                if tensor:
                    env[tensor] = value
        return env

    def _node(self, node, ops, name) -> list:
        op = node.op
        if op in STRUCTURAL:
            return self._structural(node, ops)
        if op == "Shape":
            return OPS["Shape"]([ops[0].items], node.attrs)
        if op == "Relu":
            return [self._relu(ops[0], name)]
        if op in ("Mul", "Div") and all(isinstance(o, VArray) for o in ops[:2]):
            return [self._product(node, ops, name)]
        if op in AFFINE:
            return [self._affine(node, ops, name)]
        if op == "MaxPool":
            return [self._max_pool(node, ops[0], name)]
        if op in ("Max", "Min"):
            vs, shape = _broadcast([_varray(o) for o in ops])
            if op == "Min":
                vs = [negate(v) for v in vs]
            stack = _stack(vs)
            y = select.max_of(self.block, name, stack.items, stack.lo, stack.hi, self.relaxation)
            return [(negate(y) if op == "Min" else y).reshape(tuple(shape))]
        if op in COMPARISONS:
            kind, swap = COMPARISONS[op]
            a, b = (ops[1], ops[0]) if swap else (ops[0], ops[1])
            d = self._affine_fn(lambda z: [z[0] - z[1]], [a, b], f"{name}_d", "elementwise")
            return [select.compare(self.block, name, d.reshape(-1), kind,
                                   self.relaxation).reshape(tuple(d.shape))]
        if op == "Not":
            return [_not(ops[0])]
        if op == "Where":
            return [self._where(ops, name)]
        if op == "Cast":
            return [self._cast(node, ops[0], name)]
        raise UnsupportedError(f"{self.graph.label}: ONNX operator {op} on variable data is "
                               "not supported")

    def _structural(self, node, ops) -> list:
        data = [k for k, o in enumerate(ops) if isinstance(o, VArray)]
        if node.op != "Concat" and data != [0]:
            raise UnsupportedError(f"{self.graph.label}: {node.op} node {node.name} needs "
                                   "constant shapes, indices and axes")
        if node.op == "Concat":
            ops = [_varray(o) for o in ops]
        fields = []
        for f in ("items", "lo", "hi", "indicator"):
            args = [getattr(o, f) if isinstance(o, VArray) else o for o in ops]
            fields.append(OPS[node.op](args, node.attrs))
        return [VArray(*parts) for parts in zip(*fields)]

    def _affine_fn(self, fn, ops, name, kind="general") -> VArray:
        """``fn(operands)[0]`` for operands of which the VArrays enter linearly.

        ``kind``: 'elementwise' (broadcasting ops: one probe per variable operand),
        'batched' (the variable operand is the first, with a leading batch dimension of 1:
        all unit vectors in one call along that dimension) or 'general' (one probe per entry).
        """
        pos = [k for k, o in enumerate(ops) if isinstance(o, VArray)]
        if kind == "elementwise":
            return self._elementwise(fn, ops, pos, name)
        shapes = [ops[k].shape for k in pos]
        sizes = [int(np.prod(s)) for s in shapes]
        n = sum(sizes)

        def f(z):
            args, off = list(ops), 0
            for k, s, m in zip(pos, shapes, sizes):
                args[k] = z[off:off + m].reshape(s)
                off += m
            return np.asarray(fn(args)[0], np.float64)

        base = f(np.zeros(n))
        out_shape, b = base.shape, base.reshape(-1)
        check_dense_size(b.size, n, f"{self.graph.label}: node {name}")
        A = None
        if kind == "batched" and len(pos) == 1 and pos == [0] and len(shapes[0]) >= 2 \
                and shapes[0][0] == 1 and out_shape[:1] == (1,):
            args = list(ops)
            args[0] = np.eye(n).reshape((n,) + tuple(shapes[0][1:]))
            out = np.asarray(fn(args)[0], np.float64)
            # the unit vectors must come out along the leading dimension: a constant operand
            # of higher rank broadcasts them elsewhere (MatMul of (1, 2) by (2, 2, 3) gives
            # (2, n, 3)), and then only the per-entry probes below are right
            if out.shape == (n,) + tuple(out_shape[1:]):
                A = (out.reshape(n, -1) - b).T
        if A is None:
            A = np.empty((b.size, n))
            eye = np.zeros(n)
            for i in range(n):
                eye[i] = 1.0
                A[:, i] = f(eye).reshape(-1) - b
                eye[i] = 0.0
        self._check_affine(f, A, b, n, name)
        items = np.concatenate([ops[k].items.reshape(-1) for k in pos])
        zl = np.concatenate([ops[k].lo.reshape(-1) for k in pos])
        zh = np.concatenate([ops[k].hi.reshape(-1) for k in pos])
        Ap, An = np.maximum(A, 0.0), np.minimum(A, 0.0)
        lo, hi = b + Ap @ zl + An @ zh, b + Ap @ zh + An @ zl
        lo, hi = widen(lo, hi, np.abs(b) + np.abs(A) @ np.maximum(np.abs(zl), np.abs(zh)))
        exprs = [linear([(A[k, i], items[i]) for i in np.flatnonzero(A[k])], b[k])
                 for k in range(b.size)]
        return define(self.block, name, exprs, lo, hi).reshape(tuple(out_shape))

    def _check_affine(self, f, A, b, n, name) -> None:
        """One more probe at a random point: ``f(z) = b + A z`` must hold, or the encoding
        of node ``name`` would not be the network (a wrong probe layout, a non-affine op)."""
        z = np.random.default_rng(0).uniform(-1.0, 1.0, n)
        got, want = f(z).reshape(-1), b + A @ z
        tol = 1e-9 * (1.0 + np.abs(b) + np.abs(A) @ np.abs(z))
        if np.any(np.abs(got - want) > tol):
            raise UnsupportedError(f"{self.graph.label}: node {name} is not the affine map its "
                                "probes measured; please report this model")

    def _elementwise(self, fn, ops, pos, name) -> VArray:
        """A broadcasting affine op: ``y = b + sum_j a_j * z_j`` entrywise, where ``a_j`` is
        the op with operand ``j`` all ones and the other variable operands zero, minus ``b``."""
        zero = list(ops)
        for k in pos:
            zero[k] = np.zeros(ops[k].shape)
        b = np.asarray(fn(zero)[0], np.float64)
        shape = b.shape
        coefs, vs = [], []
        for k in pos:
            args = list(zero)
            args[k] = np.ones(ops[k].shape)
            coefs.append((np.asarray(fn(args)[0], np.float64) - b).reshape(-1))
            vs.append(_broadcast([ops[k]], shape)[0][0].reshape(-1))
        b = b.reshape(-1)
        lo, hi, scale = b.copy(), b.copy(), np.abs(b)
        for a, v in zip(coefs, vs):
            lo = lo + np.minimum(a * v.lo, a * v.hi)
            hi = hi + np.maximum(a * v.lo, a * v.hi)
            scale = scale + np.abs(a) * np.maximum(np.abs(v.lo), np.abs(v.hi))
        lo, hi = widen(lo, hi, scale)
        exprs = [linear([(float(a[i]), v.items[i]) for a, v in zip(coefs, vs)], float(b[i]))
                 for i in range(b.size)]
        return define(self.block, name, exprs, lo, hi).reshape(tuple(shape))

    def _affine(self, node, ops, name) -> VArray:
        var = [k for k, o in enumerate(ops) if isinstance(o, VArray)]
        if node.op in ("MatMul", "Gemm", "Conv", "BatchNormalization", "Div") and \
                (len(var) > 1 or (node.op != "MatMul" and var != [0]) or
                 (node.op == "Gemm" and var == [2])):
            raise UnsupportedError(f"{self.graph.label}: {node.op} node {node.name} with "
                                   "variable weights is not supported")
        kind = ("elementwise" if node.op in ELEMENTWISE else
                "batched" if node.op in ("Conv", "MatMul", "Gemm", "BatchNormalization")
                and not node.attrs.get("transA", 0) else "general")
        return self._affine_fn(lambda args: OPS[node.op](args, node.attrs), ops, name, kind)

    def _relu(self, x: VArray, name) -> VArray:
        h = x.reshape(-1)
        exprs = [linear([(1.0, v)]) for v in h.items]
        h = define(self.block, f"{name}_h", exprs, h.lo, h.hi, force_vars=True)
        a, _ = relu_gate(self.block, name, h, self.relaxation)
        return a.reshape(tuple(x.shape))

    def _max_pool(self, node, x: VArray, name) -> VArray:
        wins = max_pool_windows(x.shape, node.attrs)
        out_shape, k = wins.shape[:-1], wins.shape[-1]
        w = wins.reshape(-1, k)
        ok, safe = w >= 0, np.maximum(w, 0)
        items = np.where(ok, x.items.reshape(-1)[safe], None)
        lo = np.where(ok, x.lo.reshape(-1)[safe], -np.inf)
        hi = np.where(ok, x.hi.reshape(-1)[safe], -np.inf)
        y = select.max_of(self.block, name, items, lo, hi, self.relaxation)
        return y.reshape(tuple(out_shape))

    def _product(self, node, ops, name) -> VArray:
        a, b = ops[0], ops[1]
        (a, b), shape = _broadcast([a, b])
        a, b = a.reshape(-1), b.reshape(-1)
        if node.op == "Mul":
            w = product(self.block, name, a, b, self.relaxation)
            if node.inputs[0] == node.inputs[1]:   # a square: its range starts at 0
                sq_lo = np.where((a.lo <= 0) & (a.hi >= 0), 0.0, np.minimum(a.lo ** 2, a.hi ** 2))
                for j, v in enumerate(w.items):
                    if not isinstance(v, float) and hasattr(v, "setlb"):
                        v.setlb(max(float(sq_lo[j]), v.lb))
                w.lo[:] = np.maximum(w.lo, sq_lo)
            self.bilinear += int(np.sum(~a.indicator & ~b.indicator))
            return w.reshape(tuple(shape))
        # q = a / b  <=>  q b = a, with 0 outside b's range
        if np.any((b.lo <= 0) & (b.hi >= 0)):
            raise UnsupportedError(f"{self.graph.label}: Div node {node.name}: the divisor's "
                                   "range contains 0")
        c = np.stack([a.lo / b.lo, a.lo / b.hi, a.hi / b.lo, a.hi / b.hi])
        lo, hi = widen(c.min(axis=0), c.max(axis=0))
        q = new_vars(self.block, f"{name}_quot", lo, hi)
        w = product(self.block, f"{name}_qb", q, b, self.relaxation)
        add_rows(self.block, f"{name}_div", [linear([(1.0, wv), (-1.0, av)]) == 0
                                             for wv, av in zip(w.items, a.items)])
        self.bilinear += len(a.items)
        return q.reshape(tuple(shape))

    def _where(self, ops, name) -> VArray:
        c, a, b = ops
        if not isinstance(c, VArray):
            (a, b), shape = _broadcast([_varray(a), _varray(b)], np.broadcast_shapes(
                np.shape(c), np.shape(a), np.shape(b)))
            cond = np.broadcast_to(np.asarray(c, bool), shape)
            return VArray(*(np.where(cond, getattr(a, f), getattr(b, f))
                            for f in ("items", "lo", "hi", "indicator")))
        (c, a, b), shape = _broadcast([c, _varray(a), _varray(b)])
        return select.where(self.block, name, c.reshape(-1), a.reshape(-1), b.reshape(-1),
                            self.relaxation).reshape(tuple(shape))

    def _cast(self, node, x: VArray, name) -> VArray:
        to = node.attrs.get("to")
        boolean = x.indicator | ((x.lo == x.hi) & np.isin(x.lo, (0.0, 1.0)))
        if to in _FLOAT_TYPES or boolean.all():   # 0/1 entries stay what they are
            return x
        if to in _HALF_TYPES:
            # rounding to 11 (float16) or 8 (bfloat16) significant bits moves values by up to
            # 1e-3 / 4e-3 relative: read as the identity it made verdicts wrong (a query
            # refuted whose bound onnxruntime reaches by rounding up); no exact encoding
            raise UnsupportedError(f"{self.graph.label}: Cast node {node.name} rounds variable "
                                   "data to half precision, which has no exact MILP encoding")
        flat = x.reshape(-1)
        if to == _BOOL_TYPE:   # x != 0, i.e. not (x == 0)
            e = select.compare(self.block, name, flat, "eq", self.relaxation)
            return _not(e).reshape(tuple(x.shape))
        return select.truncate(self.block, name, flat, self.relaxation).reshape(tuple(x.shape))


def _stack(vs) -> VArray:
    """``k`` VArrays of one shape as ``(m, k)``."""
    return VArray(*(np.stack([getattr(v, f).reshape(-1) for v in vs], axis=1)
                    for f in ("items", "lo", "hi", "indicator")))


def _not(g: VArray) -> VArray:
    items = np.array([1.0 - x if isinstance(x, float) else linear([(-1.0, x)], 1.0)
                      for x in g.items.reshape(-1)] + [None], dtype=object)[:-1]
    return VArray(items.reshape(g.shape), 1.0 - g.hi, 1.0 - g.lo, g.indicator.copy())
