"""alpha-CROWN: CROWN with the lower-bound slopes of unstable ReLUs optimised (torch).

CROWN encloses an unstable ReLU (``l < 0 < u``) by ``α h <= relu(h) <= s (h - l)`` with
``s = u / (u - l)`` and picks ``α = 1[u >= -l]``. Any ``α`` in ``[0, 1]`` gives a valid lower
line, hence a sound bound (Xu et al. 2021, "Fast and complete": the bound is a concave-ish
function of ``α`` that gradient ascent improves a lot on trained networks). Here every row
of the bounded linear function (one per neuron bound, one per output row of a clause) gets
its own ``α`` per unstable ReLU of every earlier layer, and ``α`` is improved by projected
Adam on the sum of the rows' lower bounds. The first iterate is CROWN's choice, and the
best value each row reached over the iterations is kept (every iterate is a sound bound), so
the result is never looser than CROWN.

Layers are tightened one after another: the bounds of block ``k`` are optimised with the
(already tightened) bounds of the blocks before it, then fixed; then the clause margins.
Everything is in float64 and widened outward by :data:`~mipcert.bounds._torch.FP_SLACK`.

Shapes: one input box ``lo, hi`` ``(n_0,)`` (numpy) and ``pre`` a list over blocks of numpy
``(l_k, u_k)`` ``(n_k,)``; or a batch of boxes, ``(B, n_0)`` and ``(B, n_k)``, optimised
together in one pass per step (input splitting bounds dozens of small boxes at a time:
one box per call spent most of its 0.03 s in per-call overhead).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ._torch import widen

log = logging.getLogger(__name__)

# Adam iterations per bounded layer / for the clause margins, and the step size on α.
ITERATIONS = 20
LEARNING_RATE = 0.25


class _Relaxed:
    """One ReLU block's relaxation over a batch of boxes: masks, upper line ``s, t`` and
    CROWN's ``α``; each ``(B, n)``."""

    def __init__(self, torch, l, u):
        self.unstable = (l < 0) & (u > 0)
        active = (l >= 0).to(l.dtype)
        denom = torch.where(self.unstable, u - l, torch.ones_like(u))
        self.s = torch.where(self.unstable, u / denom, active)
        self.t = torch.where(self.unstable, -self.s * l, torch.zeros_like(u))
        self.fixed = active  # the lower slope of stable neurons
        self.alpha0 = (u >= -l).to(l.dtype)


def _bmv(M, v):
    """``(B, R, n) x (B, n) -> (B, R)``."""
    return (M @ v[..., None])[..., 0]


def _lower(blocks, relax, k, Lam, const, c, r, alphas):
    """Lower bounds ``(B, R)`` of ``Λ h_k + const`` (``Λ`` ``(B, R, n_k)``, ``const``
    ``(B, R)``) over the boxes with centres ``c`` and radii ``r`` ``(B, n_0)``;
    ``alphas[j]`` ``(B, R, n_j)`` the lower slopes of block ``j``."""
    for j in range(k, -1, -1):
        W, b = blocks[j]
        const = const + Lam @ b
        Lam = Lam @ W
        if j == 0:
            break
        rel = relax[j - 1]
        if rel is None:
            continue
        pos, neg = Lam.clamp(min=0), Lam.clamp(max=0)
        # stable neurons: slope 0 or 1; unstable: the optimised α
        a = alphas[j - 1].clamp(0, 1) * rel.unstable[:, None] + rel.fixed[:, None]
        const = const + _bmv(neg, rel.t)
        Lam = pos * a + neg * rel.s[:, None]
    return const + _bmv(Lam, c) - _bmv(Lam.abs(), r)


def _optimise(torch, blocks, relax, k, Lam, const, c, r, iters, deadline):
    """Best lower bounds ``(B, R)`` of the rows of ``Λ h_k + const`` over ``iters`` Adam
    steps. The objective is the sum over boxes and rows, and every (box, row) has its own
    ``α``, so Adam (elementwise) moves each box exactly as it would alone."""
    B, R = Lam.shape[:2]
    alphas, params = [], []
    for rel in relax[:k]:
        if rel is None:
            alphas.append(None)
            continue
        a = rel.alpha0[:, None].expand(B, R, -1).clone().requires_grad_(True)
        alphas.append(a)
        params.append(a)
    with torch.no_grad():
        best = _lower(blocks, relax, k, Lam, const, c, r, alphas)
    if not params:
        return best
    opt = torch.optim.Adam(params, lr=LEARNING_RATE)
    for _ in range(iters):
        if deadline is not None and time.perf_counter() > deadline:
            break
        opt.zero_grad()
        lb = _lower(blocks, relax, k, Lam, const, c, r, alphas)
        best = torch.maximum(best, lb.detach())
        (-lb.sum()).backward()
        opt.step()
        with torch.no_grad():
            for a in params:
                a.clamp_(0, 1)
    with torch.no_grad():
        best = torch.maximum(best, _lower(blocks, relax, k, Lam, const, c, r, alphas))
    return best


