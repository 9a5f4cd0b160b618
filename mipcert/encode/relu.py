"""ReLU encodings for one layer, given pre-activation bounds ``h in [l, u]``.

- stably inactive (``u <= 0``): ``a = 0``, no variable at all;
- stably active (``l >= 0``): ``a = h``, the pre-activation variable itself;
- unstable, exact (FORMULATIONS 1.1, Big-M) with binary ``s`` (1 = active)::

      a >= h,  a >= 0,  a <= h - l (1 - s),  a <= u s

- unstable, relaxed (FORMULATIONS 1.2, the triangle, the convex hull on ``[l, u]``)::

      a >= h,  a >= 0,  a <= u (h - l) / (u - l)

The relaxation switch picks between them: binaries integral → Big-M, otherwise the triangle
(which is what relaxing ``s`` to ``[0, 1]`` in the Big-M form gives after projecting ``s`` out).
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from ..relaxation import Relaxation


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
    block.add_component(f"{name}_relu_ge_h", pyo.Constraint(
        unstable, rule=lambda _, j: LinearExpression(
            constant=0.0, linear_coefs=[1.0, -1.0], linear_vars=[a[j], h[j]]) >= 0))
    if relaxation.integral:
        s = pyo.Var(unstable, domain=pyo.Binary)
        block.add_component(f"{name}_s", s)
        # a - h - l s <= -l      (a <= h - l (1 - s))
        block.add_component(f"{name}_relu_bigm_h", pyo.Constraint(
            unstable, rule=lambda _, j: LinearExpression(
                constant=0.0, linear_coefs=[1.0, -1.0, -float(l[j])],
                linear_vars=[a[j], h[j], s[j]]) <= -float(l[j])))
        # a - u s <= 0           (a <= u s)
        block.add_component(f"{name}_relu_bigm_u", pyo.Constraint(
            unstable, rule=lambda _, j: LinearExpression(
                constant=0.0, linear_coefs=[1.0, -float(u[j])],
                linear_vars=[a[j], s[j]]) <= 0))
    else:
        def tri(_, j):
            slope = float(u[j] / (u[j] - l[j]))
            return LinearExpression(constant=0.0, linear_coefs=[1.0, -slope],
                                    linear_vars=[a[j], h[j]]) <= -slope * float(l[j])
        block.add_component(f"{name}_relu_triangle", pyo.Constraint(unstable, rule=tri))
    out.update({j: a[j] for j in unstable})
    return dict(sorted(out.items()))
