"""Fused per-step interval AGT: the aggregated descent-direction bounds of one batch.

This computes exactly what :func:`.propagate.gradient_blocks` followed by the rules of
:mod:`.aggregate` computes (FORMULATIONS 3.5), without materialising every per-sample
interval gradient ``(n, P)`` when an aggregation does not need it:

* the sums ``sum_i gl_i`` and ``sum_i gu_i`` of a weight block ``dW = delta a^T`` are
  matmuls: with ``a`` a point, ``sum lo = dm^T a - dr^T |a|``; with ``a >= 0`` (after a
  ReLU), ``sum lo = (dl+)^T al + (dl-)^T au`` (upper alike). These are the sums of the exact
  per-sample interval products, so nothing is lost.
* bounded poisoning / label flips need the ``k`` smallest of ``gpl_i - gl_i`` per
  coordinate. When the perturbed samples share the forward pass with the clean ones (no
  ``eps``: only the labels change), the difference is ``(dpl+ - dl+) al + (dpl- - dl-) au``,
  formed directly from the two ``delta`` bounds without building either product.
* per-sample values are built in a ``(P_block, n)`` layout so :func:`torch.topk` runs along
  contiguous rows; ``min(0, .)`` is applied after the selection (it is monotone, so the
  ``k`` smallest of ``min(0, x)`` are ``min(0, .)`` of the ``k`` smallest of ``x``).
* clipping, removal and substitution need the per-sample values themselves: they are
  materialised (in the same layout), clipped and reduced.

``tests/agt/test_fused.py`` checks this against the materialising reference path.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..bounds import interval as iv
from ..errors import InputError
from ..network.training import LayerShape
from .aggregate import topk_sum
from .instance import PerturbationConfig
from .propagate import LabelChange, delta_bounds, forward_bounds, split_params

Tensor = torch.Tensor


# ---------------------------------------------------------------- top-k sums along dim 1
def _smallest_k_sum(x: Tensor, k: int) -> Tensor:
    """Per row of ``x`` ``(p, n)``: the sum of the ``k`` smallest entries."""
    return topk_sum(x, k, dim=1, largest=False)


def _largest_k_sum(x: Tensor, k: int) -> Tensor:
    return topk_sum(x, k, dim=1, largest=True)


def _largest_k_nonneg_sum(x: Tensor, k: int) -> Tensor:
    return topk_sum(x, k, dim=1, largest=True, nonneg=True)


# ---------------------------------------------------------------- block primitives
# Inputs are in the ``(n, w)`` layout of the forward / backward passes (hi None: a point);
# a weight block is produced as ``(out * in, n)`` (row ``o * in + j``: the flattening order)
# by broadcasting transposed *views* (no transposed copies are made).

def _materialise(dl: Tensor, du: Tensor, al: Tensor, au: Optional[Tensor], nonneg: bool):
    """Per-sample bounds of ``d a^T`` as ``(out*in, n)`` pairs (exact interval products)."""
    n, o = dl.shape
    shape = (o * al.shape[1], n)
    D_l, D_u = dl.T[:, None, :], du.T[:, None, :]
    if au is None:
        if dl is du:
            c = _outer(D_l, al.T[None]).reshape(shape)
            return c, c
        if nonneg:
            return (_outer(D_l, al.T[None]).reshape(shape),
                    _outer(D_u, al.T[None]).reshape(shape))
        # lo(d a) = dl a+ + du a-,  hi(d a) = du a+ + dl a-   (a a point)
        return _bilinear(D_l, al.clamp_min(0.0), D_u, al.clamp_max(0.0), D_u, D_l, shape)
    if nonneg:
        # lo(d a) = d+ al + d- au ;  hi(d a) = d+ au + d- al   (a >= 0)
        return _bilinear(dl.clamp_min(0.0).T[:, None, :], al, dl.clamp_max(0.0).T[:, None, :],
                         au, du.clamp_min(0.0).T[:, None, :], du.clamp_max(0.0).T[:, None, :],
                         shape, swap=True)
    lo, hi = iv.mul(D_l, D_u, al.T[None], au.T[None])
    return lo.contiguous().reshape(shape), hi.contiguous().reshape(shape)


def _bilinear(p1: Tensor, a1: Tensor, p2: Tensor, a2: Tensor, q1: Tensor, q2: Tensor, shape,
              swap: bool = False, sign: float = 1.0):
    """``lo = p1 a1 + sign p2 a2`` and ``hi = q1 a1 + sign q2 a2`` (``q1 a2 + sign q2 a1``
    with ``swap``), the deltas ``(o, 1, n)`` against the inputs ``(n, i)``: two passes each."""
    A1, A2 = _rows(a1)[None], _rows(a2)[None]
    p1, p2, q1, q2 = (x if x.is_contiguous() else x.contiguous() for x in (p1, p2, q1, q2))
    lo = torch.mul(p1, A1)
    hi = torch.mul(q1, A2 if swap else A1)
    if sign > 0:
        lo += p2 * A2
        hi += q2 * (A1 if swap else A2)
    else:
        lo -= p2 * A2
        hi -= q2 * (A1 if swap else A2)
    return lo.reshape(shape), hi.reshape(shape)


def _dense(d: Tensor, a: Tensor) -> Tensor:
    """An empty contiguous ``(o, i, n)`` result for ``d (o, 1, n) * a (1, i, n)`` (an
    elementwise op on transposed views would otherwise follow the inputs' strides, and
    ``topk`` along a strided row is twice as slow)."""
    return torch.empty((d.shape[0], a.shape[1], d.shape[2]), dtype=d.dtype, device=d.device)


def _outer(d: Tensor, a: Tensor) -> Tensor:
    """``d (o, 1, n) * a (1, i, n)`` as a contiguous ``(o, i, n)`` (operands made
    contiguous first: broadcasting strided views is several times slower)."""
    if not d.is_contiguous():
        d = d.contiguous()
    if not a.is_contiguous():
        a = a.contiguous()
    return torch.mul(d, a, out=_dense(d, a))


def _mm(d: Tensor, a: Tensor) -> Tensor:
    """``(d^T a)`` flattened, the narrow operand transposed on the left (faster in BLAS)."""
    if d.shape[1] <= a.shape[1]:
        return (d.T @ a).reshape(-1)
    return (a.T @ d).T.reshape(-1)


def _sums(dl: Tensor, du: Tensor, al: Tensor, au: Optional[Tensor], nonneg: bool):
    """``(sum_i lo_i, sum_i hi_i)`` of the per-sample ``d a^T`` bounds, ``(out*in,)`` each,
    by matmuls. None when ``a`` is an interval of unknown sign (the caller materialises)."""
    if au is None:
        if dl is du:
            s = _mm(dl, al)
            return s, s
        if nonneg:
            return _mm(dl, al), _mm(du, al)
        ap, an = al.clamp_min(0.0), al.clamp_max(0.0)
        return _mm(dl, ap) + _mm(du, an), _mm(du, ap) + _mm(dl, an)
    if not nonneg:
        return None
    lo = _mm(dl.clamp_min(0.0), al) + _mm(dl.clamp_max(0.0), au)
    hi = _mm(du.clamp_min(0.0), au) + _mm(du.clamp_max(0.0), al)
    return lo, hi


def _shared_diff(dP, dC, al: Tensor, au: Optional[Tensor], nonneg: bool):
    """``(lo(dC a^T) - lo(dP a^T), hi(dP a^T) - hi(dC a^T))`` as ``(out*in, n)`` for one
    shared input ``a``, from the delta bounds alone, plus the same differences of the
    deltas themselves (the bias block) as ``(out, n)``. The lower difference is returned
    *negated* (clean minus perturbed) so that both sides select their ``k`` largest entries
    (``topk(largest=True)`` is the faster one)."""
    (pl, pu), (cl, cu) = dP, dC
    n, o = pl.shape
    shape = (o * al.shape[1], n)
    negL, U = _sub_rows(cl, pl), _sub_rows(pu, cu)       # contiguous (o, n)
    bias = (negL, U)
    if au is None:
        dL, dU = negL[:, None, :], U[:, None, :]
        if nonneg:
            return (_outer(dL, al.T[None]).reshape(shape),
                    _outer(dU, al.T[None]).reshape(shape)), bias
        # -(lo(dP a) - lo(dC a)) = (cl - pl) a+ - (pu - cu) a-;
        #   hi(dP a) - hi(dC a)  = (pu - cu) a+ - (cl - pl) a-
        return _bilinear(dL, al.clamp_min(0.0), dU, al.clamp_max(0.0), dU, dL, shape,
                         sign=-1.0), bias
    if not nonneg:
        Pl, Pu = _materialise(pl, pu, al, au, False)
        Cl, Cu = _materialise(cl, cu, al, au, False)
        return (Cl - Pl, Pu - Cu), bias
    return _bilinear(_sub_rows(cl.clamp_min(0.0), pl.clamp_min(0.0))[:, None, :], al,
                     _sub_rows(cl.clamp_max(0.0), pl.clamp_max(0.0))[:, None, :], au,
                     _sub_rows(pu.clamp_min(0.0), cu.clamp_min(0.0))[:, None, :],
                     _sub_rows(pu.clamp_max(0.0), cu.clamp_max(0.0))[:, None, :], shape,
                     swap=True), bias


#: elements of one chunk of per-sample values (``2**16`` float64 = 512 KiB: about L2 size)
CHUNK_ELEMENTS = 1 << 16


def _topk_bilinear(al_: Tensor, a1: Tensor, be: Optional[Tensor], a2: Optional[Tensor],
                   k: int, sign: float = 1.0) -> Tensor:
    """Per row ``(o, j)``: the sum of the ``k`` largest of ``max(0, v_i)`` over the samples,
    ``v_i = al_[o, i] a1[j, i] + sign be[o, i] a2[j, i]`` (``be`` None: the first term only),
    from ``(o, n)`` and ``(in, n)`` contiguous rows; returns ``(o * in,)``.

    The ``(o, in, n)`` values are built and reduced in chunks that stay in cache: the same
    numbers as materialising them whole, without a pass over memory per elementwise op."""
    o, n = al_.shape
    i = a1.shape[0]
    out = torch.empty((o, i), dtype=al_.dtype, device=al_.device)
    kk = min(k, n)
    rows = max(1, CHUNK_ELEMENTS // max(n, 1))
    go = max(1, min(o, rows // i)) if i <= rows else 1
    gj = i if i <= rows else rows
    for o0 in range(0, o, go):
        A, B = al_[o0:o0 + go, None, :], None if be is None else be[o0:o0 + go, None, :]
        for j0 in range(0, i, gj):
            v = A * a1[None, j0:j0 + gj, :]
            if B is not None:
                if sign > 0:
                    v += B * a2[None, j0:j0 + gj, :]
                else:
                    v -= B * a2[None, j0:j0 + gj, :]
            v = v.reshape(-1, n)
            if kk < n:
                v = torch.topk(v, kk, dim=1, largest=True, sorted=False).values
            out[o0:o0 + go, j0:j0 + gj] = v.clamp_min(0.0).sum(1).reshape(-1, min(gj, i - j0))
    return out.reshape(-1)


def _shared_topk(dP, dC, al: Tensor, au: Optional[Tensor], nonneg: bool, k: int):
    """For one shared input ``a``: ``(s_lo, s_hi)`` with ``s_lo`` the sum of the ``k``
    largest of ``max(0, lo(dC a^T) - lo(dP a^T))`` and ``s_hi`` that of
    ``max(0, hi(dP a^T) - hi(dC a^T))`` per weight (``(out*in,)``), and the same two sums
    for the bias block (``d`` itself, ``(out,)``). Equal to :func:`_shared_diff` followed by
    the top-k sums, computed chunk by chunk."""
    (pl, pu), (cl, cu) = dP, dC
    negL, U = _sub_rows(cl, pl), _sub_rows(pu, cu)            # (o, n)
    bias = (_largest_k_nonneg_sum(negL, k), _largest_k_nonneg_sum(U, k))
    if au is None:
        a = _rows(al)
        if nonneg:
            return (_topk_bilinear(negL, a, None, None, k),
                    _topk_bilinear(U, a, None, None, k)), bias
        ap, an = a.clamp_min(0.0), a.clamp_max(0.0)
        return (_topk_bilinear(negL, ap, U, an, k, sign=-1.0),
                _topk_bilinear(U, ap, negL, an, k, sign=-1.0)), bias
    if not nonneg:
        Dl, Du = _shared_diff(dP, dC, al, au, nonneg)[0]
        return (_largest_k_nonneg_sum(Dl, k), _largest_k_nonneg_sum(Du, k)), bias
    A1, A2 = _rows(al), _rows(au)
    return (_topk_bilinear(_sub_rows(cl.clamp_min(0.0), pl.clamp_min(0.0)), A1,
                           _sub_rows(cl.clamp_max(0.0), pl.clamp_max(0.0)), A2, k),
            _topk_bilinear(_sub_rows(pu.clamp_min(0.0), cu.clamp_min(0.0)), A2,
                           _sub_rows(pu.clamp_max(0.0), cu.clamp_max(0.0)), A1, k)), bias


def _rows(x: Tensor) -> Tensor:
    """``(n, w)`` -> contiguous ``(w, n)`` (one pass)."""
    out = torch.empty((x.shape[1], x.shape[0]), dtype=x.dtype, device=x.device)
    return out.copy_(x.T)


def _sub_rows(a: Tensor, b: Tensor) -> Tensor:
    """``(a - b)^T`` as a contiguous ``(w, n)`` tensor (subtract, then one transposed
    copy: a subtraction reading transposed views directly is slower)."""
    return _rows(a - b)


# ---------------------------------------------------------------- one step
def descent_bounds(lo: Tensor, hi: Tensor, layers: Sequence[LayerShape], X: Tensor, y: Tensor,
                   loss: str, pert: PerturbationConfig, clip: float | None = None,
                   n_classes: int | None = None):
    """Bounds ``(d_l, d_u, mag)`` on the averaged descent direction of one batch
    (``(P,)`` each) under ``pert``; ``mag`` bounds ``sum_i |g_i|`` over the clean and
    perturbed per-sample gradients (None for a zero perturbation)."""
    params = split_params(lo, hi, layers)
    n = X.shape[0]
    kind, k, zero = pert.kind, pert.k, pert.is_zero
    if not zero and kind not in ("bounded", "label_flip", "removal", "substitution"):
        raise InputError(f"unknown perturbation kind {kind!r}")
    poisoned = not zero and kind in ("bounded", "label_flip")
    eps = pert.eps if poisoned else 0.0
    if poisoned and eps > 0:
        hs, inputs = forward_bounds(params, torch.cat([X, X - eps]), torch.cat([X, X + eps]))
        hsC = [(h0[:n], h1[:n]) for h0, h1 in hs]
        hsP = [(h0[n:], h1[n:]) for h0, h1 in hs]
        inC = [(a0[:n], None if a1 is None else a1[:n]) for a0, a1 in inputs]
        inP = [(a0[n:], None if a1 is None else a1[n:]) for a0, a1 in inputs]
    else:
        hsC, inC = forward_bounds(params, X, None)
        hsP, inP = hsC, inC
    shared = inP is inC
    zC = hsC[-1]
    dC = delta_bounds(zC[0], zC[1], y, loss, LabelChange(), n_classes)
    dP = None
    if poisoned:
        zP = hsP[-1]
        dP = delta_bounds(zP[0], zP[1], y, loss, LabelChange(flip=pert.flips, nu=pert.nu),
                          n_classes)
    b = n
    materialise = clip is not None or (kind in ("removal", "substitution") and not zero)

    lows: list[Tensor] = []
    highs: list[Tensor] = []
    mags: list[Tensor] = []
    for l in range(len(params) - 1, -1, -1):
        Wl, Wu, bl, _ = params[l]
        nonneg = l > 0
        aC, aP = inC[l], inP[l]
        blk_lo, blk_hi = [], []
        # ---- the weight block and the bias block of layer l
        sums = None if materialise else _sums(dC[0], dC[1], aC[0], aC[1], nonneg)
        C = None
        if sums is None or (poisoned and (clip is not None or not shared)):
            C = _materialise(dC[0], dC[1], aC[0], aC[1], nonneg)
            C = iv.clip(C[0], C[1], clip)
            sums = (C[0].sum(1), C[1].sum(1))
        parts = [(C, sums, "W")]
        bias_C = None
        if bl is not None:
            if materialise or (poisoned and clip is not None):
                bias_C = iv.clip(_rows(dC[0]), _rows(dC[1]), clip)
                parts.append((bias_C, (bias_C[0].sum(1), bias_C[1].sum(1)), "b"))
            else:
                parts.append((None, (dC[0].sum(0), dC[1].sum(0)), "b"))
        diffs = {}
        topk_sums = None
        if poisoned:
            if clip is None and shared:
                topk_sums = _shared_topk(dP, dC, aC[0], aC[1], nonneg, min(k, b))
            else:
                Pm = _materialise(dP[0], dP[1], aP[0], aP[1], nonneg)
                Pm = iv.clip(Pm[0], Pm[1], clip)
                diffs["W"] = (C[0] - Pm[0], Pm[1] - C[1])
                if bl is not None:
                    if bias_C is None:
                        diffs["b"] = (_sub_rows(dC[0], dP[0]), _sub_rows(dP[1], dC[1]))
                    else:
                        bP = iv.clip(_rows(dP[0]), _rows(dP[1]), clip)
                        diffs["b"] = (bias_C[0] - bP[0], bP[1] - bias_C[1])
        for mat, (sl, su), name in parts:
            if zero:
                lo_, hi_ = sl / b, su / b
            elif poisoned:
                if topk_sums is not None:   # k largest of max(0, gl - gpl), of max(0, gpu - gu)
                    tl, tu = topk_sums[0 if name == "W" else 1]
                else:
                    negDl, Du = diffs[name]   # negDl = gl - gpl
                    tl = _largest_k_nonneg_sum(negDl, min(k, b))
                    tu = _largest_k_nonneg_sum(Du, min(k, b))
                lo_ = (sl - tl) / b
                hi_ = (su + tu) / b
            elif kind == "removal":
                if k >= b:
                    raise InputError(f"removal of k = {k} could empty a batch of {b} samples")
                lo_ = (sl - _largest_k_sum(mat[0], k)) / (b - k)
                hi_ = (su - _smallest_k_sum(mat[1], k)) / (b - k)
            else:  # substitution
                kk = min(k, b)
                lo_ = (sl - _largest_k_sum(mat[0], kk) - kk * clip) / b
                hi_ = (su - _smallest_k_sum(mat[1], kk) + kk * clip) / b
            blk_lo.append(lo_)
            blk_hi.append(hi_)
        lows = blk_lo + lows
        highs = blk_hi + highs
        # ---- magnitude bound sum_i |g_i| (clean and perturbed), for the outward widening
        if not zero:
            dm = _absmax(dC)
            am = _absmax(aC)
            if dP is not None and shared:
                dm = dm + _absmax(dP)   # same inputs: one matmul for both
            mag_blk = [_mm(dm, am)] + ([dm.sum(0)] if bl is not None else [])
            if dP is not None and not shared:
                dmP = _absmax(dP)
                mag_blk[0] = mag_blk[0] + _mm(dmP, _absmax(aP))
                if bl is not None:
                    mag_blk[1] = mag_blk[1] + dmP.sum(0)
            mags = mag_blk + mags
        # ---- delta of the layer below: (W^T delta) * [H(hl), H(hu)]  (iv.mul_heaviside)
        if l > 0:
            on, off = _relu_masks(hsC[l - 1])
            dC = _mul_masks(*iv.matmul(dC[0], dC[1], Wl, Wu), on, off)
            if dP is not None:
                if not shared:
                    on, off = _relu_masks(hsP[l - 1])
                dP = _mul_masks(*iv.matmul(dP[0], dP[1], Wl, Wu), on, off)
    dl = torch.cat(lows)
    du = torch.cat(highs)
    return dl, du, (torch.cat(mags) if mags else None)


def _relu_masks(h):
    """``(h_lo > 0, h_hi <= 0)``: the ReLU surely active / surely inactive."""
    return h[0] > 0, h[1] <= 0


def _mul_masks(dl: Tensor, du: Tensor, on: Tensor, off: Tensor):
    """:func:`mipcert.bounds.interval.mul_heaviside` from boolean masks computed once."""
    lo = torch.where(on, dl, dl.clamp_max(0.0)).masked_fill_(off, 0.0)
    hi = torch.where(on, du, du.clamp_min(0.0)).masked_fill_(off, 0.0)
    return lo, hi


def _absmax(pair) -> Tensor:
    """``max(|lo|, |hi|)`` of an interval (``= max(hi, -lo)`` as ``lo <= hi``)."""
    lo, hi = pair
    if hi is None or hi is lo:
        return lo.abs()
    return torch.maximum(hi, -lo)
