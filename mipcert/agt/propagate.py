"""Per-sample gradient bounds over a parameter box (FORMULATIONS 3.5; paper section 6.3).

For a batch of ``n`` samples and parameters in ``[theta_l, theta_u]`` (flat ``(P,)``) this
computes ``[G_l, G_u]`` (each ``(n, P)``, flattened like :mod:`mipcert.network.training`)
enclosing ``clip(g_i(theta))`` for every ``theta`` in the box, and optionally every
admissible change of sample ``i`` (features within ``eps``, labels within ``nu`` or
flipped). Three stages, all interval arithmetic in torch float64:

1. forward: ``h_l = W_l a_{l-1} + b_l`` by midpoint-radius matmul, ``a_l = relu(h_l)``;
2. loss gradient ``delta_L`` from the logit and label intervals (:func:`delta_bounds`);
3. backward: ``delta_{l-1} = (W_l^T delta_l) * [H(hl), H(hu)]``, ``dW_l = delta_l a_{l-1}^T``
   (exact elementwise products), ``db_l = delta_l``; then clipping at ``gamma``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..bounds import interval as iv
from ..errors import InputError
from ..network.training import LayerShape

Tensor = torch.Tensor
Pair = tuple[Tensor, Optional[Tensor]]  # (lo, hi); hi None marks a point


@dataclass
class LabelChange:
    """What may happen to a label: flipped (classification) and/or moved by up to ``nu``."""

    flip: bool = False
    nu: float = 0.0


def split_params(lo: Tensor, hi: Tensor, layers: Sequence[LayerShape]):
    """``[(Wl, Wu, bl, bu)]`` views of flat ``(P,)`` bounds; ``Wu``/``bu`` are None (points)
    when the layer's box has zero width, and ``bl``/``bu`` are None without a bias."""
    out, pos = [], 0
    for s in layers:
        nW = s.out * s.inp
        Wl, Wu = lo[pos:pos + nW].view(s.out, s.inp), hi[pos:pos + nW].view(s.out, s.inp)
        pos += nW
        bl = bu = None
        if s.bias:
            bl, bu = lo[pos:pos + s.out], hi[pos:pos + s.out]
            pos += s.out
        point = torch.equal(Wl, Wu) and (bl is None or torch.equal(bl, bu))
        out.append((Wl, None if point else Wu, bl, None if (point or bl is None) else bu))
    return out


def forward_bounds(params, xl: Tensor, xu: Optional[Tensor]):
    """Interval forward pass. Returns ``hs`` (pre-activation pairs, ``(n, out_l)``) and
    ``inputs`` (layer-input pairs ``a_{l-1}``, ``inputs[0]`` = the data)."""
    hs, inputs = [], []
    a: Pair = (xl, xu)
    for l, (Wl, Wu, bl, bu) in enumerate(params):
        inputs.append(a)
        hl, hu = iv.matmul(a[0], a[1], Wl.T, None if Wu is None else Wu.T, nonneg=l > 0)
        if bl is not None:
            if hl is hu and bu is None:
                hl = hu = hl + bl
            else:
                hl, hu = hl + bl, hu + (bl if bu is None else bu)
        hs.append((hl, hu))
        if l < len(params) - 1:
            a = (hl.clamp_min(0.0), None) if hl is hu else iv.relu(hl, hu)
    return hs, inputs


def delta_bounds(zl: Tensor, zu: Tensor, y: Tensor, loss: str, change: LabelChange,
                 n_classes: int | None = None):
    """Bounds of ``d loss / d z`` over ``z in [zl, zu]`` (``(n, m)``) and the labels ``y``
    (``(n,)``) changed as ``change`` allows (paper appendix A; FORMULATIONS 3.3)."""
    return delta_bounds_many(zl, zu, y, loss, [change], n_classes)[0]


