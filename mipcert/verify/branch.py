"""Branch and bound on the input box, with batched CROWN bounds (for low-dimensional inputs).

A region's box is split in two along one input at a time; every sub-box is bounded by CROWN
(batched in torch, hundreds of boxes per pass). A sub-box whose margin lower bound is > 0
is proved; a sub-box whose centre (or a short PGD from it) is a confirmed witness decides
``sat``; the others are split again. The union of the sub-boxes is the
box, so when every leaf is proved the property holds on the region, with bound
``min over leaves of their lower bounds``.

The split input is chosen by trying them all: every box is cut in two along every input,
all ``2 n`` children are bounded in one batch, and the cut whose worse child has the best
bound is kept (its children's bounds are reused, so nothing is computed twice). On ACAS Xu
this needs far fewer boxes than splitting the widest or most sensitive input. For inputs of
high dimension splitting is useless; the MILP takes over.

Each round cuts half a batch of the boxes with the lowest bounds (where a witness would be)
and half of the largest ones (where the unproved volume is): lowest bounds alone let a few
stalled boxes, whose bound no cut moves, hold the front of the queue with their children
while the volume stayed unproved (a perturbed ACAS Xu network: 91.9% proved after 20 s and
still after 90 s).

Where CROWN stalls, alpha-CROWN rescues: once the search has spent :data:`ALPHA_AFTER`
seconds, open boxes cut at least twice per input on average are bounded by alpha-CROWN,
a batch at a time (:func:`mipcert.bounds.alpha.alpha_crown`, its intermediate layers
optimised too), the largest first, within :data:`ALPHA_SHARE` of the CROWN time. A box it proves is
closed; otherwise its bound rises to alpha's (both are sound), it is not tried again, and
its block bounds pass down to every box cut from it (a sub-box's bounds lie inside them),
where CROWN intersects its own with them. On that ACAS Xu network, whose property 2 holds
by a margin of 0.001-0.04 along a thin sheet, CROWN left the worst boxes at -0.11 however
they were cut, and alpha-CROWN bounded them at the sampled minimum (exact).

Where alpha-CROWN fails too, the caller's exact solve finishes (``leaf``: the margin MILP
of the box, :class:`mipcert.verify.schedule._LeafMilp`): boxes alpha-CROWN failed on with
at most :data:`LEAF_MAX_UNSTABLE` unstable ReLUs under its bounds, the fewest first, are
solved on a worker thread while the search goes on (the solver releases the GIL: two
cores). A proved box is closed, a confirmed witness ends the search, a box not settled
within the solve's time limit goes back to be split on. On the perturbed ACAS Xu networks
whose property 2 holds by a hair, CROWN and alpha-CROWN left every deep box at -0.02..0
while the MILP of each (13-28 unstable ReLUs, 0.05-0.8 s) proved it with its true minimum
0.001-0.01: relaxation error, not a thin margin, kept them open. Each stage is tried once
on a box (``SplitState.stage``); its children start again from CROWN. The worker is
stopped by ``SplitState.close()``.
"""
from __future__ import annotations

import logging
import time
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import numpy as np

from ..bounds import batch_pre_bounds, no_grad_for, to_numpy
from .falsify import pgd

log = logging.getLogger(__name__)

