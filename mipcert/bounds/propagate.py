"""Interval (IBP) and linear (CROWN / DeepPoly-style) bound propagation, batched in torch.

All functions take the network as its ``affine_relu_stack()`` (blocks ``h_l = W_l a_{l-1} + b_l``,
``a_l = relu(h_l)`` when ``relu``) and a batch of input boxes ``lo, hi``: ``(B, n_0)`` float64
tensors. Pre-activation bounds come back as a list over blocks of ``(lo_l, hi_l)``, ``(B, n_l)``.

IBP (midpoint-radius): ``c_l = W_l c + b_l``, ``r_l = |W_l| r``.

CROWN: the bound of a linear function ``Λ h_k + c`` is pushed back layer by layer. Every ReLU
with ``l < 0 < u`` is enclosed by ``α h <= relu(h) <= s (h - l)``, ``s = u / (u - l)``,
``α = 1[u >= -l]``; for a lower bound positive coefficients take the lower line and negative
ones the upper line. At the input, ``min over the box of Λ x = Λ c - |Λ| r``. Each layer's
bounds are intersected with IBP's before they are used (both are sound).
"""
from __future__ import annotations

from ._torch import widen


def _tensors(stack, device):
    import torch

    return [(torch.as_tensor(b.W, dtype=torch.float64, device=device),
             torch.as_tensor(b.b, dtype=torch.float64, device=device), b.relu) for b in stack]


def ibp_layer(W, b, lo, hi):
    """Interval image of ``W x + b`` for ``x in [lo, hi]``; ``lo, hi``: ``(B, n)``."""
    c, r = (lo + hi) / 2, (hi - lo) / 2
    mid = c @ W.T + b
    rad = r @ W.abs().T
    return widen(mid - rad, mid + rad)


def ibp(stack, lo, hi, device=None):
    """IBP pre-activation bounds of every block. ``lo, hi``: ``(B, n_0)`` tensors."""
    out = []
    for W, b, relu in _tensors(stack, device or lo.device):
        l, u = ibp_layer(W, b, lo, hi)
        out.append((l, u))
        lo, hi = (l.clamp(min=0), u.clamp(min=0)) if relu else (l, u)
    return out


def _relu_relaxation(l, u):
    """Slopes and intercept of the CROWN ReLU enclosure; each ``(B, n)``.

    Returns ``(lower_slope, upper_slope, upper_intercept)`` with
    ``lower_slope * h <= relu(h) <= upper_slope * h + upper_intercept`` on ``[l, u]``.
    """
    import torch

    active = l >= 0
    unstable = (l < 0) & (u > 0)
    denom = torch.where(unstable, u - l, torch.ones_like(u))
    s = torch.where(unstable, u / denom, active.to(u.dtype))
    t = torch.where(unstable, -s * l, torch.zeros_like(u))
    alpha = torch.where(unstable, (u >= -l).to(u.dtype), active.to(u.dtype))
    return alpha, s, t


def backsub_lower(blocks, pre, k, Lam, const, lo, hi):
    """Lower bound of ``Λ h_k + const`` over the input box.

    ``blocks``: tensors from :func:`_tensors`; ``pre``: bounds of blocks ``0..k-1``;
    ``Λ``: ``(B, r, n_k)``, or ``(r, n_k)`` when it is the same for every box (kept
    unbatched until a ReLU relaxation makes it box-dependent); ``const``: ``(B, r)``.
    Returns ``(B, r)``.
    """
    import torch

    for j in range(k, -1, -1):
        W, b, _ = blocks[j]
        const = const + Lam @ b
        Lam = Lam @ W  # coefficients on a_{j-1} (or on x when j == 0)
        if j == 0:
            break
        if blocks[j - 1][2]:  # a_{j-1} = relu(h_{j-1}): relax
            alpha, s, t = _relu_relaxation(*pre[j - 1])
            pos, neg = Lam.clamp(min=0), Lam.clamp(max=0)
            if Lam.dim() == 2:
                const = const + t @ neg.T
                Lam = pos.unsqueeze(0) * alpha.unsqueeze(1) + neg.unsqueeze(0) * s.unsqueeze(1)
            else:
                const = const + torch.einsum("brn,bn->br", neg, t)
                Lam = pos * alpha.unsqueeze(1) + neg * s.unsqueeze(1)
    c, r = (lo + hi) / 2, (hi - lo) / 2
    if Lam.dim() == 2:
        return const + c @ Lam.T - r @ Lam.abs().T
    return const + torch.einsum("brn,bn->br", Lam, c) - torch.einsum("brn,bn->br", Lam.abs(), r)


