"""Ground truth for tiny networks by enumerating ReLU activation patterns.

Written independently of mipcert's encoders and bounds. The network is affine on each
polyhedron {x in box : the signs of all pre-activations follow a pattern}. A depth-first
search fixes one neuron's sign at a time and drops a branch as soon as its polyhedron is
empty (one feasibility LP), so only realisable patterns are visited. At each leaf the
minimum of every clause margin ``max_r (C_r y - d_r)`` is one LP with an epigraph variable
(scipy's linprog).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linprog


def _feasible(A, b, box):
    if not A:
        return True
    res = linprog(np.zeros(len(box)), A_ub=np.vstack(A), b_ub=np.array(b), bounds=box,
                  method="highs")
    return res.status == 0


def linear_pieces(weights, biases, lo, hi):
    """Every realisable activation pattern over ``[lo, hi]`` as ``(A, b, YA, Yc)``: the
    polyhedron ``{x in box : A x <= b}`` on which the network is ``f(x) = YA x + Yc``."""
    n0 = lo.size
    box = list(zip(lo, hi))
    out = []

    def descend(layer, neuron, A, b, MA, Mc, bits):
        # MA, Mc: the affine map x -> input of `layer`; bits: signs fixed so far in `layer`
        W, bb = weights[layer], biases[layer]
        HA, Hc = W @ MA, W @ Mc + bb
        if layer == len(weights) - 1:
            out.append((A, b, HA, Hc))
            return
        if neuron == W.shape[0]:
            s = np.array(bits, dtype=float)
            descend(layer + 1, 0, A, b, HA * s[:, None], Hc * s, [])
            return
        for active in (1, 0):
            sign = -1.0 if active else 1.0  # active: -h <= 0 ; inactive: h <= 0
            A2, b2 = A + [sign * HA[neuron]], b + [-sign * Hc[neuron]]
            if _feasible(A2, b2, box):
                descend(layer, neuron + 1, A2, b2, MA, Mc, bits + [active])

    descend(0, 0, [], [], np.eye(n0), np.zeros(n0), [])
    return out


def min_clause_margins(weights, biases, lo, hi, clauses):
    """Exact ``min over x in [lo, hi] of max_r (C_r f(x) - d_r)`` for each ``(C, d)``."""
    n0 = lo.size
    box = list(zip(lo, hi))
    best = np.full(len(clauses), np.inf)
    best_x = [None] * len(clauses)
    for A, b, YA, Yc in linear_pieces(weights, biases, lo, hi):
        for k, (C, d) in enumerate(clauses):
            A_ub = [np.hstack([a, [0.0]]) for a in A] + list(np.hstack([C @ YA, -np.ones((C.shape[0], 1))]))
            b_ub = list(b) + list(d - C @ Yc)
            res = linprog(np.r_[np.zeros(n0), 1.0], A_ub=np.vstack(A_ub), b_ub=np.array(b_ub),
                          bounds=box + [(None, None)], method="highs")
            if res.status == 0 and res.fun < best[k]:
                best[k], best_x[k] = res.fun, res.x[:n0]
    return best, best_x


def min_clause_margin(weights, biases, lo, hi, C, d):
    """Exact minimum of one clause margin and a minimiser."""
    best, xs = min_clause_margins(weights, biases, lo, hi, [(C, d)])
    return best[0], xs[0]