# Inputs of at most this many dimensions are worth splitting.
MAX_SPLIT_DIM = 16
# Cuts whose children's bounds differ by less than CUT_TIE (relative) or by less than
# CUT_GAIN times the parent's distance to a proof (|its bound|) are equally good.
CUT_TIE = 1e-7
CUT_GAIN = 1e-2
# alpha-CROWN on stalled boxes: after this many seconds of CROWN rounds, within this share
# of their time, on boxes of depth >= ALPHA_DEPTH_PER_INPUT * n.
ALPHA_AFTER = 2.0
ALPHA_SHARE = 0.5
ALPHA_DEPTH_PER_INPUT = 2
# Adam steps per layer of each rescue: 8 rescue twice the boxes of 20 in the same time and
# proved more of the stalled ACAS Xu volume (99.998 % against 99.980 % in 60 s).
ALPHA_STEPS = 8
# Boxes per alpha-CROWN call: one call on 32 boxes costs 0.012 s a box against 0.03 s for
# one box alone (ACAS Xu, 6x50 ReLUs; per-call overhead amortised).
ALPHA_BATCH = 32
# Exact leaf solves (the caller's MILP, on a worker thread) of boxes alpha-CROWN failed on
# with at most this many unstable ReLUs; at most LEAF_QUEUE boxes with the worker at once
# (2 left it idle most of the time, and the boxes waiting for it were cut meanwhile: the
# perturbed ACAS Xu 3_2 at 2 % went from open at 60 s to proved in 42 s with 8).
LEAF_MAX_UNSTABLE = 40
LEAF_QUEUE = 8
# What has been tried on an open box.
STAGE_CROWN, STAGE_ALPHA, STAGE_LEAF = 0, 1, 2


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
    stage: np.ndarray | None = None   # (N,) int8: STAGE_CROWN, STAGE_ALPHA (alpha-CROWN
                                      # failed on the box) or STAGE_LEAF (so did the MILP)
    inherit: np.ndarray | None = None  # (N,) object: None, or alpha-CROWN's block bounds
                                       # of the box or of a box that holds it
    crown_seconds: float = 0.0
    alpha_seconds: float = 0.0
    alpha_boxes: int = 0
    alpha_proved: int = 0
    leaf_seconds: float = 0.0
    leaf_boxes: int = 0
    leaf_proved: int = 0
    pending: list = field(default_factory=list)   # [_Pending]: boxes with the leaf worker
    worker: object = None   # the leaf worker (a one-thread executor), made on first use
    stop: object = None     # threading.Event that ends the worker's solves (close())

    def close(self) -> None:
        """Stop the leaf worker: queued solves are dropped, a running one ends at its next
        incumbent or clause, and no result of either is used. Call when the search is over."""
        if self.stop is not None:
            self.stop.set()
        for p in self.pending:
            p.future.cancel()
        self.pending = []
        if self.worker is not None:
            self.worker.shutdown(wait=False)
            self.worker = None


@dataclass
class _Pending:
    """A box handed to the leaf worker, out of the open arrays until its solve returns."""
    future: object
    lo: np.ndarray
    hi: np.ndarray
    prio: float
    depth: float
    pre: list


@dataclass
class SplitResult:
    status: str              # 'proved' | 'witness' | 'timeout' | 'budget'
    bound: float             # min lower bound over proved leaves (+inf if none)
    boxes: int               # sub-boxes bounded
    open_lo: np.ndarray      # (N, n) boxes left open ('timeout' / 'budget')
    open_hi: np.ndarray
    state: SplitState | None = None   # to resume with input_split(..., state=state)


def _margin_lower_bounds(network, region, lo, hi, device, inherit=None):
    """CROWN lower bound of the region margin ``min_k m_k`` for boxes ``lo, hi`` ``(B, n)``;
    ``inherit``: known block bounds per box (see :func:`mipcert.bounds.batch_pre_bounds`)."""
    from ..bounds.propagate import clause_bounds

    pre, lo_t, hi_t = batch_pre_bounds(network, lo, hi, "crown", device, inherit=inherit)
    with no_grad_for(lo_t):
        lb = clause_bounds(network.affine_relu_stack(), pre, lo_t, hi_t, region.clauses)
    return to_numpy(lb).min(axis=1)


