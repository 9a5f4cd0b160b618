"""LP-based bound tightening (OBBT) of unstable neurons, layer by layer.

For each block ``k`` and each unstable neuron ``i`` of it, minimise and maximise
``h_{k,i} = W_k[i] a_{k-1} + b_k[i]`` over the triangle relaxation (FORMULATIONS 1.2) of the
blocks before ``k``, then intersect with the CROWN bounds. The LPs are matrix LPs solved with
HiGHS directly (no Pyomo model: thousands of tiny LPs, only the objective changes) and every
bound is made rigorous by :func:`~mipcert.bounds.safe_lp.dual_lower_bound`.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from ..quiet import new_highs
from .safe_lp import dual_lower_bound

log = logging.getLogger(__name__)


class _TriangleLP:
    """The triangle relaxation of blocks ``0..k-1`` as ``row_lo <= A v <= row_hi``.

    Columns: ``x`` then, per block ``j < k``, ``h_j`` and (for ReLU blocks) ``a_j``.
    ``out_cols``: columns holding ``a_{k-1}`` (the input of block ``k``).
    """

    def __init__(self, stack, pre, k, lo, hi):
        cols_lo, cols_hi = [lo], [hi]
        rows, row_lo, row_hi = [], [], []
        n_cols = lo.size
        prev = np.arange(lo.size)
        for j in range(k):
            blk, (l, u) = stack[j], pre[j]
            n = blk.out_size
            h = n_cols + np.arange(n)
            n_cols += n
            cols_lo.append(l)
            cols_hi.append(u)
            # h_j - W_j a_{j-1} = b_j
            rows.append(("lin", h, prev, blk.W))
            row_lo.append(blk.b)
            row_hi.append(blk.b)
            if blk.relu:
                a = n_cols + np.arange(n)
                n_cols += n
                cols_lo.append(np.maximum(l, 0.0))
                cols_hi.append(np.maximum(u, 0.0))
                unstable = (l < 0) & (u > 0)
                active = l >= 0
                s = np.where(unstable, u / np.where(unstable, u - l, 1.0), 1.0)
                # a - s h <= -s l (upper side of the triangle); active: a - h <= 0; inactive: none
                rows.append(("diag", a, h, -s))
                row_lo.append(np.full(n, -np.inf))
                row_hi.append(np.where(unstable, -s * l, np.where(active, 0.0, np.inf)))
                # a - h >= 0 (active: with the row above, a = h; inactive: a is fixed at 0)
                rows.append(("diag", a, h, -np.ones(n)))
                row_lo.append(np.where(active | unstable, 0.0, -np.inf))
                row_hi.append(np.full(n, np.inf))
                prev = a
            else:
                prev = h
        self.n_cols = n_cols
        self.col_lo, self.col_hi = np.concatenate(cols_lo), np.concatenate(cols_hi)
        self.A = self._assemble(rows)
        self.row_lo, self.row_hi = np.concatenate(row_lo), np.concatenate(row_hi)
        self.out_cols = prev

    def _assemble(self, rows):
        blocks, r0 = [], 0
        for kind, out, inp, M in rows:
            n = out.size
            if kind == "lin":
                Wc = sp.coo_matrix(M)
                ri = np.concatenate([np.arange(n), Wc.row]) + r0
                ci = np.concatenate([out, inp[Wc.col]])
                vv = np.concatenate([np.ones(n), -Wc.data])
            else:  # out_i + M_i * inp_i
                ri = np.concatenate([np.arange(n), np.arange(n)]) + r0
                ci = np.concatenate([out, inp])
                vv = np.concatenate([np.ones(n), M])
            blocks.append((ri, ci, vv))
            r0 += n
        ri, ci, vv = (np.concatenate(x) for x in zip(*blocks))
        return sp.csr_matrix((vv, (ri, ci)), shape=(r0, self.n_cols))


def _highs_for(lp):
    import highspy

    h = new_highs()
    h.setOptionValue("threads", 1)
    inf = highspy.kHighsInf
    h.addVars(lp.n_cols, lp.col_lo, lp.col_hi)
    A = lp.A
    h.addRows(A.shape[0], np.where(np.isfinite(lp.row_lo), lp.row_lo, -inf),
              np.where(np.isfinite(lp.row_hi), lp.row_hi, inf), A.nnz,
              A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data)
    return h


def tighten_block(stack, pre, k, lo, hi, time_limit=None) -> tuple[np.ndarray, np.ndarray]:
    """Tightened ``(l_k, u_k)`` of block ``k`` (numpy, single box) by LP over blocks ``< k``."""
    import highspy

    l_k, u_k = pre[k][0].copy(), pre[k][1].copy()
    unstable = np.flatnonzero((l_k < 0) & (u_k > 0))
    if k == 0 or unstable.size == 0:
        return l_k, u_k
    lp = _TriangleLP(stack, pre, k, lo, hi)
    h = _highs_for(lp)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    W, b = stack[k].W, stack[k].b
    cols = lp.out_cols.astype(np.int32)
    for i in unstable:
        for sign in (1.0, -1.0):  # min of  sign * h_i
            c = np.zeros(lp.n_cols)
            c[cols] = sign * W[i]
            h.changeColsCost(cols.size, cols, c[cols])
            h.run()
            status = h.getModelStatus()
            if status != highspy.HighsModelStatus.kOptimal:
                log.debug("OBBT LP for block %d neuron %d: %s; keeping the old bound", k, i, status)
                continue
            y = np.asarray(h.getSolution().row_dual)
            val = dual_lower_bound(c, lp.A, lp.row_lo, lp.row_hi, lp.col_lo, lp.col_hi, y) \
                + sign * b[i]
            if sign > 0:
                l_k[i] = max(l_k[i], val)
            else:
                u_k[i] = min(u_k[i], -val)
    return l_k, u_k
