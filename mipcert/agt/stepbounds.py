"""Fused per-step interval AGT: the aggregated descent-direction bounds of one batch.

This computes what :func:`.propagate.gradient_blocks` followed by the rules of
:mod:`.aggregate` computes (FORMULATIONS 3.5) without materialising the ``(n, P)``
per-sample interval gradients.

* **Layout.** Every per-sample quantity is kept *unit-major*, ``(width, n)``: one row per
  unit, the batch along the row. The per-sample values of a weight block ``dW = delta a^T``,
  ``delta[o, i] a[j, i]``, then come out with row ``(o, j)`` (the flattening order)
  contiguous over the samples, which is what every per-coordinate reduction runs along;
  nothing is ever transposed.
* **Bilinear values** (:mod:`.streams`). Every bound the aggregation needs of a block is, per sample, a
  *bilinear form* ``v[o, j, i] = A[o, i] X1[j, i] + B[o, i] X2[j, i]`` of two ``(out, n)``
  coefficient rows and two ``(in, n)`` input rows (:class:`Bilinear`): e.g. with ``a >= 0``
  an interval, ``lo(delta a) = dl+ al + dl- au``. Their sums over the samples are matmuls
  (``A X1^T + B X2^T``); the difference between the bounds of a sample with and without its
  label changed (which shares the forward pass) is again bilinear, formed from the two
  ``delta`` bounds alone.
* **Top-k sums** (bounded poisoning and label flips: the ``k`` largest of
  ``max(0, gl_i - gpl_i)`` per coordinate) are computed without storing the values: by the
  compiled kernels of :mod:`.kernels` on the CPU when they are built (a heap of ``k`` per
  row; all top-k rows of a layer in one call, :func:`_layer_by_kernel`), else chunk by chunk
  in torch, chunks of :data:`.streams.CHUNK_ELEMENTS` values.
* **Backward pass.** The ReLU derivative is read from the post-activation bounds (the ReLU
  is applied in place in the forward pass) and applied in place (:func:`.passes.relu_backward_`).
  The first layer's delta bounds, which are only reduced, are left to the kernel when it
  runs: it produces them unit by unit from the layer above (:func:`.passes.producer`) in the
  cache, so that the ``(width, n)`` arrays never go through memory.
* **Magnitude bound** (it only scales the outward widening): below the top layer,
  ``|delta_l|`` is bounded through the layer above (:func:`_magnitude`), so the first
  layer's ``(width, n)`` magnitudes are never formed.
* Clipping, removal and substitution need per-sample values themselves: those are built
  chunk by chunk, clipped and reduced.

``tests/agt/test_fused.py`` checks this against the materialising reference path.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..bounds import interval as iv
from ..errors import InputError
from ..network.training import LayerShape
from . import kernels
from .aggregate import topk_sum
from .instance import PerturbationConfig
from .passes import backward_step, deltas, forward, producer
from .propagate import LabelChange, split_params
from .streams import Bilinear, _chunks, _neg, _pos, label_change_bounds, product_bounds

Tensor = torch.Tensor
Pair = tuple[Tensor, Optional[Tensor]]  # (lo, hi) of a (width, n) quantity; hi None: a point

def _clean_sums(d: Pair, a: Pair, nonneg: bool, bias: bool):
    """``sum_i`` of the per-sample ``lo``/``hi`` bounds of the weight block ``d a^T`` and of
    the bias block ``d`` (``(out * in,)`` and ``(out,)`` pairs) by as few matmuls as the
    shapes allow: the narrower operand is stacked (e.g. ``dl [x+; x-; 1]^T`` gives the
    ``dl x+`` and ``dl x-`` parts and the bias sum at once). None when ``a`` is an
    interval of either sign (the values are then summed chunk by chunk)."""
    dl, du = d
    point_d = du is None or du is dl
    du = dl if du is None else du
    al, au = a
    out, (inp, n) = dl.shape[0], al.shape
    if au is None:
        X = [al] if (nonneg or point_d) else [_pos(al), _neg(al)]
        if len(X) * inp + 1 > out:
            return None
        xs = torch.cat(X + ([al.new_ones(1, n)] if bias else []), 0).T
        Sl = dl @ xs
        Su = Sl if point_d else du @ xs
        if len(X) == 1:
            Wlo, Whi = Sl[:, :inp], Su[:, :inp]
        else:
            Wlo = Sl[:, :inp] + Su[:, inp:2 * inp]
            Whi = Su[:, :inp] + Sl[:, inp:2 * inp]
        b = (Sl[:, -1].contiguous(), Su[:, -1].contiguous()) if bias else None
    elif nonneg:
        if out <= inp:
            r1 = torch.cat([_pos(dl), _neg(du)], 0) @ al.T
            r2 = torch.cat([_neg(dl), _pos(du)], 0) @ au.T
            Wlo, Whi = r1[:out] + r2[:out], r2[out:] + r1[out:]
        else:
            Wlo = (_pos(dl) @ al.T).addmm_(_neg(dl), au.T)
            Whi = (_pos(du) @ au.T).addmm_(_neg(du), al.T)
        b = (dl.sum(1), du.sum(1)) if bias else None
    else:
        return None
    return [(Wlo.reshape(-1), Whi.reshape(-1))] + ([b] if bias else [])


# ---------------------------------------------------------------- one step
def descent_bounds(lo: Tensor, hi: Tensor, layers: Sequence[LayerShape], X: Tensor, y: Tensor,
                   loss: str, pert: PerturbationConfig, clip: float | None = None,
                   n_classes: int | None = None):
    """Bounds ``(d_l, d_u, mag)`` on the averaged descent direction of one batch ``X``
    ``(n, d)`` (``(P,)`` each) under ``pert``; ``mag`` bounds ``sum_i |g_i|`` over the
    clean and perturbed per-sample gradients (None for a zero perturbation)."""
    params = split_params(lo, hi, layers)
    b = X.shape[0]
    kind, k, zero = pert.kind, pert.k, pert.is_zero
    if not zero and kind not in ("bounded", "label_flip", "removal", "substitution"):
        raise InputError(f"unknown perturbation kind {kind!r}")
    if not zero and kind == "removal" and k >= b:
        raise InputError(f"removal of k = {k} could empty a batch of {b} samples")
    poisoned = not zero and kind in ("bounded", "label_flip")
    rule = "none" if zero else ("poisoned" if poisoned else kind)
    eps = pert.eps if poisoned else 0.0
    # group the samples by label: the aggregation does not depend on their order, and a
    # label-structured coefficient row (e.g. the change of delta under a label flip is zero
    # for one class) then has runs of zeros that the compiled kernel skips
    order = torch.argsort(y, stable=True)
    X, y = X[order], y[order]
    XT = X.T.contiguous()
    zC, inC = forward(params, (XT, None))
    zP, inP = (forward(params, (XT - eps, XT + eps)) if eps > 0 else (zC, inC))
    shared = inP is inC
    change = LabelChange(flip=pert.flips, nu=pert.nu)
    if not poisoned:
        dC, dP = deltas(zC, y, loss, [LabelChange()], n_classes)[0], None
    elif shared:
        dC, dP = deltas(zC, y, loss, [LabelChange(), change], n_classes)
    else:
        dC = deltas(zC, y, loss, [LabelChange()], n_classes)[0]
        dP = deltas(zP, y, loss, [change], n_classes)[0]
    kk = min(k, b)
    by_sums = clip is None and rule in ("none", "poisoned")

    lows: list[Tensor] = []
    highs: list[Tensor] = []
    mags: list[Tensor] = []
    top = len(params) - 1
    dm_above = None          # |delta| bounds of the layer above, for the magnitude bound
    # the rule whose top-k sums the kernel computes per layer (_layer_by_kernel)
    by_kernel = poisoned and shared and clip is None
    # the first layer's delta bounds are only reduced: the kernel can produce them unit by
    # unit from the layer above (producer) instead of reading them from memory
    fuse_first = by_kernel and top > 0 and kernels.available()
    pending = None           # (W, dC, dP, a) of that backward pass, until layer 0
    for l in range(top, -1, -1):
        Wl, Wu, bl, _ = params[l]
        nonneg = l > 0
        bias = bl is not None
        # |delta_l| of this layer, when a magnitude bound needs it (not for the first layer
        # of a deeper network: that one is bounded through the layer above, see _magnitude)
        dm = _delta_magnitude(dC, dP, shared) if not zero and (l == top or l > 0) else None
        fused = None
        if pending is not None:
            fused = _layer_by_kernel(None, None, inC[l], nonneg, bias, kk, b,
                                     produced=producer(*pending))
            if fused is None:   # the kernel declined: form the delta bounds after all
                dC, dP = backward_step(*pending)
        elif by_kernel:
            fused = _layer_by_kernel(dC, dP, inC[l], nonneg, bias, kk, b)
        if fused is None:
            fused = _layer_blocks(dC, dP, inC[l], inP[l], nonneg, bias, rule,
                                  kk if poisoned else k, b, clip, shared, by_sums)
        lows = fused[0] + lows
        highs = fused[1] + highs
        # ---- magnitude bound sum_i |g_i| (clean and perturbed), for the outward widening
        if not zero:
            mags = _magnitude(dm if l == top else dm_above, inC[l],
                              None if shared else inP[l], nonneg, bias,
                              None if l == top else params[l + 1][:2]) + mags
            dm_above = dm
        # ---- delta of the layer below
        if l == 1 and fuse_first:
            pending = ((Wl, Wu), dC, dP, inC[l])
        elif l > 0:
            if shared:
                dC, dP = backward_step((Wl, Wu), dC, dP, inC[l])
            else:
                dC = backward_step((Wl, Wu), dC, None, inC[l])[0]
                if dP is not None:
                    dP = backward_step((Wl, Wu), dP, None, inP[l])[0]
    dl = torch.cat(lows)
    du = torch.cat(highs)
    return dl, du, (torch.cat(mags) if mags else None)


def _layer_blocks(dC, dP, a, aP, nonneg, bias, rule, k, b, clip, shared, by_sums):
    """The aggregated bounds ``([lo_W, lo_b], [hi_W, hi_b])`` of a layer's blocks in torch
    (and with the top-k kernel where :meth:`Bilinear.topk_sum` can use it)."""
    sums = _clean_sums(dC, a, nonneg, bias) if by_sums else None
    blocks = [(a, aP)] + ([(None, None)] if bias else [])
    blk_lo, blk_hi = [], []
    for i, (x, xP) in enumerate(blocks):
        C = product_bounds(dC, x, nonneg)
        D = P = None
        if rule == "poisoned":
            if shared and clip is None:
                D = label_change_bounds(dP, dC, x, nonneg)
            if D is None:
                P = product_bounds(dP, xP, nonneg)
        lo_, hi_ = _reduce(C, P, D, rule, k, b, clip, None if sums is None else sums[i])
        blk_lo.append(lo_)
        blk_hi.append(hi_)
    return blk_lo, blk_hi


def _layer_by_kernel(dC: Optional[Pair], dP: Optional[Pair], a: Pair, nonneg: bool, bias: bool,
                     k: int, b: int, produced: Optional[kernels.Produced] = None):
    """Bounded poisoning / label flips with a shared forward pass: the aggregated bounds of a
    layer's blocks, ``lo = (sum_i lo_i - topk(lo_i - lo'_i)) / b`` and
    ``hi = (sum_i hi_i + topk(hi'_i - hi_i)) / b`` (FORMULATIONS 3.5). Both top-k sides of
    the weight and bias blocks are one call of the compiled :func:`kernels.row_reduce`, which
    reads the layer's delta bounds once; the clean sums are the stacked matmuls of
    :func:`_clean_sums` where those apply, else kernel sums in the same call. With
    ``produced`` (``dC``, ``dP`` None), the kernel forms the delta bounds itself, unit by
    unit, and sums them too. Returns ``(lows, highs)``, or None when the kernel cannot run
    here (the caller then takes :func:`_layer_blocks`)."""
    if not kernels.available():
        return None
    if produced is not None:
        dC, dP = (kernels.CL, kernels.CU), (kernels.PL, kernels.PU)
        sums = None
    else:
        sums = _clean_sums(dC, a, nonneg, bias)
    problems: list = []

    def add(v: Bilinear, kk: int) -> int:
        problems.append((v.A, v.A2, v.X1, v.B, v.B2, v.X2, v.sign, kk))
        return len(problems) - 1

    sum_at, top_at = [], []
    for x in [a] + ([None] if bias else []):
        D = label_change_bounds(dP, dC, x, nonneg)
        if D is None:       # an input interval of either sign: not bilinear
            return None
        if sums is None:    # then the clean bounds are bilinear too (same inputs as D)
            C = product_bounds(dC, x, nonneg)
            sum_at.append((add(C[0], 0), add(C[1], 0)))
        top_at.append((add(D[0], k), add(D[1], k)))
    out = kernels.row_reduce(problems, produced)
    if out is None:
        return None
    if sums is None:
        sums = [(out[i], out[j]) for i, j in sum_at]
    lows = [(sl - out[tl]) / b for (sl, _), (tl, _) in zip(sums, top_at)]
    highs = [(su + out[tu]) / b for (_, su), (_, tu) in zip(sums, top_at)]
    return lows, highs


def _delta_magnitude(dC: Pair, dP: Optional[Pair], shared: bool):
    """``(mC, mP)``: ``max(|lo|, |hi|)`` of the clean delta bounds ``(width, n)``, plus that
    of the perturbed ones when they share the layer inputs (``mP`` None), else ``mP``
    separately."""
    mC = _absmax(dC)
    if dP is None:
        return mC, None
    if shared:
        return _absmax(dP).add_(mC), None
    return mC, _absmax(dP)


def _magnitude(dm, a: Pair, aP: Optional[Pair], nonneg: bool, bias: bool,
               W_above: Optional[Pair] = None) -> list[Tensor]:
    """A bound on ``sum_i |g_i|`` per parameter of a layer's blocks (clean and perturbed
    samples), which scales the outward widening of the update: ``sum_i |delta_i| |a_i|^T``
    with ``dm = (mC, mP)`` from :func:`_delta_magnitude` (``aP``: the perturbed inputs when
    not shared). With ``W_above`` (the layer above's weight interval), ``dm`` is the layer
    *above*'s and ``|delta_l| <= |W_above|^T |delta_above|`` (the ReLU derivative is at most
    1) is used instead, so that the first layer's ``(width, n)`` magnitudes are never formed.
    :func:`.propagate.magnitude_bound` is the same rule on the reference path."""
    mC, mP = dm
    S = mC @ _absmax(a, nonneg).T
    sb = mC.sum(1) if bias else None
    if mP is not None:
        S.addmm_(mP, _absmax(aP, nonneg).T)
        if bias:
            sb = sb + mP.sum(1)
    if W_above is not None:
        Wm = _absmax(W_above)                # (out_above, out)
        S = Wm.T @ S
        sb = Wm.T @ sb if bias else None
    return [S.reshape(-1)] + ([sb] if bias else [])


def _reduce(C, P, D, rule: str, k: int, b: int, clip: float | None, sums=None):
    """The aggregated bounds ``(lo, hi)`` of one block (FORMULATIONS 3.5) from its value
    streams: ``C`` the clean ``(lo, hi)``, ``P`` the perturbed ones, ``D`` the label-change
    differences (:func:`label_change_bounds`); ``rule`` is ``none``, ``poisoned``
    (bounded / label flips; ``k`` already capped at ``b``), ``removal`` or ``substitution``;
    ``sums``: the clean sums when already known (:func:`_clean_sums`)."""
    Cl, Cu = C
    if clip is None and (rule == "none" or D is not None):
        sl, su = sums if sums is not None else (Cl.total(), Cu.total())
        if rule == "none":
            return sl / b, su / b
        # the k largest of max(0, gl - gpl) and of max(0, gpu - gu)
        return (sl - D[0].topk_sum(k)) / b, (su + D[1].topk_sum(k)) / b
    # per-sample values are needed: build, clip and reduce them chunk by chunk
    n_out, n_in, n = Cl.dims
    sl, su, tl, tu = torch.zeros((4, n_out, n_in), dtype=torch.float64,
                                 device=(Cl.A if isinstance(Cl, Bilinear) else Cl.dl).device).unbind(0)
    for o0, o1, j0, j1 in _chunks(n_out, n_in, n):
        shape = (o1 - o0, j1 - j0)
        cl, cu = iv.clip(Cl.rows(o0, o1, j0, j1), Cu.rows(o0, o1, j0, j1), clip)
        sl[o0:o1, j0:j1] = cl.sum(1).view(shape)
        su[o0:o1, j0:j1] = cu.sum(1).view(shape)
        if rule == "none":
            continue
        if rule == "poisoned":
            pl, pu = iv.clip(P[0].rows(o0, o1, j0, j1), P[1].rows(o0, o1, j0, j1), clip)
            top_l = topk_sum(cl - pl, k, dim=1, nonneg=True)      # k largest of (gl - gpl)+
            top_u = topk_sum(pu - cu, k, dim=1, nonneg=True)      # k largest of (gpu - gu)+
        else:   # removal / substitution: the k largest gl and the k smallest gu
            kr = k if rule == "removal" else min(k, n)
            top_l = topk_sum(cl, kr, dim=1, largest=True)
            top_u = topk_sum(cu, kr, dim=1, largest=False)
        tl[o0:o1, j0:j1] = top_l.view(shape)
        tu[o0:o1, j0:j1] = top_u.view(shape)
    sl, su, tl, tu = (t.reshape(-1) for t in (sl, su, tl, tu))
    if rule == "none":
        return sl / b, su / b
    if rule == "poisoned":
        return (sl - tl) / b, (su + tu) / b
    if rule == "removal":
        return (sl - tl) / (b - k), (su - tu) / (b - k)
    kk = min(k, b)
    return (sl - tl - kk * clip) / b, (su - tu + kk * clip) / b


def _absmax(pair: Pair, nonneg: bool = False) -> Tensor:
    """``max(|lo|, |hi|)`` of an interval (``= max(hi, -lo)`` as ``lo <= hi``; ``= hi``
    when it is ``>= 0``). A fresh tensor unless ``nonneg`` (then ``hi`` itself)."""
    lo, hi = pair
    if hi is None or hi is lo:
        return lo if nonneg else lo.abs()
    if nonneg:
        return hi
    m = torch.neg(lo)
    return torch.maximum(hi, m, out=m)
