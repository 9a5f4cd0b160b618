"""Interval (IBP) and linear (CROWN / DeepPoly-style) bound propagation, batched.

All functions take the network as its ``affine_relu_stack()`` (blocks ``h_l = W_l a_{l-1} + b_l``,
``a_l = relu(h_l)`` when ``relu``) and a batch of input boxes ``lo, hi``: ``(B, n_0)`` float64
torch tensors (CPU or CUDA) or numpy arrays (CPU, no torch import; see :mod:`._array`); the
results are of the same kind. Pre-activation bounds come back as a list over blocks of ``(lo_l, hi_l)``, ``(B, n_l)``.

IBP (midpoint-radius): ``c_l = W_l c + b_l``, ``r_l = |W_l| r``.

CROWN: the bound of a linear function ``Λ h_k + c`` is pushed back layer by layer. Every ReLU
with ``l < 0 < u`` is enclosed by ``α h <= relu(h) <= s (h - l)``, ``s = u / (u - l)``,
``α = 1[u >= -l]``; for a lower bound positive coefficients take the lower line and negative
ones the upper line. At the input, ``min over the box of Λ x = Λ c - |Λ| r``. Each layer's
bounds are intersected with IBP's before they are used (both are sound).
"""
from __future__ import annotations

from ._array import device_of, ops
from ._torch import widen


def _tensors(stack, like):
    """The blocks' ``(W, b, relu)`` as arrays of the kind (and on the device) of ``like``."""
    xp, dev = ops(like), device_of(like)
    return [(xp.as_tensor(b.W, dtype=xp.float64, device=dev),
             xp.as_tensor(b.b, dtype=xp.float64, device=dev), b.relu) for b in stack]


def ibp_layer(W, b, lo, hi):
    """Interval image of ``W x + b`` for ``x in [lo, hi]``; ``lo, hi``: ``(B, n)``."""
    c, r = (lo + hi) / 2, (hi - lo) / 2
    mid = c @ W.T + b
    rad = r @ abs(W).T
    return widen(mid - rad, mid + rad)


def ibp(stack, lo, hi, device=None):
    """IBP pre-activation bounds of every block. ``lo, hi``: ``(B, n_0)`` tensors."""
    out = []
    for W, b, relu in _tensors(stack, lo):
        l, u = ibp_layer(W, b, lo, hi)
        out.append((l, u))
        lo, hi = (l.clip(min=0), u.clip(min=0)) if relu else (l, u)
    return out


def _relu_relaxation(l, u):
    """Slopes and intercept of the CROWN ReLU enclosure; each ``(B, n)``.

    Returns ``(lower_slope, upper_slope, upper_intercept)`` with
    ``lower_slope * h <= relu(h) <= upper_slope * h + upper_intercept`` on ``[l, u]``.
    """
    xp = ops(u)
    one, zero = xp.ones_like(u), xp.zeros_like(u)
    active = xp.where(l >= 0, one, zero)
    unstable = (l < 0) & (u > 0)
    denom = xp.where(unstable, u - l, one)
    s = xp.where(unstable, u / denom, active)
    t = xp.where(unstable, -s * l, zero)
    alpha = xp.where(unstable, xp.where(u >= -l, one, zero), active)
    return alpha, s, t


def backsub_lower(blocks, pre, k, Lam, const, lo, hi):
    """Lower bound of ``Λ h_k + const`` over the input box.

    ``blocks``: tensors from :func:`_tensors`; ``pre``: bounds of blocks ``0..k-1``;
    ``Λ``: ``(B, r, n_k)``, or ``(r, n_k)`` when it is the same for every box (kept
    unbatched until a ReLU relaxation makes it box-dependent); ``const``: ``(B, r)``.
    Returns ``(B, r)``.
    """
    for j in range(k, -1, -1):
        W, b, _ = blocks[j]
        const = const + Lam @ b
        Lam = Lam @ W  # coefficients on a_{j-1} (or on x when j == 0)
        if j == 0:
            break
        if blocks[j - 1][2]:  # a_{j-1} = relu(h_{j-1}): relax
            alpha, s, t = _relu_relaxation(*pre[j - 1])
            pos, neg = Lam.clip(min=0), Lam.clip(max=0)
            if Lam.ndim == 2:
                const = const + t @ neg.T
                Lam = pos[None] * alpha[:, None] + neg[None] * s[:, None]
            else:
                const = const + _bmv(neg, t)
                Lam = pos * alpha[:, None] + neg * s[:, None]
    c, r = (lo + hi) / 2, (hi - lo) / 2
    if Lam.ndim == 2:
        return const + c @ Lam.T - r @ abs(Lam).T
    return const + _bmv(Lam, c) - _bmv(abs(Lam), r)


