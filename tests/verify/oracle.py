"""Ground truth for tiny networks by enumerating ReLU activation patterns.

Written independently of mipcert's encoders: for every pattern p (one bit per hidden ReLU)
the network is affine on the polyhedron {x in box : sign(h) agrees with p}; the minimum of a
linear function of the output there is one LP (scipy's linprog). The minimum of a clause
margin ``max_r (C_r y - d_r)`` over the box is the minimum over feasible patterns of an LP
with an epigraph variable.
"""
from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import linprog


def _affine_pieces(weights, biases, pattern):
    """For a pattern, the maps x -> h_l (A_l, c_l) of every hidden layer and of the output."""
    n0 = weights[0].shape[1]
    A, c = np.eye(n0), np.zeros(n0)
    pieces, pos = [], 0
    for l, (W, b) in enumerate(zip(weights, biases)):
        HA, Hc = W @ A, W @ c + b
        if l == len(weights) - 1:
            return pieces, (HA, Hc)
        n = W.shape[0]
        bits = np.array(pattern[pos:pos + n], dtype=float)
        pos += n
        pieces.append((HA, Hc, bits))
        A, c = HA * bits[:, None], Hc * bits


def min_clause_margin(weights, biases, lo, hi, C, d):
    """Exact ``min over x in [lo, hi] of max_r (C_r f(x) - d_r)`` and a minimiser."""
    n0 = lo.size
    n_hidden = sum(W.shape[0] for W in weights[:-1])
    best, best_x = np.inf, None
    for pattern in itertools.product((0, 1), repeat=n_hidden):
        pieces, (YA, Yc) = _affine_pieces(weights, biases, pattern)
        A_ub, b_ub = [], []
        for HA, Hc, bits in pieces:
            # active: h >= 0  ->  -h <= 0 ; inactive: h <= 0
            sign = np.where(bits > 0, -1.0, 1.0)
            A_ub.append(np.hstack([sign[:, None] * HA, np.zeros((HA.shape[0], 1))]))
            b_ub.append(-sign * Hc)
        # t >= C_r (YA x + Yc) - d_r   ->   C_r YA x - t <= d_r - C_r Yc
        CA = C @ YA
        A_ub.append(np.hstack([CA, -np.ones((C.shape[0], 1))]))
        b_ub.append(d - C @ Yc)
        res = linprog(np.r_[np.zeros(n0), 1.0], A_ub=np.vstack(A_ub), b_ub=np.concatenate(b_ub),
                      bounds=list(zip(lo, hi)) + [(None, None)], method="highs")
        if res.status == 0 and res.fun < best:
            best, best_x = res.fun, res.x[:n0]
    return best, best_x
