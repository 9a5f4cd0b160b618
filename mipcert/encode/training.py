"""One sample's pass through a training step as Pyomo constraints (FORMULATIONS 3.3).

Every function takes the :class:`~mipcert.relaxation.Relaxation` switch and works on
:class:`~mipcert.encode.varray.VArray` quantities (constants, variables or linear
expressions, each with interval bounds); names are ``{name}_{what}`` with deterministic
indices, e.g. ``step3_s17_h1[4]`` (layer 1, neuron 4 of sample 17 in step 3).

- :func:`dense`: ``h = W a + b`` with the weights and biases variables; ``W_ji a_i`` is a
  product (FORMULATIONS 1.3) unless ``a_i`` is data, where it is a linear term.
- :func:`~mipcert.encode.relu.relu_gate`: ``a = relu(h)`` with the gate ``s`` that is also
  the ReLU derivative.
- :func:`loss_gradient`: ``delta_L = d loss / d z``: hinge exact (indicators on the
  margins of the clean and the flipped label), squared error exact (linear), BCE and cross-entropy a sound box from interval
  bounds of the sigmoid / softmax (relaxed even in MIQCP; the label part stays exact).
- :func:`backward`: ``delta_{l-1} = (W_l^T delta_l) * s_{l-1}``; the product with the gate
  is always the exact Big-M linearisation.
- :func:`layer_gradient`: ``dW_l = delta_l a_{l-1}^T``, ``db_l = delta_l``, flattened like
  :mod:`mipcert.network.training`.
- :func:`clip`: ``clip(g, -gamma, gamma) = g - relu(g - gamma) + relu(-gamma - g)`` with two
  gates (exact when integral) plus the convex hull of the clip graph on ``[gl, gu]`` (the
  whole relaxation when the gates are relaxed).
"""
from __future__ import annotations

import math

import numpy as np
import pyomo.environ as pyo

from ..errors import InputError
from ..relaxation import Relaxation
from .products import product
from .relu import relu_gate
from .varray import VArray, add_rows, const, define, linear, new_vars, widen


def _sum_bounds(parts_lo: np.ndarray, parts_hi: np.ndarray, axis: int):
    """Interval of a sum, widened by the terms' magnitudes."""
    mag = np.maximum(np.abs(parts_lo), np.abs(parts_hi)).sum(axis=axis)
    return widen(parts_lo.sum(axis=axis), parts_hi.sum(axis=axis), mag)


def dense(block: pyo.Block, name: str, W: VArray, a: VArray, b: VArray | None,
          relaxation: Relaxation, as_vars: bool = True) -> VArray:
    """Pre-activations ``h = W a + b`` (shape ``(out,)``): variables ``{name}[j]`` with
    defining rows, or (``as_vars=False``, e.g. for logits that only feed linear rows)
    linear expressions, which add nothing to the model where nothing uses them.

    ``W``: ``(out, in)``; ``a``: ``(in,)``; ``b``: ``(out,)`` or None. Products of two
    variables are ``{name}_Wa[j, i]`` (exact or McCormick by the switch).
    """
    out, inp = W.shape
    prods = product(block, f"{name}_Wa", W, VArray(
        np.tile(a.items, (out, 1)), np.tile(a.lo, (out, 1)), np.tile(a.hi, (out, 1)),
        np.tile(a.indicator, (out, 1))), relaxation)
    lo, hi = prods.lo.sum(axis=1), prods.hi.sum(axis=1)
    mag = np.maximum(np.abs(prods.lo), np.abs(prods.hi)).sum(axis=1)
    exprs = []
    for j in range(out):
        terms = [(1.0, prods.items[j, i]) for i in range(inp)]
        if b is not None:
            terms.append((1.0, b.items[j]))
        exprs.append(linear(terms))
    if b is not None:
        lo, hi = lo + b.lo, hi + b.hi
        mag = mag + np.maximum(np.abs(b.lo), np.abs(b.hi))
    lo, hi = widen(lo, hi, mag)
    return define(block, name, exprs, lo, hi, force_vars=as_vars)