def delta_bounds_many(zl: Tensor, zu: Tensor, y: Tensor, loss: str,
                      changes: Sequence[LabelChange], n_classes: int | None = None):
    """:func:`delta_bounds` for several label changes over the same logit bounds, sharing
    the softmax / sigmoid bounds; a list of ``(lo, hi)`` pairs, one per change."""
    if loss == "squared":
        out = []
        for change in changes:
            yl, yu = (y - change.nu)[:, None], (y + change.nu)[:, None]
            if change.flip:  # pm1 labels: either sign
                yl, yu = torch.full_like(yl, -1.0), torch.full_like(yu, 1.0)
            out.append((2.0 * (zl - yu), 2.0 * (zu - yl)))
        return out
    if loss == "hinge":
        z0, z1 = zl[:, 0], zu[:, 0]
        # y = +1: delta = -1[z < 1];  y = -1: delta = 1[z > -1]  (0 at the kink)
        pos = (-(z0 < 1).to(z0.dtype), -(z1 < 1).to(z0.dtype))
        neg = ((z0 > -1).to(z0.dtype), (z1 > -1).to(z0.dtype))
        is_pos = y > 0
        out = []
        for change in changes:
            if change.flip:
                lo, hi = torch.minimum(pos[0], neg[0]), torch.maximum(pos[1], neg[1])
            else:
                lo, hi = torch.where(is_pos, pos[0], neg[0]), torch.where(is_pos, pos[1], neg[1])
            out.append((lo[:, None], hi[:, None]))
        return out
    if loss == "bce":
        sl, su = iv.sigmoid(zl[:, 0], zu[:, 0])
        out = []
        for change in changes:
            tl = torch.zeros_like(y) if change.flip else y
            tu = torch.ones_like(y) if change.flip else y
            out.append(((sl - tu)[:, None], (su - tl)[:, None]))
        return out
    if loss == "cross_entropy":
        pl, pu = iv.softmax(zl, zu)
        onehot = None
        out = []
        for change in changes:
            if change.flip:
                out.append((pl - 1.0, pu))
                continue
            if onehot is None:
                onehot = torch.nn.functional.one_hot(y.long(), zl.shape[1]).to(zl.dtype)
            out.append((pl - onehot, pu - onehot))
        return out
    raise InputError(f"unknown loss {loss!r}")


def backward_bounds(params, hs, inputs, dl: Tensor, du: Tensor,
                    deltas: list | None = None) -> list[tuple[Tensor, Tensor]]:
    """Interval backward pass (paper eqs. 23-26): per-sample bounds as blocks in flattening
    order (``dW_0`` as ``(n, out*in)``, ``db_0`` as ``(n, out)``, ``dW_1``, ...).
    ``deltas``, when given, receives the ``delta_l`` bounds (layer order)."""
    n = dl.shape[0]
    blocks: list[tuple[Tensor, Tensor]] = []
    for l in range(len(params) - 1, -1, -1):
        if deltas is not None:
            deltas.insert(0, (dl, du))
        Wl, Wu, bl, _ = params[l]
        al, au = inputs[l]
        gl, gu = iv.outer(dl, du, al, au, nonneg=l > 0)
        blk = [(gl.reshape(n, -1), gu.reshape(n, -1))]
        if bl is not None:
            blk.append((dl, du))
        blocks = blk + blocks
        if l > 0:
            pl, pu = iv.matmul(dl, du, Wl, Wu)
            sl, su = iv.heaviside(*hs[l - 1])
            dl, du = iv.mul_heaviside(pl, pu, sl, su)
    return blocks


def magnitude_bound(inputs, deltas, params) -> Tensor:
    """Cheap ``(P,)`` upper bound of ``sum_i |g_i|`` (used to scale the outward widening):
    ``|dW_l| <= max|delta_l| max|a_l|`` summed over the samples is a matmul. Below the top
    layer, ``max|delta_l| <= |W_{l+1}|^T max|delta_{l+1}|`` (the ReLU derivative is at most
    1) stands in for ``max|delta_l|``, so that the fused path never forms the first layer's
    magnitudes (:func:`.stepbounds._magnitude` is the same rule). ``inputs``, ``deltas``:
    ``(n, width)`` pairs per layer."""
    parts = []
    top = len(params) - 1
    for l, ((al, au), p) in enumerate(zip(inputs, params)):
        am = al.abs() if au is None else torch.maximum(al.abs(), au.abs())
        dl, du = deltas[l if l == top else l + 1]
        dm = torch.maximum(dl.abs(), du.abs())
        S, sb = dm.T @ am, dm.sum(0)
        if l < top:
            Wl, Wu = params[l + 1][:2]
            Wm = Wl.abs() if Wu is None else torch.maximum(Wl.abs(), Wu.abs())
            S, sb = Wm.T @ S, Wm.T @ sb
        parts.append(S.reshape(-1))
        if p[2] is not None:
            parts.append(sb)
    return torch.cat(parts)


