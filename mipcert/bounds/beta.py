"""beta-CROWN: bounds of a clause over sub-domains cut out by ReLU splits (torch, batched).

A *sub-domain* of an input box is the set of its inputs on which chosen ReLUs have a fixed
phase: ``S_j = +1`` means ``h_j >= 0`` (active), ``S_j = -1`` means ``h_j <= 0`` (inactive),
``S_j = 0`` free. Branch and bound over such splits (:mod:`mipcert.verify.relu_branch`) needs a
lower bound of every row of ``g(x) = C y(x) - d`` over many sub-domains at once. For each:

1. the pre-activation bounds are the root's (``pre``, e.g. alpha-CROWN's) clipped by the
   splits: active ``l_j <- max(l_j, 0)``, inactive ``u_j <- min(u_j, 0)``. A split ReLU is then
   linear on the sub-domain (identity or zero); a free unstable one is enclosed as in CROWN,
   ``α h <= relu(h) <= s (h - l)``, ``s = u / (u - l)``, with any lower slope ``α ∈ [0, 1]``;
2. every split constraint ``S_j h_j(x) >= 0`` enters through a Lagrange multiplier
   ``β_j >= 0`` (Wang et al. 2021, "Beta-CROWN"):

       min_{x in D} g(x)  >=  min_{x in box} [ g(x) - Σ_j β_j S_j h_j(x) ],

   which back-substitution handles by adding ``-β_j S_j`` to the coefficient of ``h_j``;
3. ``α`` and ``β`` are improved by projected Adam on the sum of the bounds, in float32 (twice
   as fast on the CPU). Only the values of ``α ∈ [0, 1]``, ``β >= 0`` are taken from it:
   any such values give a sound bound, which is then evaluated in float64. The better of
   the starting and the final values is kept for every row.

At the input, ``min over the box of Λ x = Λ c - |Λ| r``; its minimiser ``x* = c - sign(Λ) r``
is returned as a candidate counterexample. The *branching score* of a free unstable ReLU is
the slack its upper line adds to the bound, ``-min(Λ_j, 0) t_j`` summed over rows (BaBSR's
intercept score), ``Λ_j`` the coefficient of ``relu(h_j)`` met in back-substitution.

Only the ReLUs unstable at the root can be split, so sub-domain tensors hold just those:
``S``, ``α`` and ``β`` are lists over ReLU blocks of ``(D, k_j)`` / ``(D, R, k_j)`` tensors,
``k_j`` the root-unstable count of block ``j``, ``D`` sub-domains, ``R`` rows of ``C``.
Every bound is evaluated in float64 and widened outward by
:data:`~mipcert.bounds._torch.FP_SLACK`.
"""
from __future__ import annotations

import time

import numpy as np

from ._torch import widen

# Adam iterations per batch of sub-domains and step sizes on α and β (beta-CROWN's). Few
# iterations on large batches beat many on small ones, since children inherit their
# parent's α, β: on the hard mnist stand-in clauses, 5 iterations on batches of 1024 parents
# ended tightest after 15-30 s (256x2 eps 0.05: -0.14, against -0.20 for 10 x 512 and -0.39
# for 20 x 128, and proved that clause in 55 s).
ITERATIONS = 5
LR_ALPHA = 0.1
LR_BETA = 0.05


