"""Branch and bound on ReLU phases with beta-CROWN bounds (for inputs of many dimensions).

Input splitting (:mod:`.branch`) is useless on 784 inputs; the unstable ReLUs are what make a
clause hard there. This search splits them instead: a sub-domain fixes the phase of some
ReLUs (``h_j >= 0`` or ``h_j <= 0``) and is bounded by :mod:`mipcert.bounds.beta` (CROWN with
the split constraints dualised by ``β`` and the lower slopes ``α`` optimised; children
inherit their parent's ``α, β``). Every round takes the ``batch`` open sub-domains with the
lowest bounds, splits each on its ReLU of highest BaBSR intercept score, and bounds all the
children in one pass. A child whose bound is ``> 0`` is proved; each child's input
minimiser ``x*`` is run through the network and, when it violates the clause, confirmed by
``check`` (float64, onnxruntime) as a witness.

The two children of a sub-domain cover it (every input has ``h_j >= 0`` or ``h_j <= 0``), so
when every leaf is proved the clause holds on the box, with bound ``min over the leaves``.
A sub-domain whose unstable ReLUs are all split and whose bound is still ``<= 0`` (β is
found by gradient steps, not exactly) cannot be settled here: the search then reports
``budget`` and the MILP decides. Progress is the share of the box proved, a leaf of depth
``d`` counting ``2^-d`` (as for input splitting, a measure of work, not of volume).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

# Sub-domains split per round (each gives two children, bounded in one batch).
BATCH = 128
# Open sub-domains kept at most, and the memory they may take (their ``α, β`` are stored in
# float32 and the splits in int8: any ``α ∈ [0, 1]``, ``β >= 0`` gives a sound bound, so
# rounding them costs nothing in soundness); beyond either the MILP takes the clause over.
MAX_DOMAINS = 100_000
MEMORY_BUDGET = 512 * 2**20


@dataclass
class ReluSplitState:
    """The search of one clause so far, to resume it. Open sub-domains: splits ``S``, ``α``,
    ``β`` (lists over blocks, see :mod:`mipcert.bounds.beta`), bounds ``lb`` ``(N,)``, depths
    ``depth`` ``(N,)`` and the flat index of the ReLU each will be split on ``branch``
    ``(N,)`` (``-1``: none left)."""
    S: list
    alpha: list
    beta: list
    lb: object
    depth: object
    branch: object
    bound: float = np.inf
    domains: int = 0
    proved_fraction: float = 0.0
    seconds: float = 0.0
    stuck: int = 0
    root_bound: float = -np.inf
    history: list = field(default_factory=list)

    @property
    def open(self) -> int:
        return int(self.lb.shape[0])


@dataclass
class ReluSplitResult:
    status: str     # 'proved' | 'witness' | 'timeout' | 'budget'
    bound: float    # min lower bound over proved leaves (+inf if none)
    state: ReluSplitState


def _choose(problem, scores):
    """Flat index ``(D,)`` of the highest-scoring free ReLU of every sub-domain (-1: none)."""
    torch = problem.torch
    flat = torch.cat([scores[j] for j in problem.layers], dim=1)
    best = flat.argmax(dim=1)
    none = torch.isinf(flat.gather(1, best[:, None])[:, 0])
    return torch.where(none, torch.full_like(best, -1), best)


def _where(problem, flat_index):
    """``(block, local index)`` of a flat ReLU index."""
    for j in problem.layers:
        if flat_index < problem.sizes[j]:
            return j, flat_index
        flat_index -= problem.sizes[j]
    raise IndexError(flat_index)


def _take(lst, sel):
    return [None if t is None else t[sel] for t in lst]


def _cat(a, b):
    import torch

    return [None if x is None else torch.cat([x, y.to(x.dtype)]) for x, y in zip(a, b)]


def _wide(lst):
    """Stored (compact) sub-domain tensors as float64 for bounding."""
    import torch

    return [None if t is None else t.to(torch.float64) for t in lst]


def _compact(lst, dtype):
    return [None if t is None else t.to(dtype) for t in lst]


def domain_bytes(problem) -> int:
    """Bytes one stored sub-domain takes (``S`` int8, ``α, β`` float32)."""
    return problem.num_unstable * (1 + 8 * problem.R) + 32


def relu_split(problem, *, check, deadline=None, batch: int = BATCH,
               max_domains: int = MAX_DOMAINS, state: ReluSplitState | None = None,
               iters: int | None = None) -> ReluSplitResult:
    """Prove or falsify one clause by splitting ReLUs (see module doc).

    ``problem``: a :class:`mipcert.bounds.beta.SplitProblem` (network, root bounds, clause);
    ``check(x) -> bool`` confirms a witness ``x`` ``(n_0,)``; ``deadline``:
    ``time.perf_counter()`` limit, checked after each round (a call always does one);
    ``state``: the search returned by an earlier call, resumed where it stopped.
    """
    from ..bounds.beta import ITERATIONS

    iters = ITERATIONS if iters is None else iters
    t0 = time.perf_counter()
    torch = problem.torch
    try:
        if state is None:
            S, alpha, beta = problem.root()
            # the root's bound is optimised in full whatever the deadline: every sub-domain
            # inherits its α, and a call always makes this much progress
            lb, xstar, scores, alpha, beta = problem.bound(S, alpha, beta, iters=iters)
            m = lb.max(dim=1).values
            state = ReluSplitState(_compact(S, torch.int8), _compact(alpha, torch.float32),
                                   _compact(beta, torch.float32), m,
                                   torch.zeros(1, dtype=torch.int64),
                                   _choose(problem, scores), domains=1,
                                   root_bound=float(m[0]))
            if float(m[0]) > 0:
                state.bound, state.proved_fraction = float(m[0]), 1.0
                state.lb, state.depth, state.branch = m[:0], state.depth[:0], state.branch[:0]
                state.S, state.alpha, state.beta = (_take(x, slice(0, 0)) for x in
                                                    (state.S, state.alpha, state.beta))
                return ReluSplitResult("proved", state.bound, state)
            if _witness(problem, xstar, check):
                return ReluSplitResult("witness", np.inf, state)
        return _loop(problem, state, check, deadline, batch, max_domains, iters)
    finally:
        if state is not None:
            state.seconds += time.perf_counter() - t0


def _loop(problem, st, check, deadline, batch, max_domains, iters):
    torch = problem.torch
    max_domains = min(max_domains, MEMORY_BUDGET // domain_bytes(problem))

    def result(status):
        return ReluSplitResult(status, st.bound, st)

    while st.open:
        splittable = st.branch >= 0
        if not bool(splittable.any()):
            return result("budget")   # every open leaf is fully split: the MILP's turn
        if st.open > max_domains:
            return result("budget")
        prio = torch.where(splittable, st.lb, torch.full_like(st.lb, torch.inf))
        order = torch.argsort(prio, stable=True)
        n_take = min(batch, int(splittable.sum()))
        take, rest = order[:n_take], order[n_take:]
        S, alpha, beta = (_wide(_take(x, take)) for x in (st.S, st.alpha, st.beta))
        depth, branch = st.depth[take], st.branch[take]
        st.S, st.alpha, st.beta = _take(st.S, rest), _take(st.alpha, rest), _take(st.beta, rest)
        st.lb, st.depth, st.branch = st.lb[rest], st.depth[rest], st.branch[rest]
        # children: the chosen ReLU active (first half) or inactive (second half)
        S2 = [None if s is None else torch.cat([s, s]) for s in S]
        B = depth.shape[0]
        for d in range(B):
            j, i = _where(problem, int(branch[d]))
            S2[j][d, i] = 1.0
            S2[j][B + d, i] = -1.0
        alpha2 = [None if a is None else torch.cat([a, a]) for a in alpha]
        beta2 = [None if b is None else torch.cat([b, b]) for b in beta]
        lb, xstar, scores, alpha2, beta2 = problem.bound(S2, alpha2, beta2, iters=iters)
        m = lb.max(dim=1).values
        ch_depth = torch.cat([depth, depth]) + 1
        st.domains += 2 * B
        proved = m > 0
        if bool(proved.any()):
            st.bound = min(st.bound, float(m[proved].min()))
            st.proved_fraction += float(torch.exp2(-ch_depth[proved].to(torch.float64)).sum())
        keep = ~proved
        if bool(keep.any()) and _witness(problem, xstar[keep], check):
            return result("witness")
        ch_branch = _choose(problem, scores)
        st.S = _cat(st.S, _take(S2, keep))
        st.alpha = _cat(st.alpha, _take(alpha2, keep))
        st.beta = _cat(st.beta, _take(beta2, keep))
        st.lb = torch.cat([st.lb, m[keep]])
        st.depth = torch.cat([st.depth, ch_depth[keep]])
        st.branch = torch.cat([st.branch, ch_branch[keep]])
        st.stuck = int((st.branch < 0).sum())
        if st.open and deadline is not None and time.perf_counter() > deadline:
            return result("timeout")
    log.info("ReLU split proved the clause with %d sub-domains (bound %.3g)", st.domains,
             st.bound)
    st.proved_fraction = 1.0
    return result("proved")


def _witness(problem, xstar, check) -> bool:
    """Run the input minimisers ``(D, R, n_0)`` through the network; confirm the violating
    ones (lowest margin first, at most 8 per round) with ``check``."""
    x = xstar.reshape(-1, xstar.shape[-1])
    m = problem.margins(x)
    bad = np.flatnonzero(m.cpu().numpy() <= 0)
    if not bad.size:
        return False
    bad = bad[np.argsort(m.cpu().numpy()[bad])][:8]
    return any(check(x[i].cpu().numpy()) for i in bad)