def input_split(network, region, *, check, deadline=None, max_boxes: int = 400_000,
                batch: int = 48, device=None, state: SplitState | None = None,
                leaf=None) -> SplitResult:
    """Prove or falsify ``region`` by splitting its box (see module doc).

    ``check(x) -> bool`` confirms witnesses; ``deadline``: ``time.perf_counter()`` limit,
    checked after each round (a call always does at least one);
    ``max_boxes``: budget of bounded sub-boxes before giving the rest back; ``batch``:
    parent boxes split per round (each gives ``2 n`` candidate children). ``state``: the
    search returned by an earlier call (``result.state``), resumed where it stopped.
    ``leaf(lo, hi, pre, stop) -> solve``: prepares the exact solve of one box with the block
    bounds ``pre`` on this thread; ``solve() -> (status, bound)`` runs on the worker thread
    (status ``'proved'`` with a sound lower bound of the margin, ``'witness'`` once ``check``
    confirmed one, else ``'open'``) and ends early once the ``threading.Event`` ``stop`` is
    set. None: no leaf solves. The caller calls ``result.state.close()`` when done.
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
        return _split_loop(network, region, state, check, deadline, max_boxes, batch, device, n,
                           leaf)
    finally:
        state.seconds += time.perf_counter() - t0


def _split_loop(network, region, st: SplitState, check, deadline, max_boxes, batch, device, n,
                leaf):
    def result(status):
        return SplitResult(status, st.bound, st.boxes, st.lo, st.hi, st)

    if st.stage is None:
        st.stage = np.full(st.lo.shape[0], STAGE_CROWN, dtype=np.int8)
        st.inherit = np.full(st.lo.shape[0], None, dtype=object)
    while st.lo.shape[0] or st.pending:
        if _collect(st):
            return result("witness")
        if not st.lo.shape[0]:   # every open box is with the leaf worker: wait for one
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                return result("timeout")
            wait([p.future for p in st.pending], timeout=left, return_when=FIRST_COMPLETED)
            continue
        if st.boxes >= max_boxes:
            return result("budget")
        t_round = time.perf_counter()
        take, rest = _pick(st, batch)
        lo, hi, depth, prio = st.lo[take], st.hi[take], st.depth[take], st.prio[take]
        parents = st.inherit[take]
        _keep(st, rest)
        B = lo.shape[0]
        # every box split along every input: children (B, n, 2)
        mid = (lo + hi) / 2
        c_lo = np.repeat(lo[:, None, None, :], 2, axis=2).repeat(n, axis=1)
        c_hi = np.repeat(hi[:, None, None, :], 2, axis=2).repeat(n, axis=1)
        dims = np.arange(n)
        c_hi[:, dims, 0, dims] = mid[:, dims]
        c_lo[:, dims, 1, dims] = mid[:, dims]
        lb = _margin_lower_bounds(network, region, c_lo.reshape(-1, n), c_hi.reshape(-1, n),
                                  device, _inherited(parents, 2 * n)).reshape(B, n, 2)
        st.boxes += B * n * 2
        # a child lies in its parent, so the parent's bound holds on it too
        lb = np.maximum(lb, prio[:, None, None])
        lb[hi - lo <= 0] = -np.inf  # never split a degenerate input
        best = _best_cut(lb, (hi - lo) / np.maximum(region.hi - region.lo, 1e-300), prio)
        ch_lo = c_lo[np.arange(B), best].reshape(-1, n)
        ch_hi = c_hi[np.arange(B), best].reshape(-1, n)
        ch_lb = lb[np.arange(B), best].reshape(-1)
        ch_depth = np.repeat(depth + 1, 2)
        proved = ch_lb > 0
        if proved.any():
            st.bound = min(st.bound, float(ch_lb[proved].min()))
            st.proved_fraction += float(np.exp2(-ch_depth[proved]).sum())
        ch_lo, ch_hi, ch_lb, ch_depth = ch_lo[~proved], ch_hi[~proved], ch_lb[~proved], ch_depth[~proved]
        _push(st, ch_lo, ch_hi, ch_lb, ch_depth, STAGE_CROWN, np.repeat(parents, 2)[~proved])
        if ch_lo.shape[0] and _find_witness(network, region, ch_lo, ch_hi, ch_lb, check):
            return result("witness")
        st.crown_seconds += time.perf_counter() - t_round
        if st.crown_seconds >= ALPHA_AFTER:
            _alpha_rescue(network, region, st, deadline, device, n)
            if leaf is not None:
                _submit_leaves(st, leaf, [blk.relu for blk in network.affine_relu_stack()])
        # checked after the round, so that every call (a resumed one too) makes progress
        if (st.lo.shape[0] or st.pending) and deadline is not None \
                and time.perf_counter() > deadline:
            return result("timeout")
    log.info("input split proved the region with %d sub-boxes (bound %.3g)", st.boxes, st.bound)
    st.proved_fraction = 1.0
    return result("proved")


def _pick(st: SplitState, batch: int):
    """Indices of the boxes to cut this round and of the others: half the batch the lowest
    bounds (where a witness would be), half the largest boxes (where the unproved volume
    is). Lowest bounds alone starve the large boxes once a few stalled ones (bounds that
    no cut moves) keep the front of the queue with their children."""
    N = st.prio.shape[0]
    if N <= batch:
        return np.arange(N), np.arange(0)
    worst = np.argsort(st.prio, kind="stable")[:batch - batch // 2]
    rest = np.setdiff1d(np.arange(N), worst, assume_unique=True)
    largest = rest[np.argsort(st.depth[rest], kind="stable")[:batch // 2]]
    take = np.concatenate([worst, largest])
    return take, np.setdiff1d(rest, largest, assume_unique=True)


def _alpha_rescue(network, region, st: SplitState, deadline, device, n) -> None:
    """Bound qualifying open boxes by alpha-CROWN (see module doc), :data:`ALPHA_BATCH` at
    a time in one batched call, the largest first and among equals the lowest bounds, while
    its time is within ALPHA_SHARE of the CROWN rounds' and before ``deadline``."""
    from ..bounds.alpha import alpha_crown

    stack = network.affine_relu_stack()
    while st.alpha_seconds < ALPHA_SHARE * st.crown_seconds:
        if deadline is not None and time.perf_counter() > deadline:
            return
        cand = np.flatnonzero((st.stage == STAGE_CROWN) & (st.depth >= ALPHA_DEPTH_PER_INPUT * n))
        if not cand.size:
            return
        idx = cand[np.lexsort((st.prio[cand], st.depth[cand]))[:ALPHA_BATCH]]
        t = time.perf_counter()
        lo, hi = st.lo[idx], st.hi[idx]
        pre = batch_pre_bounds(network, lo, hi, "crown", None, _inherited(st.inherit[idx], 1))[0]
        pre = [(to_numpy(l), to_numpy(u)) for l, u in pre]
        pre, margins = alpha_crown(stack, lo, hi, pre, region.clauses, iters=ALPHA_STEPS,
                                   device=device, deadline=deadline)
        m = margins.min(axis=1)
        st.alpha_seconds += time.perf_counter() - t
        st.alpha_boxes += idx.size
        proved = m > 0
        for b, i in enumerate(idx):   # children's CROWN starts from alpha's bounds
            st.inherit[i] = [(l[b], u[b]) for l, u in pre]
        st.prio[idx] = np.maximum(st.prio[idx], m)
        st.stage[idx] = STAGE_ALPHA
        if proved.any():
            st.alpha_proved += int(proved.sum())
            st.bound = min(st.bound, float(m[proved].min()))
            st.proved_fraction += float(np.exp2(-st.depth[idx[proved]]).sum())
            _drop(st, idx[proved])