class SplitProblem:
    """The fixed part of a clause's branch and bound: the network's blocks, the root
    pre-activation bounds and the clause rows, as torch tensors on one device.

    ``stack``: ``network.affine_relu_stack()`` (an affine output block); ``lo, hi``: the input
    box ``(n_0,)``; ``pre``: sound root bounds of every block, numpy ``(l_k, u_k)``; ``C``
    ``(R, m)``, ``d`` ``(R,)``: the rows of the clause (its margin is ``max_r C_r y - d_r``).
    """

    def __init__(self, stack, lo, hi, pre, C, d, device=None):
        import torch

        if stack[-1].relu:
            raise ValueError("ReLU branch and bound needs an affine output block")
        self.torch = torch
        self.dev = torch.device("cpu") if device in (None, "numpy", "torch") \
            else torch.device(device)

        def T(a):
            return torch.as_tensor(np.asarray(a), dtype=torch.float64, device=self.dev)

        self.blocks = [(T(b.W), T(b.b)) for b in stack]
        self.relu = [b.relu for b in stack]
        lo, hi = T(lo), T(hi)
        self.c, self.r = (lo + hi) / 2, (hi - lo) / 2
        self.C, self.d = T(C), T(d)
        self.R = self.C.shape[0]
        # per ReLU block: the root-unstable indices, their bounds, the stable-active mask
        self.idx, self.l, self.u, self.active = [], [], [], []
        for (l, u), relu in zip(pre, self.relu):
            if not relu:
                self.idx.append(None)
                self.l.append(None)
                self.u.append(None)
                self.active.append(None)
                continue
            l, u = T(l), T(u)
            idx = torch.nonzero((l < 0) & (u > 0)).reshape(-1)
            act = (l >= 0).to(torch.float64)
            self.idx.append(idx)
            self.l.append(l[idx])
            self.u.append(u[idx])
            self.active.append(act)
        self.layers = [j for j, i in enumerate(self.idx) if i is not None]
        self.sizes = [0 if i is None else int(i.numel()) for i in self.idx]
        self.dtype = torch.float64
        self._single = None

    def single(self):
        """This problem in float32, for the optimiser's iterations only (about twice as fast
        on the CPU); every bound reported is evaluated again in float64."""
        if self._single is None:
            import copy

            f = self.torch.float32
            p = copy.copy(self)
            p.dtype = f
            p.blocks = [(W.to(f), b.to(f)) for W, b in self.blocks]
            p.c, p.r, p.C, p.d = (t.to(f) for t in (self.c, self.r, self.C, self.d))
            p.l = [None if t is None else t.to(f) for t in self.l]
            p.u = [None if t is None else t.to(f) for t in self.u]
            p.active = [None if t is None else t.to(f) for t in self.active]
            self._single = p
        return self._single

    @property
    def num_unstable(self) -> int:
        return sum(self.sizes)

    def root(self):
        """The root sub-domain: no splits, CROWN's ``α = 1[u >= -l]``, ``β = 0``."""
        torch = self.torch
        S, alpha, beta = [], [], []
        for j in range(len(self.blocks)):
            if self.idx[j] is None:
                S.append(None)
                alpha.append(None)
                beta.append(None)
                continue
            k = self.sizes[j]
            S.append(torch.zeros(1, k, dtype=torch.float64, device=self.dev))
            a0 = (self.u[j] >= -self.l[j]).to(torch.float64)
            alpha.append(a0.expand(1, self.R, k).clone())
            beta.append(torch.zeros(1, self.R, k, dtype=torch.float64, device=self.dev))
        return S, alpha, beta

    def root_bounds(self, D=1):
        """The root's bounds of the splittable ReLUs, per sub-domain: a list over blocks of
        ``(l, u)`` ``(D, k_j)`` (None for blocks without ReLU)."""
        return [None if i is None else (self.l[j].expand(D, -1).clone(),
                                        self.u[j].expand(D, -1).clone())
                for j, i in enumerate(self.idx)]

    def _relaxation(self, i, S, LU, alpha):
        """Lower slope, upper slope and intercept ``(D, 1 or R, k_i)`` of block ``i``'s
        splittable ReLUs in every sub-domain, and the mask of the free unstable ones. A ReLU
        is linear on a sub-domain where it is split or its bounds there do not straddle 0."""
        torch = self.torch
        s_i = S[i][:, None, :]
        l, u = (LU[i][0][:, None, :], LU[i][1][:, None, :]) if LU is not None \
            else (self.l[i], self.u[i])
        free = (s_i == 0) & (l < 0) & (u > 0)
        on = ((s_i > 0) | ((s_i == 0) & (l >= 0))).to(self.dtype)
        denom = torch.where(free, u - l, torch.ones_like(free, dtype=self.dtype))
        slope = torch.where(free, u / denom, on)
        t = torch.where(free, -slope * l, torch.zeros_like(slope))
        if alpha is None:   # CROWN's choice
            a = torch.where(free, (u >= -l).to(self.dtype), on)
        else:
            a = torch.where(free, alpha[i].clamp(0, 1), on)
        return a, slope, t, free

    def _relax_block(self, i, Lam, const, S, LU, alpha, beta, scores=None):
        """Back through block ``i``'s ReLUs: ``Λ`` ``(D, R, n_i)`` on ``relu(h_i)`` becomes
        the coefficients on ``h_i`` (lower line for positive, upper line for negative
        entries, ``-β S`` for split constraints when ``beta`` is given) and the upper lines'
        intercepts go into ``const``. With a list ``scores``, block ``i``'s branching scores
        are stored in it."""
        torch = self.torch
        idx = self.idx[i]
        a, slope, t, free = self._relaxation(i, S, LU, alpha)
        lam_u = Lam.index_select(-1, idx)
        pos, neg = lam_u.clamp(min=0), lam_u.clamp(max=0)
        const = const + (neg * t).sum(-1)
        if scores is not None:
            sc = (-(neg * t)).sum(1) + 1e-9 * lam_u.abs().sum(1)
            scores[i] = torch.where(free.any(1), sc, torch.full_like(sc, -torch.inf))
        new_u = pos * a + neg * slope
        if beta is not None:
            new_u = new_u - beta[i].clamp(min=0) * S[i][:, None, :]
        return (Lam * self.active[i]).index_add(-1, idx, new_u), const

    def _backsub(self, k, Lam, const, S, LU, alpha, beta, want_scores=False):
        """Lower bound of ``Λ h_k + const`` (``Λ`` ``(D, R, n_k)``) over each sub-domain's
        box, relaxing the ReLUs of blocks ``< k``; returns ``(lb (D, R), Λ_x, scores)``."""
        scores = [None] * len(self.blocks)
        for j in range(k, -1, -1):
            W, b = self.blocks[j]
            const = const + Lam @ b
            Lam = Lam @ W  # coefficients of a_{j-1} (of x when j == 0)
            if j == 0:
                break
            if self.idx[j - 1] is not None:
                Lam, const = self._relax_block(j - 1, Lam, const, S, LU, alpha, beta,
                                               scores if want_scores else None)
        lb = const + Lam @ self.c - Lam.abs() @ self.r
        return lb, Lam, scores

    def _lower(self, S, alpha, beta, want_scores=False, LU=None):
        """Lower bounds ``(D, R)`` of the rows and the input minimisers ``(D, R, n_0)``;
        with ``want_scores`` also the branching scores, a list over blocks of ``(D, k_j)``."""
        D = next(s for s in S if s is not None).shape[0]
        L = len(self.blocks) - 1
        lb, Lam, scores = self._backsub(L, self.C.expand(D, -1, -1), -self.d.expand(D, -1),
                                        S, LU, alpha, beta, want_scores)
        xstar = self.c - self.torch.sign(Lam) * self.r
        return lb, xstar, scores

    def refine(self, S, LU, chunk_bytes: int = 64 * 2**20):
        """Tighter bounds of the splittable ReLUs in every sub-domain: CROWN (CROWN's lower
        slopes, no ``β``) layer by layer with the sub-domain's own bounds of the layers
        below, where split ReLUs are linear; intersected with ``LU`` and clipped by the
        splits. Returns ``(LU, empty)``: ``empty`` ``(D,)`` marks sub-domains whose bounds
        cross (no input has those phases: the sub-domain is proved vacuously)."""
        torch = self.torch
        D = next(s for s in S if s is not None).shape[0]
        LU = [None if x is None else (x[0].clone(), x[1].clone()) for x in LU]
        first = self.layers[0]
        for i in self.layers:
            if i != first and self.sizes[i]:
                idx, k = self.idx[i], self.sizes[i]
                W, b = self.blocks[i]
                E = torch.cat([W[idx], -W[idx]])           # rows of ±h_i in terms of a_{i-1}
                e = torch.cat([b[idx], -b[idx]])
                width = max(w.shape[1] for w, _ in self.blocks[:i + 1])
                step = max(1, chunk_bytes // (8 * 2 * k * width))
                out = []
                for c0 in range(0, D, step):
                    sl = slice(c0, c0 + step)
                    Sc = [None if s is None else s[sl] for s in S]
                    LUc = [None if x is None else (x[0][sl], x[1][sl]) for x in LU]
                    n = Sc[first].shape[0]
                    lb, _, _ = self._backsub_from(i, E, e, n, Sc, LUc)
                    out.append(lb)
                lb = torch.cat(out)
                new_l, new_u = widen(lb[:, :k], -lb[:, k:])
                LU[i] = (torch.maximum(LU[i][0], new_l), torch.minimum(LU[i][1], new_u))
            l, u = LU[i]
            LU[i] = (torch.where(S[i] > 0, l.clamp(min=0), l),
                     torch.where(S[i] < 0, u.clamp(max=0), u))
        empty = torch.zeros(D, dtype=torch.bool, device=self.dev)
        for i in self.layers:
            empty |= (LU[i][0] > LU[i][1]).any(1)
        return LU, empty

    def _backsub_from(self, i, E, e, n, S, LU):
        """``_backsub`` of the rows ``E a_{i-1} + e`` (block ``i``'s affine map already
        applied), for ``n`` sub-domains."""
        Lam, const = E.expand(n, -1, -1), e.expand(n, -1)
        if self.idx[i - 1] is not None:
            Lam, const = self._relax_block(i - 1, Lam, const, S, LU, None, None)
        return self._backsub(i - 1, Lam, const, S, LU, None, None)

    def bound(self, S, alpha, beta, *, iters: int = ITERATIONS, deadline: float | None = None,
              LU=None):
        """Optimise ``α, β`` of the sub-domains ``S`` (starting from the given ones).

        Returns ``(lb, xstar, scores, alpha, beta)``: the best lower bound of every row
        ``(D, R)`` (widened, sound), the input minimisers ``(D, R, n_0)`` and branching
        scores (list over blocks of ``(D, k_j)``) of the final iterate, and that iterate's
        ``α, β`` (to be inherited by children). ``LU``: the sub-domains' own bounds of the
        splittable ReLUs (from :meth:`refine`), else the root's clipped by the splits.
        """
        torch = self.torch
        alpha = [None if a is None else a.detach() for a in alpha]
        beta = [None if b is None else b.detach() for b in beta]
        with torch.no_grad():
            best, _, _ = self._lower(S, alpha, beta, LU=LU)
        if iters > 0 and self.num_unstable:
            alpha, beta = self._optimise(S, alpha, beta, LU, iters, deadline)
        with torch.no_grad():
            lb, xstar, scores = self._lower(S, alpha, beta, want_scores=True, LU=LU)
            best = torch.maximum(best, lb)
        return widen(best, best)[0], xstar, scores, alpha, beta

    def _optimise(self, S, alpha, beta, LU, iters, deadline):
        """``iters`` projected Adam steps on ``α, β`` in float32 (:meth:`single`); returns
        them in float64. Only their values are used: the bound is evaluated in float64."""
        torch = self.torch
        p, f = self.single(), torch.float32

        def low(ts):
            return [None if t is None else t.to(f) for t in ts]

        S32 = low(S)
        LU32 = None if LU is None else [None if x is None else (x[0].to(f), x[1].to(f))
                                         for x in LU]
        a32 = [None if a is None else a.to(f).requires_grad_(True) for a in alpha]
        b32 = [None if b is None else b.to(f).requires_grad_(True) for b in beta]
        groups = [{"params": [a for a in a32 if a is not None], "lr": LR_ALPHA}]
        if any(s is not None and bool((s != 0).any()) for s in S):
            groups.append({"params": [b for b in b32 if b is not None], "lr": LR_BETA})
        opt = torch.optim.Adam(groups)
        for _ in range(iters):
            if deadline is not None and time.perf_counter() > deadline:
                break
            opt.zero_grad()
            lb, _, _ = p._lower(S32, a32, b32, LU=LU32)
            (-lb.sum()).backward()
            opt.step()
            with torch.no_grad():
                for a in a32:
                    if a is not None:
                        a.clamp_(0, 1)
                for b in b32:
                    if b is not None:
                        b.clamp_(min=0)
        d = torch.float64
        return ([None if a is None else a.detach().to(d) for a in a32],
                [None if b is None else b.detach().to(d) for b in b32])

    def margins(self, x):
        """The clause margin ``max_r C_r y(x) - d_r`` of inputs ``x`` ``(N, n_0)`` (float64)."""
        a = x
        for (W, b), relu in zip(self.blocks, self.relu):
            a = a @ W.T + b
            if relu:
                a = a.clamp(min=0)
        return (a @ self.C.T - self.d).max(-1).values