def loss_gradient(block: pyo.Block, name: str, z: VArray, y: float, loss: str,
                  relaxation: Relaxation, flip: VArray | None = None,
                  shift: VArray | None = None, n_classes: int | None = None) -> VArray:
    """``delta_L`` ``(m,)`` for logits ``z`` ``(m,)`` and the (possibly perturbed) label.

    ``y``: the clean label (pm1 for hinge, a value for squared, an index for bce /
    cross-entropy). ``flip``: a 1-entry indicator VArray (1 = this sample's label is
    changed: pm1 ``y' = -y``, bce ``t' = 1 - t``, cross-entropy any other class);
    ``shift``: a 1-entry VArray ``v`` with ``y' = y + v`` (squared error only).
    """
    relaxation = Relaxation.parse(relaxation)
    if loss == "hinge":
        return _hinge(block, name, z, y, relaxation, flip)
    if loss == "squared":
        terms = [(2.0, z.items[0]), (-2.0, float(y))]
        lo, hi = 2.0 * (z.lo[0] - y), 2.0 * (z.hi[0] - y)
        if flip is not None:          # y' = y - 2 y f
            terms.append((4.0 * y, flip.items[0]))
            lo, hi = min(lo, lo + 4.0 * y), max(hi, hi + 4.0 * y)
        if shift is not None:          # y' = y + v
            terms.append((-2.0, shift.items[0]))
            lo, hi = lo - 2.0 * shift.hi[0], hi - 2.0 * shift.lo[0]
        mag = 2.0 * (max(abs(z.lo[0]), abs(z.hi[0])) + 3.0 * abs(y)
                     + (0.0 if shift is None else float(shift.hi[0] - shift.lo[0])))
        lo, hi = widen(np.array([lo]), np.array([hi]), mag)
        return define(block, f"{name}_delta", [linear(terms)], lo, hi)
    if loss == "bce":
        return _bce(block, name, z, y, flip)
    if loss == "cross_entropy":
        return _cross_entropy(block, name, z, int(y), flip, relaxation)
    raise InputError(f"unknown loss {loss!r}: choose hinge, squared, bce or cross_entropy")


def _hinge(block, name, z: VArray, y: float, relaxation, flip) -> VArray:
    """Hinge loss gradient with ``u = y z`` (the clean signed logit) and two gates that do
    not depend on the flip: ``c0 = 1[1 - u > 0]`` (clean label active) and
    ``c1 = 1[1 + u > 0]`` (flipped label active), each Big-M on ``u`` and a constant where
    the bounds of ``u`` decide it. With ``y' = y (1 - 2 f)``::

        delta = -y' 1[1 - y' z > 0] = -y c0 + y (f c0 + f c1)

    (``f c0``, ``f c1``: indicator products, exact). Without a flip ``delta = -y c0``."""
    u_lo = min(y * z.lo[0], y * z.hi[0])
    u_hi = max(y * z.lo[0], y * z.hi[0])
    u = VArray(np.array([linear([(y, z.items[0])])], dtype=object), np.array([u_lo]),
               np.array([u_hi]), np.zeros(1, bool))
    # 1 - u > 0  <=>  u < 1
    c0 = _indicator_of_positive(block, f"{name}_c0", u, relaxation, sign=-1.0, offset=1.0)
    terms = [(-y, c0.items[0])]
    lo, hi = (min(0.0, -y), max(0.0, -y))
    if flip is not None:
        c1 = _indicator_of_positive(block, f"{name}_c1", u, relaxation, sign=1.0, offset=1.0)
        for tag, c in (("c0", c0), ("c1", c1)):
            fc = product(block, f"{name}_f{tag}", flip, c, relaxation)
            terms.append((y, fc.items[0]))
        lo, hi = -1.0, 1.0
    return define(block, f"{name}_delta", [linear(terms)], [lo], [hi])


def _indicator_of_positive(block, name, u: VArray, relaxation, sign: float = 1.0,
                           offset: float = 0.0) -> VArray:
    """``c = 1[r > 0]`` for ``r = offset + sign * u`` (``u`` a 1-entry quantity with bounds):
    ``r >= rl (1 - c)``, ``r <= ru c`` (at ``r = 0`` both values are feasible)."""
    ends = (offset + sign * float(u.lo[0]), offset + sign * float(u.hi[0]))
    rl, ru = min(ends), max(ends)
    if rl > 0:
        return const([1.0])
    if ru <= 0:
        return const([0.0])
    c = new_vars(block, name, np.zeros(1), np.ones(1), indicator=True,
                 integral=relaxation.integral)
    r = u.items[0]
    add_rows(block, f"{name}_bigm", [
        linear([(sign, r), (rl, c.items[0])], offset - rl) >= 0,
        linear([(sign, r), (-ru, c.items[0])], offset) <= 0])
    return c


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _bce(block, name, z: VArray, t: float, flip) -> VArray:
    """``delta = sigmoid(z) - t'``: the sigmoid is a box ``[sig(zl), sig(zu)]`` (relaxed
    in every method), the label ``t' = t + f (1 - 2 t)`` exact."""
    p_lo, p_hi = widen(np.array([_sigmoid(z.lo[0])]), np.array([_sigmoid(z.hi[0])]))
    p = new_vars(block, f"{name}_sigmoid_box", np.maximum(p_lo, 0.0), np.minimum(p_hi, 1.0))
    terms = [(1.0, p.items[0]), (-1.0, float(t))]
    lo, hi = p.lo[0] - t, p.hi[0] - t
    if flip is not None:
        terms.append((-(1.0 - 2.0 * t), flip.items[0]))
        lo, hi = p.lo[0] - 1.0, p.hi[0]
    return define(block, f"{name}_delta", [linear(terms)], [lo], [hi])


