"""ReLU encodings for one layer, given pre-activation bounds ``h in [l, u]``.

- stably inactive (``u <= 0``): ``a = 0``, no variable at all;
- stably active (``l >= 0``): ``a = h``, the pre-activation variable itself;
- unstable, exact (FORMULATIONS 1.1, Big-M) with binary ``s`` (1 = active)::

      a >= h,  a >= 0,  a <= h - l (1 - s),  a <= u s

- unstable, relaxed (FORMULATIONS 1.2, the triangle, the convex hull on ``[l, u]``)::

      a >= h,  a >= 0,  a <= u (h - l) / (u - l)

The relaxation switch picks between them: binaries integral → Big-M, otherwise the triangle
(which is what relaxing ``s`` to ``[0, 1]`` in the Big-M form gives after projecting ``s`` out).

Training encodings need the gate ``s`` itself: it is also the ReLU derivative of the
backward pass (FORMULATIONS 3.3). :func:`relu_gate` keeps the Big-M form with ``s`` binary
(integral relaxations) or in ``[0, 1]`` (the others: the same triangle once ``s`` is
projected out), and gives stable neurons a constant gate (``u <= 0``: 0; ``l > 0``: 1; the
derivative at ``h = 0`` is 0, so ``l = 0`` keeps a variable gate).
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from ..relaxation import Relaxation
from .varray import VArray


def _bigm_rows(block, name, idx, a, h, s, l, u) -> None:
    """``a >= h``, ``a <= h - l (1 - s)``, ``a <= u s`` for ``j in idx`` (``a >= 0`` is a's bound)."""
    block.add_component(f"{name}_relu_ge_h", pyo.Constraint(
        idx, rule=lambda _, j: LinearExpression(
            constant=0.0, linear_coefs=[1.0, -1.0], linear_vars=[a[j], h[j]]) >= 0))
    # a - h - l s <= -l      (a <= h - l (1 - s))
    block.add_component(f"{name}_relu_bigm_h", pyo.Constraint(
        idx, rule=lambda _, j: LinearExpression(
            constant=0.0, linear_coefs=[1.0, -1.0, -float(l[j])],
            linear_vars=[a[j], h[j], s[j]]) <= -float(l[j])))
    # a - u s <= 0           (a <= u s)
    block.add_component(f"{name}_relu_bigm_u", pyo.Constraint(
        idx, rule=lambda _, j: LinearExpression(
            constant=0.0, linear_coefs=[1.0, -float(u[j])],
            linear_vars=[a[j], s[j]]) <= 0))


def relu_layer(block: pyo.Block, name: str, h, l: np.ndarray, u: np.ndarray,
               relaxation: Relaxation) -> dict[int, object]:
    """Add the ReLU of layer ``name`` to ``block``.

    ``h``: mapping neuron index → Pyomo var of the pre-activation (only non-dead neurons);
    ``l, u``: ``(n,)`` bounds. Returns the mapping neuron → activation var for neurons that are
    not stably inactive (the caller drops the others from the next layer).
    """
    active = [j for j in h if l[j] >= 0]
    unstable = [j for j in h if l[j] < 0 < u[j]]
    out = {j: h[j] for j in active}
    if not unstable:
        return out
    a = pyo.Var(unstable, bounds=lambda _, j: (0.0, float(u[j])))
    block.add_component(f"{name}_a", a)
    if relaxation.integral:
        s = pyo.Var(unstable, domain=pyo.Binary)
        block.add_component(f"{name}_s", s)
        _bigm_rows(block, name, unstable, a, h, s, l, u)
    else:
        block.add_component(f"{name}_relu_ge_h", pyo.Constraint(
            unstable, rule=lambda _, j: LinearExpression(
                constant=0.0, linear_coefs=[1.0, -1.0], linear_vars=[a[j], h[j]]) >= 0))

        def tri(_, j):
            slope = float(u[j] / (u[j] - l[j]))
            return LinearExpression(constant=0.0, linear_coefs=[1.0, -slope],
                                    linear_vars=[a[j], h[j]]) <= -slope * float(l[j])
        block.add_component(f"{name}_relu_triangle", pyo.Constraint(unstable, rule=tri))
    out.update({j: a[j] for j in unstable})
    return dict(sorted(out.items()))


def relu_gate(block: pyo.Block, name: str, h: VArray,
              relaxation: Relaxation) -> tuple[VArray, VArray]:
    """``(a, s)`` for a 1-D pre-activation ``h`` (variables, with bounds ``h.lo, h.hi``).

    ``a = relu(h)`` and the gate ``s = 1[h > 0]`` (the derivative), both ``(n,)``. Components:
    ``{name}_a``, ``{name}_s`` and the Big-M rows of the unstable neurons.
    """
    relaxation = Relaxation.parse(relaxation)
    n = h.shape[0]
    l, u = h.lo, h.hi
    a_items = np.empty(n, dtype=object)
    s_items = np.empty(n, dtype=object)
    a_lo, a_hi = np.maximum(l, 0.0), np.maximum(u, 0.0)
    s_lo, s_hi = np.zeros(n), np.ones(n)
    unstable = [j for j in range(n) if l[j] <= 0 < u[j]]
    for j in range(n):
        if u[j] <= 0:
            a_items[j], s_items[j], s_hi[j] = 0.0, 0.0, 0.0
        elif l[j] > 0:
            a_items[j], s_items[j], s_lo[j] = h.items[j], 1.0, 1.0
    if unstable:
        a = pyo.Var(unstable, bounds=lambda _, j: (0.0, float(u[j])))
        s = pyo.Var(unstable, domain=pyo.Binary if relaxation.integral else pyo.UnitInterval)
        block.add_component(f"{name}_a", a)
        block.add_component(f"{name}_s", s)
        _bigm_rows(block, name, unstable, a, h.items, s, l, u)
        for j in unstable:
            a_items[j], s_items[j] = a[j], s[j]
    s_ind = np.array([not isinstance(v, float) for v in s_items], bool)
    return (VArray(a_items, a_lo, a_hi, np.zeros(n, bool)),
            VArray(s_items, s_lo, s_hi, s_ind))