def _repeat(pairs, times: int):
    return [(p[0].repeat(times, 1), None if p[1] is None else p[1].repeat(times, 1))
            for p in pairs]


def gradient_blocks(lo: Tensor, hi: Tensor, layers: Sequence[LayerShape], X: Tensor, y: Tensor,
                    loss: str, clip: float | None = None, eps: float = 0.0,
                    change: LabelChange | None = None, n_classes: int | None = None):
    """Clean per-sample gradient bounds and, when ``eps > 0`` or ``change`` is given, the
    bounds for the same samples perturbed (features within ``eps`` in the inf-norm *and*
    labels changed: both at once), as blocks in flattening order.

    Returns ``(clean, poisoned, mag)``: lists of ``(lo, hi)`` pairs of shape
    ``(n, p_block)`` (``poisoned`` is None without a perturbation; clipping at ``clip`` is
    applied) and a ``(P,)`` bound on ``sum_i |g_i|`` over all of them (:func:`magnitude_bound`).
    """
    params = split_params(lo, hi, layers)
    n = X.shape[0]
    poisoned = eps > 0 or (change is not None and (change.flip or change.nu > 0))
    if poisoned and eps > 0:
        hs, inputs = forward_bounds(params, torch.cat([X, X - eps]), torch.cat([X, X + eps]))
    else:
        hs, inputs = forward_bounds(params, X, None)
    zl, zu = hs[-1]
    clean = LabelChange()
    if not poisoned:
        dl, du = delta_bounds(zl, zu, y, loss, clean, n_classes)
        deltas: list = []
        blocks = backward_bounds(params, hs, inputs, dl, du, deltas)
        return ([iv.clip(g0, g1, clip) for g0, g1 in blocks], None,
                magnitude_bound(inputs, deltas, params))
    change = change or clean
    if eps > 0:
        d0 = delta_bounds(zl[:n], zu[:n], y, loss, clean, n_classes)
        d1 = delta_bounds(zl[n:], zu[n:], y, loss, change, n_classes)
    else:
        d0 = delta_bounds(zl, zu, y, loss, clean, n_classes)
        d1 = delta_bounds(zl, zu, y, loss, change, n_classes)
        hs, inputs = _repeat(hs, 2), _repeat(inputs, 2)
    deltas = []
    blocks = backward_bounds(params, hs, inputs, torch.cat([d0[0], d1[0]]),
                             torch.cat([d0[1], d1[1]]), deltas)
    mag = magnitude_bound(inputs, deltas, params)
    blocks = [iv.clip(g0, g1, clip) for g0, g1 in blocks]
    return ([(g0[:n], g1[:n]) for g0, g1 in blocks], [(g0[n:], g1[n:]) for g0, g1 in blocks],
            mag)


def gradient_bounds(lo: Tensor, hi: Tensor, layers: Sequence[LayerShape], X: Tensor, y: Tensor,
                    loss: str, clip: float | None = None, eps: float = 0.0,
                    change: LabelChange | None = None, n_classes: int | None = None):
    """:func:`gradient_blocks` concatenated: ``(Gl, Gu, Gpl, Gpu)``, each ``(n, P)``
    (the last two None without a perturbation)."""
    clean, pois, _ = gradient_blocks(lo, hi, layers, X, y, loss, clip, eps, change, n_classes)
    Gl, Gu = torch.cat([b[0] for b in clean], 1), torch.cat([b[1] for b in clean], 1)
    if pois is None:
        return Gl, Gu, None, None
    return Gl, Gu, torch.cat([b[0] for b in pois], 1), torch.cat([b[1] for b in pois], 1)
