"""Branch and bound on the input box, with batched CROWN bounds (for low-dimensional inputs).

A region's box is split in two along one input at a time; every sub-box is bounded by CROWN
(batched in torch, hundreds of boxes per pass). A sub-box whose margin lower bound is > 0
is proved; a sub-box whose centre (or a short PGD from it) is a confirmed witness decides
``sat``; the others are split again, lowest bound first. The union of the sub-boxes is the
box, so when every leaf is proved the property holds on the region, with bound
``min over leaves of their lower bounds``.

The split input is the one with the largest ``|∂margin/∂x_i| · width_i`` at the centre
(the "smear" heuristic). For inputs of high dimension this is useless; the MILP takes over.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from ..bounds import batch_pre_bounds
from .falsify import clause_margin_and_grad, pgd

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
    import torch

    from ..bounds.propagate import linear_lower_bound

    pre, lo_t, hi_t = batch_pre_bounds(network, lo, hi, "crown", device)
    stack = network.affine_relu_stack()
    per_clause = []
    with torch.no_grad():
        for clause in region.clauses:
            lb = linear_lower_bound(stack, pre, lo_t, hi_t, clause.C, clause.d, "crown")
            per_clause.append(lb.max(dim=1).values)
    return torch.stack(per_clause).min(dim=0).values.cpu().numpy()


def _split_dims(network, region, lo, hi):
    centre = (lo + hi) / 2
    best_m = np.full(lo.shape[0], np.inf)
    grad = np.zeros_like(lo)
    for clause in region.clauses:
        m, g = clause_margin_and_grad(network, clause, centre)
        take = m < best_m
        best_m[take], grad[take] = m[take], g[take]
    score = np.abs(grad) * (hi - lo)
    score[(hi - lo) <= 0] = -1.0
    return np.argmax(score, axis=1), centre, best_m


def input_split(network, region, *, check, deadline=None, max_boxes: int = 200_000,
                batch: int = 256, device=None) -> SplitResult:
    """Prove or falsify ``region`` by splitting its box (see module doc).

    ``check(x) -> bool`` confirms witnesses; ``deadline``: ``time.perf_counter()`` limit;
    ``max_boxes``: budget of bounded sub-boxes before giving the rest back.
    """
    lo_q, hi_q = region.lo[None].copy(), region.hi[None].copy()
    prio = np.zeros(1)
    bound, seen = np.inf, 0
    while lo_q.shape[0]:
        if deadline is not None and time.perf_counter() > deadline:
            return SplitResult("timeout", bound, seen, lo_q, hi_q)
        if seen >= max_boxes:
            return SplitResult("budget", bound, seen, lo_q, hi_q)
        order = np.argsort(prio, kind="stable")
        take, rest = order[:batch], order[batch:]
        lo, hi = lo_q[take], hi_q[take]
        lo_q, hi_q, prio = lo_q[rest], hi_q[rest], prio[rest]
        lb = _margin_lower_bounds(network, region, lo, hi, device)
        seen += lo.shape[0]
        proved = lb > 0
        if proved.any():
            bound = min(bound, float(lb[proved].min()))
        lo, hi, lb = lo[~proved], hi[~proved], lb[~proved]
        if not lo.shape[0]:
            continue
        dims, centre, m = _split_dims(network, region, lo, hi)
        for i in np.flatnonzero(m <= 0):
            if check(centre[i]):
                return SplitResult("witness", bound, seen, lo_q, hi_q)
        # a short attack inside the most suspicious boxes
        for i in np.argsort(lb)[:4]:
            for clause in region.clauses:
                sub = type(region)(lo[i], hi[i], region.clauses)
                xs, ms = pgd(network, sub, clause, centre[i][None], steps=15)
                if ms[0] <= 0 and check(xs[0]):
                    return SplitResult("witness", bound, seen, lo_q, hi_q)
        mid = centre[np.arange(lo.shape[0]), dims]
        hi_left, lo_right = hi.copy(), lo.copy()
        hi_left[np.arange(lo.shape[0]), dims] = mid
        lo_right[np.arange(lo.shape[0]), dims] = mid
        lo_q = np.vstack([lo_q, lo, lo_right])
        hi_q = np.vstack([hi_q, hi_left, hi])
        prio = np.concatenate([prio, lb, lb])
    log.info("input split proved the region with %d sub-boxes (bound %.3g)", seen, bound)
    return SplitResult("proved", bound, seen, lo_q, hi_q)