def alpha_crown(stack, lo, hi, pre, clauses=(), *, iters: int = ITERATIONS, layers: bool = True,
                deadline: float | None = None, device=None):
    """Tighten ``pre`` (CROWN bounds of every block) and bound the clause margins, for one
    box (``lo, hi`` ``(n_0,)``, ``pre`` ``(n_k,)`` pairs) or a batch (``lo, hi`` ``(B, n_0)``,
    ``pre`` ``(B, n_k)`` pairs; every box is optimised as it would be alone).

    ``stack``: ``network.affine_relu_stack()``; ``clauses``: objects with ``C (r, m)`` and
    ``d (r,)`` (margin ``max_r (C_r y - d_r)``); ``layers``: also optimise the intermediate
    bounds (else only the clause margins). ``deadline``: ``time.perf_counter()`` after which
    the remaining iterations are skipped (the bounds stay sound, only looser).

    Returns ``(pre, margin_lo)``: the tightened bounds (numpy, intersected with ``pre``) and
    a lower bound of every clause margin, ``(n_clauses,)`` or ``(B, n_clauses)`` (``-inf``
    for none given).
    """
    import torch

    single = np.ndim(lo) == 1
    lo, hi = np.atleast_2d(lo), np.atleast_2d(hi)
    if single:
        pre = [(np.asarray(l)[None], np.asarray(u)[None]) for l, u in pre]
    dev = torch.device("cpu") if device in (None, "numpy", "torch") else torch.device(device)

    def T(a):
        return torch.as_tensor(np.asarray(a), dtype=torch.float64, device=dev)

    blocks = [(T(b.W), T(b.b)) for b in stack]
    x_lo, x_hi = T(lo), T(hi)
    B = x_lo.shape[0]
    c, r = (x_lo + x_hi) / 2, (x_hi - x_lo) / 2
    pre_t = [(T(l), T(u)) for l, u in pre]
    relax = [None] * len(stack)

    def relax_block(j):
        relax[j] = _Relaxed(torch, *pre_t[j]) if stack[j].relu else None

    relax_block(0)
    for k in range(1, len(stack) - 1):
        if layers and stack[k].relu:
            l_k, u_k = pre_t[k]
            # the neurons unstable in any box of the batch (in a box where one is stable
            # its optimised bound is as sound, and intersected all the same)
            idx = torch.nonzero(((l_k < 0) & (u_k > 0)).any(dim=0)).reshape(-1)
            if idx.numel():
                n = idx.numel()
                E = torch.zeros(2 * n, l_k.shape[1], dtype=torch.float64, device=dev)
                E[torch.arange(n), idx] = 1.0        # rows 0..n-1: h_i (lower bounds)
                E[n + torch.arange(n), idx] = -1.0   # rows n..2n-1: -h_i (upper bounds)
                zero = torch.zeros(B, 2 * n, dtype=torch.float64, device=dev)
                lb = _optimise(torch, blocks, relax, k, E.expand(B, -1, -1), zero, c, r,
                               iters, deadline)
                new_l, new_u = widen(lb[:, :n], -lb[:, n:])
                l_k, u_k = l_k.clone(), u_k.clone()
                l_k[:, idx] = torch.maximum(l_k[:, idx], new_l)
                u_k[:, idx] = torch.minimum(u_k[:, idx], new_u)
                pre_t[k] = (l_k, u_k)
        relax_block(k)
    margins = np.full((B, len(clauses)), -np.inf)
    if clauses:
        L = len(stack) - 1
        if stack[L].relu:
            raise ValueError("alpha-CROWN clause bounds need an affine output block")
        rows = [(i, T(cl.C), T(cl.d)) for i, cl in enumerate(clauses)]
        C = torch.cat([Ci for _, Ci, _ in rows])
        d = torch.cat([di for _, _, di in rows])
        lb = _optimise(torch, blocks, relax, L, C.expand(B, -1, -1), -d.expand(B, -1), c, r,
                       iters, deadline)
        lb = widen(lb, lb)[0].cpu().numpy()
        start = 0
        for i, Ci, _ in rows:
            margins[:, i] = lb[:, start:start + Ci.shape[0]].max(axis=1)
            start += Ci.shape[0]
    out = [(l.detach().cpu().numpy(), u.detach().cpu().numpy()) for l, u in pre_t]
    out = [(np.maximum(l, l0), np.minimum(u, u0)) for (l, u), (l0, u0) in zip(out, pre)]
    if single:
        return [(l[0], u[0]) for l, u in out], margins[0]
    return out, margins
