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

from ..bounds import batch_pre_bounds, no_grad_for, to_numpy
from .falsify import pgd

log = logging.getLogger(__name__)

# Inputs of at most this many dimensions are worth splitting.
MAX_SPLIT_DIM = 16


@dataclass
class SplitState:
    """The search so far, to resume it: open boxes ``lo, hi`` ``(N, n)``, their margin lower
    bounds ``prio`` ``(N,)`` and split depths ``depth`` ``(N,)`` (a box of depth ``d`` holds
    ``2^-d`` of the region's volume); the bound over proved leaves, boxes bounded, and the
    fraction of the region's volume proved (the measured progress)."""
    lo: np.ndarray
    hi: np.ndarray
    prio: np.ndarray
    depth: np.ndarray
    bound: float = np.inf
    boxes: int = 0
    proved_fraction: float = 0.0
    seconds: float = 0.0


@dataclass
class SplitResult:
    status: str              # 'proved' | 'witness' | 'timeout' | 'budget'
    bound: float             # min lower bound over proved leaves (+inf if none)
    boxes: int               # sub-boxes bounded
    open_lo: np.ndarray      # (N, n) boxes left open ('timeout' / 'budget')
    open_hi: np.ndarray
    state: SplitState | None = None   # to resume with input_split(..., state=state)


def _margin_lower_bounds(network, region, lo, hi, device):
    """CROWN lower bound of the region margin ``min_k m_k`` for boxes ``lo, hi`` ``(B, n)``."""
    from ..bounds.propagate import clause_bounds

    pre, lo_t, hi_t = batch_pre_bounds(network, lo, hi, "crown", device)
    with no_grad_for(lo_t):
        lb = clause_bounds(network.affine_relu_stack(), pre, lo_t, hi_t, region.clauses)
    return to_numpy(lb).min(axis=1)


def input_split(network, region, *, check, deadline=None, max_boxes: int = 400_000,
                batch: int = 48, device=None, state: SplitState | None = None) -> SplitResult:
    """Prove or falsify ``region`` by splitting its box (see module doc).

    ``check(x) -> bool`` confirms witnesses; ``deadline``: ``time.perf_counter()`` limit,
    checked after each round (a call always does at least one);
    ``max_boxes``: budget of bounded sub-boxes before giving the rest back; ``batch``:
    parent boxes split per round (each gives ``2 n`` candidate children). ``state``: the
    search returned by an earlier call (``result.state``), resumed where it stopped.
    """
    t0 = time.perf_counter()
    n = region.lo.size
    if state is None:
        lo_q, hi_q = region.lo[None].copy(), region.hi[None].copy()
        prio = _margin_lower_bounds(network, region, lo_q, hi_q, device)
        state = SplitState(lo_q, hi_q, prio, np.zeros(1), boxes=1)
        if prio[0] > 0:
            state.bound, state.proved_fraction = float(prio[0]), 1.0
            state.lo, state.hi, state.prio, state.depth = lo_q[:0], hi_q[:0], prio[:0], state.depth[:0]
            return SplitResult("proved", float(prio[0]), 1, lo_q[:0], hi_q[:0], state)
    try:
        return _split_loop(network, region, state, check, deadline, max_boxes, batch, device, n)
    finally:
        state.seconds += time.perf_counter() - t0


def _split_loop(network, region, st: SplitState, check, deadline, max_boxes, batch, device, n):
    def result(status):
        return SplitResult(status, st.bound, st.boxes, st.lo, st.hi, st)

    while st.lo.shape[0]:
        if st.boxes >= max_boxes:
            return result("budget")
        order = np.argsort(st.prio, kind="stable")
        take, rest = order[:batch], order[batch:]
        lo, hi, depth = st.lo[take], st.hi[take], st.depth[take]
        st.lo, st.hi, st.prio, st.depth = st.lo[rest], st.hi[rest], st.prio[rest], st.depth[rest]
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
        st.boxes += B * n * 2
        lb[:, (hi - lo).max(axis=0) <= 0] = -np.inf  # never split a degenerate input
        best = np.argmax(lb.min(axis=2), axis=1)
        ch_lo = c_lo[np.arange(B), best].reshape(-1, n)
        ch_hi = c_hi[np.arange(B), best].reshape(-1, n)
        ch_lb = lb[np.arange(B), best].reshape(-1)
        ch_depth = np.repeat(depth + 1, 2)
        proved = ch_lb > 0
        if proved.any():
            st.bound = min(st.bound, float(ch_lb[proved].min()))
            st.proved_fraction += float(np.exp2(-ch_depth[proved]).sum())
        ch_lo, ch_hi, ch_lb, ch_depth = ch_lo[~proved], ch_hi[~proved], ch_lb[~proved], ch_depth[~proved]
        st.lo, st.hi = np.vstack([st.lo, ch_lo]), np.vstack([st.hi, ch_hi])
        st.prio, st.depth = np.concatenate([st.prio, ch_lb]), np.concatenate([st.depth, ch_depth])
        if ch_lo.shape[0] and _find_witness(network, region, ch_lo, ch_hi, ch_lb, check):
            return result("witness")
        # checked after the round, so that every call (a resumed one too) makes progress
        if st.lo.shape[0] and deadline is not None and time.perf_counter() > deadline:
            return result("timeout")
    log.info("input split proved the region with %d sub-boxes (bound %.3g)", st.boxes, st.bound)
    st.proved_fraction = 1.0
    return result("proved")


def _find_witness(network, region, lo, hi, lb, check) -> bool:
    """Try the centres of the boxes ``lo, hi`` ``(N, n)`` and a short PGD in the two with
    the lowest bounds ``lb``; True when ``check`` confirmed a witness."""
    centre = (lo + hi) / 2
    m = region.margin(network.forward(centre))
    for i in np.flatnonzero(m <= 0):
        if check(centre[i]):
            return True
    for i in np.argsort(lb)[:2]:   # a short attack inside the worst boxes
        sub = type(region)(lo[i], hi[i], region.clauses)
        for clause in region.clauses:
            xs, ms = pgd(network, sub, clause, centre[i][None], steps=15)
            if ms[0] <= 0 and check(xs[0]):
                return True
    return False