def _submit_leaves(st: SplitState, leaf, relu: list[bool]) -> None:
    """Hand the leaf worker, up to :data:`LEAF_QUEUE` at a time, the boxes alpha-CROWN failed
    on that have at most :data:`LEAF_MAX_UNSTABLE` unstable ReLUs under its bounds, the
    fewest first (the cheapest MILPs) and among equals the largest. The models are built
    here; the worker thread only solves (the solver releases the GIL, so the search and the
    MILPs use two cores). ``relu``: which blocks of the stack end in a ReLU (the output
    block's units spanning 0 need no binary and are not counted)."""
    free = LEAF_QUEUE - len(st.pending)
    cand = np.flatnonzero(st.stage == STAGE_ALPHA)
    if free <= 0 or not cand.size:
        return
    unstable = np.array([sum(int(((l < 0) & (u > 0)).sum())
                             for (l, u), is_relu in zip(st.inherit[i], relu) if is_relu)
                         for i in cand])
    ok = unstable <= LEAF_MAX_UNSTABLE
    st.stage[cand[~ok]] = STAGE_LEAF   # too many for a quick MILP: splitting goes on
    cand, unstable = cand[ok], unstable[ok]
    take = cand[np.lexsort((st.depth[cand], unstable))[:free]]
    if not take.size:
        return
    if st.worker is None:
        st.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mipcert-leaf")
        st.stop = threading.Event()
    for i in take:
        solve = leaf(st.lo[i], st.hi[i], st.inherit[i], st.stop)
        st.pending.append(_Pending(st.worker.submit(_timed, solve), st.lo[i], st.hi[i],
                                   float(st.prio[i]), float(st.depth[i]), st.inherit[i]))
    _drop(st, take)


def _timed(solve):
    t = time.perf_counter()
    status, bound = solve()
    return status, bound, time.perf_counter() - t


