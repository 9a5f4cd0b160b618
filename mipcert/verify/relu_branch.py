"""Branch and bound on ReLU phases with beta-CROWN bounds (for inputs of many dimensions).

Input splitting (:mod:`.branch`) is useless on 784 inputs; the unstable ReLUs are what make a
clause hard there. This search splits them instead: a sub-domain fixes the phase of some
ReLUs (``h_j >= 0`` or ``h_j <= 0``) and is bounded by :mod:`mipcert.bounds.beta` (CROWN with
the split constraints dualised by ``β`` and the lower slopes ``α`` optimised; children
inherit their parent's ``α, β``). Every round takes the ``batch`` open sub-domains with the
lowest bounds and splits each on one of its ReLUs: of the :data:`CANDIDATES` of highest BaBSR
intercept score, the one whose worse child has the best bound when both are bounded once
with the parent's ``α, β`` (filtered smart branching, as in De Palma et al. 2021); then all
the children are bounded, with ``α, β`` optimised, in one pass. A child whose bound is
``> 0`` is proved; each child's input minimiser ``x*`` is run through the network and, when
it violates the clause, confirmed by ``check`` (float64, onnxruntime) as a witness.

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
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

# Sub-domains split per round (each gives two children, bounded in one batch; see
# :data:`mipcert.bounds.beta.ITERATIONS` for the measurements behind it).
BATCH = 1024
# Adam iterations for the root sub-domain (every sub-domain inherits its α).
ROOT_ITERATIONS = 20
# Candidate ReLUs per sub-domain tried by filtered smart branching (1: BaBSR's choice).
CANDIDATES = 1
# Re-bound the splittable ReLUs of every child (CROWN with the child's splits) before its
# clause bound; else the root's bounds clipped by the splits are used. Off: on the hard
# clauses of the mnist stand-ins it bounds 5-25x fewer sub-domains per second and ended
# with looser bounds at equal time (256x2 eps 0.05: -0.63 against -0.39 after 30 s; 256x4:
# -6.7 against -2.9 after 15 s).
REFINE = False
# Open sub-domains kept at most, and the memory they may take (their ``α, β`` are stored in
# float32 and the splits in int8: any ``α ∈ [0, 1]``, ``β >= 0`` gives a sound bound, so
# rounding them costs nothing in soundness); beyond either the MILP takes the clause over.
MAX_DOMAINS = 100_000
MEMORY_BUDGET = 512 * 2**20


@dataclass
class ReluSplitState:
    """The search of one clause so far, to resume it. Open sub-domains: splits ``S``, ``α``,
    ``β`` (lists over blocks, see :mod:`mipcert.bounds.beta`), bounds ``lb`` ``(N,)``, depths
    ``depth`` ``(N,)`` and the flat indices of the candidate ReLUs to split each on, best
    score first, ``branch`` ``(N, k)`` (``-1``: none left); with ``refine`` also each one's
    own bounds of the splittable ReLUs ``LU`` (list over blocks of ``(l, u)`` ``(N, k_j)``),
    else None."""
    S: list
    alpha: list
    beta: list
    LU: list
    lb: object
    depth: object
    branch: object
    bound: float = np.inf
    domains: int = 0
    proved_fraction: float = 0.0
    seconds: float = 0.0
    root_bound: float = -np.inf

    @property
    def open(self) -> int:
        return int(self.lb.shape[0])

    @property
    def stuck(self) -> int:
        """Open sub-domains with every ReLU split (left to the MILP)."""
        return int((self.branch[:, 0] < 0).sum())


@dataclass
class ReluSplitResult:
    status: str     # 'proved' | 'witness' | 'timeout' | 'budget'
    bound: float    # min lower bound over proved leaves (+inf if none)
    state: ReluSplitState


def _choose(problem, scores, k):
    """Flat indices ``(D, k)`` of the ``k`` highest-scoring free ReLUs of every sub-domain,
    best first (-1 where there are fewer)."""
    torch = problem.torch
    flat = torch.cat([scores[j] for j in problem.layers], dim=1)
    if flat.shape[1] == 0:   # no ReLU unstable at the root: nothing to split, the MILP (an LP) decides
        return torch.full((flat.shape[0], 1), -1, dtype=torch.int64, device=flat.device)
    k = max(1, min(k, flat.shape[1]))
    val, idx = flat.topk(k, dim=1)
    return torch.where(torch.isinf(val), torch.full_like(idx, -1), idx)


def _set(problem, S, rows, flat, value):
    """``S[block][rows, local] = value`` for flat ReLU indices ``flat`` (``rows``, ``flat``
    of one length; ``flat >= 0``)."""
    start = 0
    for j in problem.layers:
        sel = (flat >= start) & (flat < start + problem.sizes[j])
        if bool(sel.any()):
            S[j][rows[sel], flat[sel] - start] = value
        start += problem.sizes[j]


def _children(problem, S, flat):
    """The two children of every sub-domain for ReLUs ``flat`` ``(B,)``: ``S`` repeated,
    the first half with the ReLU active, the second inactive."""
    torch = problem.torch
    B = flat.shape[0]
    S2 = [None if s is None else torch.cat([s, s]) for s in S]
    rows = torch.arange(B, device=flat.device)
    _set(problem, S2, rows, flat, 1.0)
    _set(problem, S2, rows + B, flat, -1.0)
    return S2


def _filtered(problem, S, alpha, beta, cand):
    """Filtered smart branching: of the candidates ``cand`` ``(B, k)`` of every sub-domain,
    the one whose worse child has the best bound, each child bounded once without
    optimisation (with the parent's ``α, β``). Returns flat indices ``(B,)``."""
    torch = problem.torch
    B, k = cand.shape
    if k == 1:
        return cand[:, 0]
    valid = cand >= 0
    flat = torch.where(valid, cand, cand[:, :1]).T.reshape(-1)          # (k B,)
    rep = [None if s is None else s.repeat(k, 1) for s in S]
    S2 = _children(problem, rep, flat)                                   # (2 k B, ...)
    a2 = [None if a is None else a.repeat(2 * k, 1, 1) for a in alpha]
    b2 = [None if b is None else b.repeat(2 * k, 1, 1) for b in beta]
    with torch.no_grad():
        lb, _, _ = problem._lower(S2, a2, b2)
    worse = lb.max(dim=1).values.reshape(2, k, B).min(dim=0).values.T   # (B, k)
    worse = torch.where(valid, worse, torch.full_like(worse, -torch.inf))
    return cand.gather(1, worse.argmax(dim=1)[:, None])[:, 0]


def _take(lst, sel):
    return [None if t is None else t[sel] for t in lst]


def _take_lu(lu, sel):
    return [None if x is None else (x[0][sel], x[1][sel]) for x in lu]


def _cat(a, b):
    import torch

    return [None if x is None else torch.cat([x, y.to(x.dtype)]) for x, y in zip(a, b)]


def _wide(lst):
    """Stored (compact) sub-domain tensors as float64 for bounding."""
    import torch

    return [None if t is None else t.to(torch.float64) for t in lst]


def _compact(lst, dtype):
    return [None if t is None else t.to(dtype) for t in lst]


def domain_bytes(problem, refine=False) -> int:
    """Bytes one stored sub-domain takes (``S`` int8, ``α, β`` float32, with ``refine`` its
    own bounds in float64)."""
    return problem.num_unstable * (1 + 8 * problem.R + 16 * refine) + 32


def relu_split(problem, *, check, deadline=None, batch: int = BATCH,
               max_domains: int = MAX_DOMAINS, state: ReluSplitState | None = None,
               iters: int | None = None, candidates: int = CANDIDATES,
               refine: bool = REFINE) -> ReluSplitResult:
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
            lb, xstar, scores, alpha, beta = problem.bound(S, alpha, beta,
                                                           iters=max(iters, ROOT_ITERATIONS))
            m = lb.max(dim=1).values
            state = ReluSplitState(_compact(S, torch.int8), _compact(alpha, torch.float32),
                                   _compact(beta, torch.float32),
                                   problem.root_bounds(1) if refine else None, m,
                                   torch.zeros(1, dtype=torch.int64),
                                   _choose(problem, scores, candidates), domains=1,
                                   root_bound=float(m[0]))
            if float(m[0]) > 0:
                state.bound, state.proved_fraction = float(m[0]), 1.0
                state.lb, state.depth, state.branch = m[:0], state.depth[:0], state.branch[:0]
                state.S, state.alpha, state.beta = (_take(x, slice(0, 0)) for x in
                                                    (state.S, state.alpha, state.beta))
                state.LU = _take_lu(state.LU, slice(0, 0)) if refine else None
                return ReluSplitResult("proved", state.bound, state)
            if _witness(problem, xstar, check):
                return ReluSplitResult("witness", np.inf, state)
        return _loop(problem, state, check, deadline, batch, max_domains, iters, candidates,
                     refine)
    finally:
        if state is not None:
            state.seconds += time.perf_counter() - t0


def _loop(problem, st, check, deadline, batch, max_domains, iters, candidates, refine):
    torch = problem.torch
    max_domains = min(max_domains, MEMORY_BUDGET // domain_bytes(problem, refine))

    def result(status):
        return ReluSplitResult(status, st.bound, st)

    while st.open:
        splittable = st.branch[:, 0] >= 0
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
        if st.LU is not None:
            LU, st.LU = _take_lu(st.LU, take), _take_lu(st.LU, rest)
        st.lb, st.depth, st.branch = st.lb[rest], st.depth[rest], st.branch[rest]
        # children: the chosen ReLU active (first half) or inactive (second half)
        B = depth.shape[0]
        S2 = _children(problem, S, _filtered(problem, S, alpha, beta, branch))
        alpha2 = [None if a is None else torch.cat([a, a]) for a in alpha]
        beta2 = [None if b is None else torch.cat([b, b]) for b in beta]
        if st.LU is not None:
            LU2 = [None if x is None else (torch.cat([x[0], x[0]]), torch.cat([x[1], x[1]]))
                   for x in LU]
            LU2, empty = problem.refine(S2, LU2)
        else:   # the root's bounds clipped by the splits (in the bound itself)
            LU2, empty = None, torch.zeros(2 * B, dtype=torch.bool, device=depth.device)
        lb, xstar, scores, alpha2, beta2 = problem.bound(S2, alpha2, beta2, iters=iters, LU=LU2)
        m = lb.max(dim=1).values
        m = torch.where(empty, torch.full_like(m, torch.inf), m)
        ch_depth = torch.cat([depth, depth]) + 1
        st.domains += 2 * B
        proved = m > 0
        if bool(proved.any()):
            st.bound = min(st.bound, float(m[proved].min()))
            st.proved_fraction += float(torch.exp2(-ch_depth[proved].to(torch.float64)).sum())
        keep = ~proved
        if bool(keep.any()) and _witness(problem, xstar[keep], check):
            return result("witness")
        ch_branch = _choose(problem, scores, candidates)
        st.S = _cat(st.S, _take(S2, keep))
        st.alpha = _cat(st.alpha, _take(alpha2, keep))
        st.beta = _cat(st.beta, _take(beta2, keep))
        if st.LU is not None:
            st.LU = [None if x is None else (torch.cat([x[0], y[0][keep]]),
                                             torch.cat([x[1], y[1][keep]]))
                     for x, y in zip(st.LU, LU2)]
        st.lb = torch.cat([st.lb, m[keep]])
        st.depth = torch.cat([st.depth, ch_depth[keep]])
        st.branch = torch.cat([st.branch, ch_branch[keep]])
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
    m = problem.margins(x).cpu().numpy()
    bad = np.flatnonzero(m <= 0)
    if not bad.size:
        return False
    bad = bad[np.argsort(m[bad])][:8]
    return any(check(x[i].cpu().numpy()) for i in bad)
