"""Branch and bound on the input box, with batched CROWN bounds (for low-dimensional inputs).

A region's box is split in two along one input at a time; every sub-box is bounded by CROWN
(batched in torch, hundreds of boxes per pass). A sub-box whose margin lower bound is > 0
is proved; a sub-box whose centre (or a short PGD from it) is a confirmed witness decides
``sat``; the others are split again, lowest bound first. The union of the sub-boxes is the
box, so when every leaf is proved the property holds on the region, with bound
``min over leaves of their lower bounds``.

The split input is chosen by trying them all: every box is cut in two along every input,
all ``2 n`` children are bounded in one batch, and the cut whose worse child has the best
bound is kept (its children's bounds are reused, so nothing is computed twice). On ACAS Xu
this needs far fewer boxes than splitting the widest or most sensitive input. For inputs of
high dimension splitting is useless; the MILP takes over.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..bounds import batch_pre_bounds
from .falsify import pgd

log = logging.getLogger(__name__)

# Inputs of at most this many dimensions are worth splitting.
MAX_SPLIT_DIM = 16


@dataclass
class SplitResult:
    status: str              # 'proved' | 'witness' | 'timeout' | 'budget'
    bound: float             # min lower bound over proved leaves (+inf if none)
    boxes: int               # sub-boxes bounded
    open_lo: np.ndarray      # (N, n) boxes left open ('timeout' / 'budget')
    open_hi: np.ndarray


def _margin_lower_bounds(network, region, lo, hi, device):
    """CROWN lower bound of the region margin ``min_k m_k`` for boxes ``lo, hi`` ``(B, n)``."""
    import torch

    from ..bounds.propagate import clause_bounds

    pre, lo_t, hi_t = batch_pre_bounds(network, lo, hi, "crown", device)
    with torch.no_grad():
        lb = clause_bounds(network.affine_relu_stack(), pre, lo_t, hi_t, region.clauses)
    return lb.min(dim=1).values.cpu().numpy()


def input_split(network, region, *, check, deadline=None, max_boxes: int = 400_000,
                batch: int = 48, device=None) -> SplitResult:
    """Prove or falsify ``region`` by splitting its box (see module doc).

    ``check(x) -> bool`` confirms witnesses; ``deadline``: ``time.perf_counter()`` limit;
    ``max_boxes``: budget of bounded sub-boxes before giving the rest back; ``batch``:
    parent boxes split per round (each gives ``2 n`` candidate children).
    """
    n = region.lo.size
    lo_q, hi_q = region.lo[None].copy(), region.hi[None].copy()
    prio = _margin_lower_bounds(network, region, lo_q, hi_q, device)
    seen = 1
    if prio[0] > 0:
        return SplitResult("proved", float(prio[0]), seen, lo_q[:0], hi_q[:0])
    bound = np.inf
    while lo_q.shape[0]:
        if deadline is not None and time.perf_counter() > deadline:
            return SplitResult("timeout", bound, seen, lo_q, hi_q)
        if seen >= max_boxes:
            return SplitResult("budget", bound, seen, lo_q, hi_q)
        order = np.argsort(prio, kind="stable")
        take, rest = order[:batch], order[batch:]
        lo, hi = lo_q[take], hi_q[take]
        lo_q, hi_q, prio = lo_q[rest], hi_q[rest], prio[rest]
        B = lo.shape[0]
        # every box split along every input: children (B, n, 2)
        mid = (lo + hi) / 2
        c_lo = np.repeat(lo[:, None, None, :], 2, axis=2).repeat(n, axis=1)
        c_hi = np.repeat(hi[:, None, None, :], 2, axis=2).repeat(n, axis=1)
        dims = np.arange(n)
        c_hi[:, dims, 0, dims] = mid[:, dims]
        c_lo[:, dims, 1, dims] = mid[:, dims]
        lb = _margin_lower_bounds(network, region, c_lo.reshape(-1, n), c_hi.reshape(-1, n),
                                  device).reshape(B, n, 2)
        seen += B * n * 2
        lb[:, (hi - lo).max(axis=0) <= 0] = -np.inf  # never split a degenerate input
        best = np.argmax(lb.min(axis=2), axis=1)
        ch_lo = c_lo[np.arange(B), best].reshape(-1, n)
        ch_hi = c_hi[np.arange(B), best].reshape(-1, n)
        ch_lb = lb[np.arange(B), best].reshape(-1)
        proved = ch_lb > 0
        if proved.any():
            bound = min(bound, float(ch_lb[proved].min()))
        ch_lo, ch_hi, ch_lb = ch_lo[~proved], ch_hi[~proved], ch_lb[~proved]
        if ch_lo.shape[0]:
            centre = (ch_lo + ch_hi) / 2
            m = region.margin(network.forward(centre))
            for i in np.flatnonzero(m <= 0):
                if check(centre[i]):
                    return SplitResult("witness", bound, seen, lo_q, hi_q)
            for i in np.argsort(ch_lb)[:2]:   # a short attack inside the worst boxes
                sub = type(region)(ch_lo[i], ch_hi[i], region.clauses)
                for clause in region.clauses:
                    xs, ms = pgd(network, sub, clause, centre[i][None], steps=15)
                    if ms[0] <= 0 and check(xs[0]):
                        return SplitResult("witness", bound, seen, lo_q, hi_q)
        lo_q = np.vstack([lo_q, ch_lo])
        hi_q = np.vstack([hi_q, ch_hi])
        prio = np.concatenate([prio, ch_lb])
    log.info("input split proved the region with %d sub-boxes (bound %.3g)", seen, bound)
    return SplitResult("proved", bound, seen, lo_q, hi_q)
