"""LP- and MILP-based bound tightening (OBBT) of unstable neurons, layer by layer.

For each block ``k`` and each unstable neuron ``i`` of it, minimise and maximise
``h_{k,i} = W_k[i] a_{k-1} + b_k[i]`` over a relaxation of the blocks before ``k``, then
intersect with the bounds given. The models are matrix models solved with HiGHS directly (no
Pyomo model: thousands of small solves, only the objective changes).

* :func:`tighten_block`: the triangle relaxation (FORMULATIONS 1.2), an LP; every bound is
  made rigorous by :func:`~mipcert.bounds.safe_lp.dual_lower_bound`. It is no tighter than
  alpha-CROWN at its optimum (both are the single-neuron relaxation).
* :func:`tighten_block_milp`: the Big-M encoding (FORMULATIONS 1.1) of the ReLUs unstable
  before ``k``, a MILP: each bound is HiGHS's *dual* bound at its time limit (the optimum
  when it finishes), widened by :data:`MILP_SLACK`. Exact when the solves finish, and the
  only one of the three that sees that the few unstable ReLUs of a sparse first layer
  cannot take all their phases at once: on a 784-256x6 mnist stand-in (eps 0.05) the 6
  unstable ReLUs of block 0 made the 40 of block 1 exact in 9 s, and alpha-CROWN with
  those bounds went from 78 and 256 unstable ReLUs in blocks 4 and 5 to 13 and 0, and from
  margin -442 to +5.6.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from ..quiet import new_highs, run_highs
from .safe_lp import dual_lower_bound

log = logging.getLogger(__name__)


class _TriangleLP:
    """The triangle relaxation of blocks ``0..k-1`` as ``row_lo <= A v <= row_hi``.

    Columns: ``x`` then, per block ``j < k``, ``h_j`` and (for ReLU blocks) ``a_j``.
    ``out_cols``: columns holding ``a_{k-1}`` (the input of block ``k``); ``relus``: per ReLU
    block, its columns ``h_j``, ``a_j`` and bounds ``l_j``, ``u_j`` (``(n_j,)`` each).
    """

    def __init__(self, stack, pre, k, lo, hi):
        cols_lo, cols_hi = [lo], [hi]
        rows, row_lo, row_hi = [], [], []
        n_cols = lo.size
        prev = np.arange(lo.size)
        self.relus = []
        for j in range(k):
            blk, (l, u) = stack[j], pre[j]
            n = blk.out_size
            h = n_cols + np.arange(n)
            n_cols += n
            cols_lo.append(l)
            cols_hi.append(u)
            # h_j - W_j a_{j-1} = b_j; not for the inactive ReLUs of block 0: there the row
            # only says l_j <= W_j x + b_j <= u_j, which every x of the box satisfies, and
            # these dense rows were most of the model (94 % of block 0 on sparse networks)
            keep = (u > 0) if (j == 0 and blk.relu) else np.ones(n, bool)
            rows.append(("lin", h[keep], prev, blk.W[keep]))
            row_lo.append(blk.b[keep])
            row_hi.append(blk.b[keep])
            if blk.relu:
                a = n_cols + np.arange(n)
                n_cols += n
                self.relus.append((h, a, l, u))
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
    # no explicit "threads": HiGHS runs every instance of a process on one thread pool,
    # sized by the first solve, and an instance asking for another size fails to run
    # (model status "Not Set", and a MILP dual bound of 0): after a clause MILP on the
    # default pool, every MILP bound of block 1 of a sparse mnist stand-in came back 0
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
            run_highs(h)
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


# A MILP dual bound rests on LPs solved to HiGHS's tolerances (1e-7 feasibility, 1e-6
# integrality); each one is moved outward by this much (relative, plus the same absolute).
MILP_SLACK = 1e-5


def tighten_block_milp(stack, pre, k, lo, hi, *, deadline=None, neuron_limit=0.5):
    """Tightened ``(l_k, u_k)`` of block ``k`` (numpy, single box) by MILP over blocks ``< k``.

    The triangle LP of :class:`_TriangleLP` plus, for every ReLU ``j`` unstable before ``k``,
    a binary ``z_j`` with ``a_j <= u_j z_j`` and ``a_j <= h_j - l_j (1 - z_j)``. Each unstable
    neuron's upper bound is solved first (most unstable neurons of a trained network end
    inactive); its lower bound only when the upper one stays > 0. Every solve gets at most
    ``neuron_limit`` seconds and none starts after ``deadline`` (``time.perf_counter()``):
    the neurons not reached keep their bounds. Returns ``(l_k, u_k, solves)``.
    """
    import highspy

    l_k, u_k = pre[k][0].copy(), pre[k][1].copy()
    unstable = np.flatnonzero((l_k < 0) & (u_k > 0))
    if k == 0 or unstable.size == 0:
        return l_k, u_k, 0
    if not any(blk.relu and ((l < 0) & (u > 0)).any() for blk, (l, u) in zip(stack[:k], pre)):
        # nothing unstable below: an LP (exact here), bounded rigorously from its duals; a
        # MILP dual bound would not be defined (and the LP's time limit counts differently)
        left = None if deadline is None else max(deadline - time.perf_counter(), 0.01)
        return (*tighten_block(stack, pre, k, lo, hi, time_limit=left), 2 * unstable.size)
    lp = _TriangleLP(stack, pre, k, lo, hi)
    h = _highs_for(lp)
    _add_binaries(h, lp)
    h.setOptionValue("mip_rel_gap", 1e-3)
    W, b = stack[k].W, stack[k].b
    cols = lp.out_cols.astype(np.int32)
    finished = _milp_done()
    solves = 0
    for i in unstable:
        for sign in (-1.0, 1.0):  # min of sign * h_i: the upper bound first
            if sign > 0 and u_k[i] <= 0:
                break
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0.01:
                return l_k, u_k, solves
            h.setOptionValue("time_limit", float(neuron_limit if left is None
                                                 else min(neuron_limit, left)))
            h.changeColsCost(cols.size, cols, sign * W[i])
            run = run_highs(h)
            solves += 1
            status = h.getModelStatus()
            bound = h.getInfo().mip_dual_bound
            # the dual bound only of a run that ended optimal or at its time limit
            if run == highspy.HighsStatus.kError or status not in finished:
                log.warning("MILP bound of block %d neuron %d: %s; keeping the old bound",
                            k, i, status)
                continue
            if not np.isfinite(bound):   # stopped before its root LP: nothing proved
                continue
            val = sign * b[i] + bound - MILP_SLACK * (1 + abs(bound))
            if sign > 0:
                l_k[i] = max(l_k[i], val)
            else:
                u_k[i] = min(u_k[i], -val)
    return l_k, u_k, solves


def _milp_done():
    import highspy

    S = highspy.HighsModelStatus
    return {S.kOptimal, S.kTimeLimit, S.kInterrupt, S.kIterationLimit, S.kSolutionLimit}


def _add_binaries(h, lp) -> int:
    """The Big-M rows of every ReLU unstable in the blocks of ``lp`` (its columns); returns
    how many binaries were added (callers check beforehand that there are some)."""
    import highspy

    unstable = [(l < 0) & (u > 0) for _, _, l, u in lp.relus]
    hh, a, l, u = (np.concatenate([blk[i][un] for blk, un in zip(lp.relus, unstable)])
                   if lp.relus else np.zeros(0) for i in (0, 1, 2, 3))
    m = a.size
    if m == 0:
        return 0
    z = h.getNumCol() + np.arange(m)
    h.addVars(m, np.zeros(m), np.ones(m))
    h.changeColsIntegrality(m, z.astype(np.int32),
                            np.full(m, highspy.HighsVarType.kInteger))
    inf = highspy.kHighsInf
    r = np.arange(m)
    # a - u z <= 0
    A1 = sp.csr_matrix((np.concatenate([np.ones(m), -u]),
                        (np.concatenate([r, r]), np.concatenate([a, z]))), shape=(m, z[-1] + 1))
    # a - h - l z <= -l
    A2 = sp.csr_matrix((np.concatenate([np.ones(m), -np.ones(m), -l]),
                        (np.concatenate([r, r, r]), np.concatenate([a, hh, z]))),
                       shape=(m, z[-1] + 1))
    A = sp.vstack([A1, A2]).tocsr()
    h.addRows(2 * m, np.full(2 * m, -inf), np.concatenate([np.zeros(m), -l]), A.nnz,
              A.indptr.astype(np.int32), A.indices.astype(np.int32), A.data)
    return m