def _collect(st: SplitState) -> bool:
    """Take in the leaf solves that have returned: a proved box is closed, a box not
    settled goes back to the open boxes (split on from now); True on a confirmed witness."""
    done = [p for p in st.pending if p.future.done()]
    if not done:
        return False
    # by identity, not by asking again: a solve that ends in between would be in neither list
    st.pending = [p for p in st.pending if all(p is not q for q in done)]
    back = []
    for p in done:
        status, bound, seconds = p.future.result()
        st.leaf_seconds += seconds
        st.leaf_boxes += 1
        if status == "witness":
            return True
        if status == "proved":
            st.leaf_proved += 1
            st.bound = min(st.bound, bound)
            st.proved_fraction += float(np.exp2(-p.depth))
        else:
            back.append(p)
    if back:
        pre = np.empty(len(back), dtype=object)
        pre[:] = [p.pre for p in back]
        _push(st, np.array([p.lo for p in back]), np.array([p.hi for p in back]),
              np.array([p.prio for p in back]), np.array([p.depth for p in back]),
              STAGE_LEAF, pre)
    return False


def _push(st: SplitState, lo, hi, prio, depth, stage, inherit) -> None:
    """Add open boxes ``lo, hi`` ``(k, n)`` with their bounds and depths ``(k,)``, all at
    ``stage``, and ``inherit`` ``(k,)`` (object)."""
    st.lo, st.hi = np.vstack([st.lo, lo]), np.vstack([st.hi, hi])
    st.prio, st.depth = np.concatenate([st.prio, prio]), np.concatenate([st.depth, depth])
    st.stage = np.concatenate([st.stage, np.full(len(prio), stage, np.int8)])
    st.inherit = np.concatenate([st.inherit, inherit])


def _drop(st: SplitState, idx) -> None:
    """Remove the open boxes ``idx`` (proved, or handed to the leaf worker)."""
    keep = np.ones(st.lo.shape[0], dtype=bool)
    keep[idx] = False
    _keep(st, keep)


def _keep(st: SplitState, idx) -> None:
    """Keep only the open boxes ``idx`` (indices or a mask), every per-box array alike."""
    st.lo, st.hi, st.prio = st.lo[idx], st.hi[idx], st.prio[idx]
    st.depth, st.stage, st.inherit = st.depth[idx], st.stage[idx], st.inherit[idx]


def _inherited(entries, repeat: int):
    """The block bounds of ``entries`` (None or a list of ``(l, u)``), each repeated
    ``repeat`` times, as ``(len * repeat, n_l)`` pairs with ``-inf / +inf`` where none;
    None when no entry has bounds."""
    known = [e for e in entries if e is not None]
    if not known:
        return None
    out = []
    for k, (l0, _) in enumerate(known[0]):
        L = np.full((len(entries), l0.size), -np.inf)
        U = np.full((len(entries), l0.size), np.inf)
        for j, e in enumerate(entries):
            if e is not None:
                L[j], U[j] = e[k]
        out.append((np.repeat(L, repeat, axis=0), np.repeat(U, repeat, axis=0)))
    return out


def _best_cut(lb, width, prio):
    """The input to cut each box along: ``lb`` ``(B, n, 2)`` the children's bounds per cut,
    ``width`` ``(B, n)`` the box's widths relative to the region, ``prio`` ``(B,)`` the
    boxes' own bounds.

    The best worse child first; among equal ones the best better child; among those the
    widest input. Scores within :data:`CUT_TIE` (relative) or :data:`CUT_GAIN` of the
    parent's distance to a proof count as equal: on a plateau, where no cut moves the
    worse child, cutting one input gains rounding noise (1e-12) or a sliver that halves
    with every cut (1e-7 on a bound of -0.17), and without the tolerance that sliver won
    every time: one input was halved 24-40 times over while no box was proved (a perturbed
    ACAS Xu network; a random 6-64x3-3 control network).
    """
    slack = CUT_GAIN * np.abs(prio)[:, None]

    def ties(score, keep):
        score = np.where(keep, score, -np.inf)
        top = score.max(axis=1, keepdims=True)
        return keep & (score >= top - CUT_TIE * (1 + np.abs(top)) - slack)

    keep = ties(lb.min(axis=2), np.ones(width.shape, dtype=bool))
    keep = ties(lb.max(axis=2), keep)
    return np.argmax(np.where(keep, width, -1.0), axis=1)


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