def crown(stack, lo, hi, device=None, given=None):
    """CROWN pre-activation bounds of every block, intersected with IBP layer by layer.

    ``given``: optional sound bounds of the first blocks (e.g. from LP tightening), used as
    they are for those blocks.
    """
    import torch

    blocks = _tensors(stack, device or lo.device)
    B = lo.shape[0]
    pre = []
    a_lo, a_hi = lo, hi
    for k, (W, b, relu) in enumerate(blocks):
        il, iu = ibp_layer(W, b, a_lo, a_hi)
        if given is not None and k < len(given):
            il, iu = torch.maximum(il, given[k][0]), torch.minimum(iu, given[k][1])
        elif k > 0:
            n = W.shape[0]
            eye = torch.eye(n, dtype=torch.float64, device=lo.device)
            lb = backsub_lower(blocks, pre, k, torch.cat([eye, -eye]),
                               torch.zeros(B, 2 * n, dtype=torch.float64, device=lo.device),
                               lo, hi)
            cl, cu = widen(lb[:, :n], -lb[:, n:])
            il, iu = torch.maximum(il, cl), torch.minimum(iu, cu)
        pre.append((il, iu))
        a_lo, a_hi = (il.clamp(min=0), iu.clamp(min=0)) if relu else (il, iu)
    return pre


def linear_lower_bound(stack, pre, lo, hi, C, d, method="crown"):
    """Lower bound of ``C y - d`` over the box, ``y`` the network output.

    ``C``: ``(B, r, m)`` or ``(r, m)``; ``d``: ``(B, r)`` or ``(r,)``. ``pre``: bounds of
    every block (from :func:`ibp` or :func:`crown`). With ``method='ibp'`` the output rows are
    folded into the last affine layer and bounded by intervals; with ``'crown'`` they are
    back-substituted to the input. Returns ``(B, r)``.
    """
    import torch

    dev = lo.device
    B = lo.shape[0]
    C = torch.as_tensor(C, dtype=torch.float64, device=dev)
    d = torch.as_tensor(d, dtype=torch.float64, device=dev)
    if C.dim() == 2:
        C = C.unsqueeze(0).expand(B, *C.shape)
    if d.dim() == 1:
        d = d.unsqueeze(0).expand(B, d.shape[0])
    blocks = _tensors(stack, dev)
    L = len(blocks) - 1
    if blocks[L][2]:  # the output itself passes a ReLU: bound through output intervals
        yl, yu = pre[L][0].clamp(min=0), pre[L][1].clamp(min=0)
        val = torch.einsum("brm,bm->br", C.clamp(min=0), yl) + \
            torch.einsum("brm,bm->br", C.clamp(max=0), yu) - d
        return widen(val, val)[0]
    if method == "ibp":
        W, b, _ = blocks[L]
        if L == 0:
            a_lo, a_hi = lo, hi
        else:
            a_lo, a_hi = pre[L - 1]
            if blocks[L - 1][2]:
                a_lo, a_hi = a_lo.clamp(min=0), a_hi.clamp(min=0)
        CW = C @ W  # (B, r, n)
        c, r = (a_lo + a_hi) / 2, (a_hi - a_lo) / 2
        val = torch.einsum("brn,bn->br", CW, c) - torch.einsum("brn,bn->br", CW.abs(), r) \
            + torch.einsum("brm,m->br", C, b) - d
    else:
        val = backsub_lower(blocks, pre, L, C, -d, lo, hi)
    return widen(val, val)[0]


def clause_bounds(stack, pre, lo, hi, clauses, method="crown", upper=False):
    """Sound bounds of every clause margin ``max_r (C_r y - d_r)`` over every box.

    ``clauses``: objects with ``C`` ``(r, m)`` and ``d`` ``(r,)``. A lower bound of a max is
    the max of the rows' lower bounds; an upper bound the max of their upper bounds.
    Returns ``(B, n_clauses)``.
    """
    import torch

    out = []
    for clause in clauses:
        if upper:
            row = -linear_lower_bound(stack, pre, lo, hi, -clause.C, -clause.d, method)
        else:
            row = linear_lower_bound(stack, pre, lo, hi, clause.C, clause.d, method)
        out.append(row.max(dim=1).values)
    return torch.stack(out, dim=1)