def _softmax_box(zl: np.ndarray, zu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per class ``k``: ``[e^{zl_k} / (e^{zl_k} + sum_j!=k e^{zu_j}), e^{zu_k} / (...)]``."""
    m = len(zl)
    lo, hi = np.empty(m), np.empty(m)
    for k in range(m):
        others_hi = np.delete(zu, k) - zl[k]
        others_lo = np.delete(zl, k) - zu[k]
        lo[k] = 1.0 / (1.0 + np.exp(others_hi).sum())
        hi[k] = 1.0 / (1.0 + np.exp(others_lo).sum())
    return lo, hi


def _cross_entropy(block, name, z: VArray, y: int, flip, relaxation) -> VArray:
    """``delta = softmax(z) - onehot(y')``: softmax a box (``sum_k p_k = 1`` kept), the
    label exact: ``o_y = 1 - f``, ``sum_{k != y} o_k = f`` with indicators ``o_k``."""
    m = z.shape[0]
    p_lo, p_hi = widen(*_softmax_box(z.lo, z.hi))
    p = new_vars(block, f"{name}_softmax_box", np.maximum(p_lo, 0.0), np.minimum(p_hi, 1.0))
    add_rows(block, f"{name}_softmax_sum", [linear([(1.0, v) for v in p.items], -1.0) == 0])
    if flip is None:
        onehot = const(np.eye(m)[y])
    else:
        others = [k for k in range(m) if k != y]
        o = new_vars(block, f"{name}_label", np.zeros(len(others)), np.ones(len(others)),
                     indicator=True, integral=relaxation.integral)
        add_rows(block, f"{name}_label_sum", [
            linear([(1.0, v) for v in o.items] + [(-1.0, flip.items[0])]) == 0])
        items = np.empty(m, dtype=object)
        items[y] = linear([(-1.0, flip.items[0])], 1.0)
        for t, k in enumerate(others):
            items[k] = o.items[t]
        onehot = VArray(items, np.zeros(m), np.ones(m), np.zeros(m, bool))
    exprs = [linear([(1.0, p.items[k]), (-1.0, onehot.items[k])]) for k in range(m)]
    return define(block, f"{name}_delta", exprs, p.lo - onehot.hi, p.hi - onehot.lo)


def backward(block: pyo.Block, name: str, W: VArray, delta: VArray, s: VArray,
             relaxation: Relaxation) -> VArray:
    """``delta_{l-1} = (W_l^T delta_l) * s_{l-1}`` ``(in,)``; ``W``: ``(out, in)``.

    Components ``{name}_Wd[j, i]`` (products ``W_ji delta_j``), ``{name}_u`` (the sums) and
    ``{name}`` (the gated result: indicator products, exact Big-M).
    """
    out, inp = W.shape
    D = VArray(np.tile(delta.items[:, None], (1, inp)), np.tile(delta.lo[:, None], (1, inp)),
               np.tile(delta.hi[:, None], (1, inp)), np.tile(delta.indicator[:, None], (1, inp)))
    prods = product(block, f"{name}_Wd", W, D, relaxation)
    lo, hi = _sum_bounds(prods.lo, prods.hi, 0)
    exprs = [linear([(1.0, prods.items[j, i]) for j in range(out)]) for i in range(inp)]
    u = define(block, f"{name}_u", exprs, lo, hi, force_vars=True)
    return product(block, name, u, s, relaxation)


def layer_gradient(block: pyo.Block, name: str, delta: VArray, a_prev: VArray, bias: bool,
                   relaxation: Relaxation) -> VArray:
    """``[vec(dW_l), db_l]`` ``(out * in + out,)``: ``dW = delta a_prev^T``, ``db = delta``."""
    out, inp = delta.shape[0], a_prev.shape[0]
    D = VArray(np.repeat(delta.items, inp), np.repeat(delta.lo, inp), np.repeat(delta.hi, inp),
               np.repeat(delta.indicator, inp))
    A = VArray(np.tile(a_prev.items, out), np.tile(a_prev.lo, out), np.tile(a_prev.hi, out),
               np.tile(a_prev.indicator, out))
    dW = product(block, f"{name}_dW", D, A, relaxation)
    if not bias:
        return dW
    return VArray(np.concatenate([dW.items, delta.items]), np.concatenate([dW.lo, delta.lo]),
                  np.concatenate([dW.hi, delta.hi]),
                  np.concatenate([dW.indicator, delta.indicator]))


def _clip_value(g: float, gamma: float) -> float:
    return min(max(g, -gamma), gamma)


def _hull_segments(gl: float, gu: float, gamma: float):
    """Upper and lower hull edges ``(slope, intercept)`` of the clip graph on ``[gl, gu]``."""
    xs = [gl] + [v for v in (-gamma, gamma) if gl < v < gu] + [gu]
    pts = [(x, _clip_value(x, gamma)) for x in xs]

    def chain(points, upper):
        hull = []
        for p in points:
            while len(hull) >= 2:
                (x1, y1), (x2, y2) = hull[-2], hull[-1]
                cross = (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1)
                if (cross >= 0) if upper else (cross <= 0):
                    hull.pop()
                else:
                    break
            hull.append(p)
        return [((y2 - y1) / (x2 - x1), y1 - (y2 - y1) / (x2 - x1) * x1)
                for (x1, y1), (x2, y2) in zip(hull, hull[1:]) if x2 > x1]
    return chain(pts, True), chain(pts, False)


def clip(block: pyo.Block, name: str, g: VArray, gamma: float,
         relaxation: Relaxation) -> VArray:
    """``clip(g, -gamma, gamma)`` elementwise for a 1-D ``g`` (FORMULATIONS 3.1)."""
    relaxation = Relaxation.parse(relaxation)
    n = g.shape[0]
    items = np.empty(n, dtype=object)
    lo = np.clip(g.lo, -gamma, gamma)
    hi = np.clip(g.hi, -gamma, gamma)
    need = [j for j in range(n) if not isinstance(g.items[j], float)
            and (g.hi[j] > gamma or g.lo[j] < -gamma)]
    for j in range(n):
        if isinstance(g.items[j], float):
            items[j] = _clip_value(g.items[j], gamma)
        elif g.hi[j] <= -gamma:
            items[j] = -gamma
        elif g.lo[j] >= gamma:
            items[j] = gamma
        else:
            items[j] = g.items[j]
    need = [j for j in need if g.hi[j] > -gamma and g.lo[j] < gamma]
    if not need:
        return VArray(items, lo, hi, np.zeros(n, bool))
    idx = np.array(need)
    gv = VArray(g.items[idx], g.lo[idx], g.hi[idx], np.zeros(len(idx), bool))
    mag = np.maximum(np.abs(gv.lo), np.abs(gv.hi)) + gamma
    over = define(block, f"{name}_over_pre", [linear([(1.0, v)], -gamma) for v in gv.items],
                  *widen(gv.lo - gamma, gv.hi - gamma, mag), force_vars=True)
    under = define(block, f"{name}_under_pre", [linear([(-1.0, v)], -gamma) for v in gv.items],
                   *widen(-gv.hi - gamma, -gv.lo - gamma, mag), force_vars=True)
    a_over, _ = relu_gate(block, f"{name}_over", over, relaxation)
    a_under, _ = relu_gate(block, f"{name}_under", under, relaxation)
    exprs = [linear([(1.0, gv.items[t]), (-1.0, a_over.items[t]), (1.0, a_under.items[t])])
             for t in range(len(idx))]
    out = define(block, name, exprs, *widen(lo[idx], hi[idx], 3 * mag), force_vars=True)
    rows = []
    for t, j in enumerate(idx):
        upper, lower = _hull_segments(float(g.lo[j]), float(g.hi[j]), gamma)
        for slope, icpt in upper:
            rows.append(linear([(1.0, out.items[t]), (-slope, gv.items[t])], -icpt) <= 0)
        for slope, icpt in lower:
            rows.append(linear([(1.0, out.items[t]), (-slope, gv.items[t])], -icpt) >= 0)
    add_rows(block, f"{name}_hull", rows)
    for t, j in enumerate(idx):
        items[j] = out.items[t]
    lo[idx], hi[idx] = out.lo, out.hi
    return VArray(items, lo, hi, np.zeros(n, bool))