def _bmv(M, v):
    """Batched matrix-vector product ``(B, r, n) x (B, n) -> (B, r)``."""
    return (M @ v[..., None])[..., 0]


def crown(stack, lo, hi, device=None, given=None, inherit=None):
    """CROWN pre-activation bounds of every block, intersected with IBP layer by layer.

    ``given``: optional sound bounds of the first blocks (e.g. from LP tightening), used as
    they are for those blocks. ``inherit``: optional sound bounds of every block, ``(B, n_l)``
    per box (``-inf / +inf`` where there are none; e.g. those of a larger box that holds
    it), intersected with each block's bounds before the next block uses them.
    """
    xp, dev = ops(lo), device_of(lo)
    blocks = _tensors(stack, lo)
    B = lo.shape[0]
    pre = []
    a_lo, a_hi = lo, hi
    for k, (W, b, relu) in enumerate(blocks):
        il, iu = ibp_layer(W, b, a_lo, a_hi)
        if given is not None and k < len(given):
            il, iu = xp.maximum(il, given[k][0]), xp.minimum(iu, given[k][1])
        elif k > 0:
            n = W.shape[0]
            eye = xp.eye(n, dtype=xp.float64, device=dev)
            lb = backsub_lower(blocks, pre, k, xp.cat([eye, -eye]),
                               xp.zeros(B, 2 * n, dtype=xp.float64, device=dev), lo, hi)
            cl, cu = widen(lb[:, :n], -lb[:, n:])
            il, iu = xp.maximum(il, cl), xp.minimum(iu, cu)
        if inherit is not None:
            il, iu = xp.maximum(il, inherit[k][0]), xp.minimum(iu, inherit[k][1])
        pre.append((il, iu))
        a_lo, a_hi = (il.clip(min=0), iu.clip(min=0)) if relu else (il, iu)
    return pre


def linear_lower_bound(stack, pre, lo, hi, C, d, method="crown"):
    """Lower bound of ``C y - d`` over the box, ``y`` the network output.

    ``C``: ``(B, r, m)`` or ``(r, m)``; ``d``: ``(B, r)`` or ``(r,)``. ``pre``: bounds of
    every block (from :func:`ibp` or :func:`crown`). With ``method='ibp'`` the output rows are
    folded into the last affine layer and bounded by intervals; with ``'crown'`` they are
    back-substituted to the input. Returns ``(B, r)``.
    """
    xp, dev = ops(lo), device_of(lo)
    B = lo.shape[0]
    C = xp.as_tensor(C, dtype=xp.float64, device=dev)
    d = xp.as_tensor(d, dtype=xp.float64, device=dev)
    if C.ndim == 2:
        C = xp.broadcast(C[None], (B, *C.shape))
    if d.ndim == 1:
        d = xp.broadcast(d[None], (B, d.shape[0]))
    blocks = _tensors(stack, lo)
    L = len(blocks) - 1
    if blocks[L][2]:  # the output itself passes a ReLU: bound through output intervals
        yl, yu = pre[L][0].clip(min=0), pre[L][1].clip(min=0)
        val = _bmv(C.clip(min=0), yl) + _bmv(C.clip(max=0), yu) - d
        return widen(val, val)[0]
    if method == "ibp":
        W, b, _ = blocks[L]
        if L == 0:
            a_lo, a_hi = lo, hi
        else:
            a_lo, a_hi = pre[L - 1]
            if blocks[L - 1][2]:
                a_lo, a_hi = a_lo.clip(min=0), a_hi.clip(min=0)
        CW = C @ W  # (B, r, n)
        c, r = (a_lo + a_hi) / 2, (a_hi - a_lo) / 2
        val = _bmv(CW, c) - _bmv(abs(CW), r) + C @ b - d
    else:
        val = backsub_lower(blocks, pre, L, C, -d, lo, hi)
    return widen(val, val)[0]


def clause_bounds(stack, pre, lo, hi, clauses, method="crown", upper=False):
    """Sound bounds of every clause margin ``max_r (C_r y - d_r)`` over every box.

    ``clauses``: objects with ``C`` ``(r, m)`` and ``d`` ``(r,)``. A lower bound of a max is
    the max of the rows' lower bounds; an upper bound the max of their upper bounds.
    Returns ``(B, n_clauses)``.
    """
    xp = ops(lo)
    out = []
    for clause in clauses:
        if upper:
            row = -linear_lower_bound(stack, pre, lo, hi, -clause.C, -clause.d, method)
        else:
            row = linear_lower_bound(stack, pre, lo, hi, clause.C, clause.d, method)
        out.append(xp.row_max(row))
    return xp.stack(out, 1)
