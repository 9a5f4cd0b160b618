"""Interval forward and backward passes of one batch, unit-major (``(width, n)``: one row per
unit, the batch along the row), for the fused AGT step (:mod:`.stepbounds`).

* :func:`forward`: the interval forward pass (ReLU applied in place); the layer inputs are
  kept, since the backward pass reads its ReLU gates from them.
* :func:`deltas`: the loss-gradient bounds at the logits, for each label change.
* :func:`backward_step`: the delta bounds of the layer below, ``W^T delta`` (paper eqs.
  23-24, exact end products or midpoint-radius) times the ReLU derivative (eqs. 25-26);
  :func:`producer` hands the same computation to the compiled kernel, which does it unit
  by unit in the cache (:class:`.kernels.Produced`).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..bounds import interval as iv
from . import kernels
from .propagate import delta_bounds_many
from .streams import _neg, _pos

Tensor = torch.Tensor
Pair = tuple[Tensor, Optional[Tensor]]  # (lo, hi) of a (width, n) quantity; hi None: a point

#: finite stand-in for +inf in the ReLU-derivative caps of :func:`relu_gates`
_BIG = 1e308


def affine(W: Pair, b: Pair, a: Pair, nonneg: bool) -> Pair:
    """``h = W a + b``: ``W`` ``(out, in)``, ``a`` ``(in, n)`` -> ``(out, n)``. The same
    enclosures as :func:`iv.matmul`: exact end products when an operand is a point or
    ``a >= 0`` (``lo = Wl+ al + Wl- au``, ...), midpoint-radius otherwise. The narrower of
    the two operands is stacked so that each end is one or two matmuls."""
    (Wl, Wu), (bl, bu), (al, au) = W, b, a
    out, inp = Wl.shape
    lo = hi = None
    if Wu is None and au is None:
        lo = hi = Wl @ al
    elif Wu is None:
        if nonneg:
            Wp, Wn = _pos(Wl), _neg(Wl)
            lo = (Wp @ al).addmm_(Wn, au)
            hi = (Wp @ au).addmm_(Wn, al)
        else:
            am2, ar2 = al + au, au - al
            mid, rad = Wl @ am2, Wl.abs() @ ar2
            lo, hi = (mid - rad) * 0.5, (mid + rad) * 0.5
    elif au is None:
        if nonneg:
            lo, hi = Wl @ al, Wu @ al
        elif 2 * inp + 1 <= out:
            # [lo | hi] rows from one stacked input: [x+; x-; 1] (the bias folded in)
            ones = [al.new_ones(1, al.shape[1])] if bl is not None else []
            xs = torch.cat([_pos(al), _neg(al)] + ones, 0)
            b_lo = [bl[:, None]] if bl is not None else []
            b_hi = [(bl if bu is None else bu)[:, None]] if bl is not None else []
            return torch.cat([Wl, Wu] + b_lo, 1) @ xs, torch.cat([Wu, Wl] + b_hi, 1) @ xs
        else:
            ap, an = _pos(al), _neg(al)
            lo = (Wl @ ap).addmm_(Wu, an)
            hi = (Wu @ ap).addmm_(Wl, an)
    elif nonneg:
        if out <= inp:
            # narrow output: one matmul per input end, the weight parts stacked
            r1 = torch.cat([_pos(Wl), _neg(Wu)], 0) @ al
            r2 = torch.cat([_neg(Wl), _pos(Wu)], 0) @ au
            lo, hi = r1[:out] + r2[:out], r2[out:] + r1[out:]
        else:
            lo = (_pos(Wl) @ al).addmm_(_neg(Wl), au)
            hi = (_pos(Wu) @ au).addmm_(_neg(Wu), al)
    else:
        lo, hi = midrad(Wl, Wu, al, au)
    if bl is not None:
        if lo is hi and bu is None:
            lo = hi = lo + bl[:, None]
        else:
            lo, hi = lo + bl[:, None], hi + (bl if bu is None else bu)[:, None]
    return lo, (None if lo is hi else hi)


def midrad(Wl: Tensor, Wu: Tensor, al: Tensor, au: Tensor):
    """Midpoint-radius ``W a`` of two intervals of either sign (as :func:`iv.matmul`):
    ``mid = Wm am``, ``rad = |Wm| ar + Wr |am| + Wr ar``; ``W`` ``(m, K)``, ``a`` ``(K, n)``.

    When ``K`` is small (the backward pass through a narrow output layer) each end is one
    matmul of the stacked ``[Wm, -+Wr, -+(|Wm| + Wr)] / 2`` against ``[am2; |am2|; ar2]``
    (``am2 = al + au``, ``ar2 = au - al``; :func:`_midrad_stack`, :func:`_midrad_rows`),
    with no pass over the ``(m, n)`` result."""
    if Wl.shape[1] <= Wl.shape[0]:
        a3 = _midrad_rows(al, au)
        Plo, Phi = _midrad_stack(Wl, Wu)
        return Plo @ a3, Phi @ a3
    am2, ar2 = al + au, au - al                  # twice the midpoint and the radius
    Wm2, Wr2, C2 = _midrad_halves(Wl, Wu)
    mid = Wm2 @ am2
    rad = (Wr2 @ am2.abs()).addmm_(C2, ar2)
    return mid - rad, mid + rad


def _midrad_halves(Wl: Tensor, Wu: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``Wm / 2``, ``Wr / 2`` and ``(|Wm| + Wr) / 2`` of the interval ``[Wl, Wu]``."""
    Wm, Wr = iv.mid_rad(Wl, Wu)
    return Wm * 0.5, Wr * 0.5, (Wm.abs() + Wr) * 0.5


def _midrad_stack(Wl: Tensor, Wu: Tensor) -> tuple[Tensor, Tensor]:
    """The stacked weights ``([Wm, -Wr, -(|Wm| + Wr)] / 2, [Wm, Wr, |Wm| + Wr] / 2)`` of
    :func:`midrad`, ``(m, 3 K)`` each: the lower and upper end against :func:`_midrad_rows`."""
    Wm2, Wr2, C2 = _midrad_halves(Wl, Wu)
    return torch.cat([Wm2, -Wr2, -C2], 1), torch.cat([Wm2, Wr2, C2], 1)


def _midrad_rows(al: Tensor, au: Tensor) -> Tensor:
    """``[am2; |am2|; ar2]`` (``am2 = al + au``, ``ar2 = au - al``), ``(3 K, n)``."""
    am2 = al + au
    return torch.cat([am2, am2.abs(), au - al], 0)


def relu_gates(a: Pair) -> tuple[Tensor, Tensor, Tensor]:
    """For the ReLU derivative ``s in [H(h_lo), H(h_hi)]`` (``H(x) = 1[x > 0]``) of a
    hidden layer, given by its post-activation bounds ``a = (max(h_lo, 0), max(h_hi, 0))``
    (``(width, n)``; ``a > 0`` iff ``h > 0``): ``(H(h_hi), cap, -cap)`` as floats, with
    ``cap = +inf`` (a finite stand-in) where ``H(h_lo) = 1`` and ``0`` elsewhere (float
    arithmetic on these is several times faster than boolean masks)."""
    lo, hi = a
    su = torch.gt(lo if hi is None else hi, 0.0, out=torch.empty_like(lo))
    cap = torch.gt(lo, 0.0, out=torch.empty_like(lo)).mul_(_BIG)
    return su, cap, cap.neg()


def backprop(W: Pair, d: Pair) -> tuple[Tensor, Tensor]:
    """``W^T delta_l`` (before the ReLU derivative): ``W`` ``(out, in)``, ``d`` ``(out, n)``
    -> two fresh, distinct ``(in, n)`` arrays (paper eqs. 23-24)."""
    (Wl, Wu), (dl, du) = W, d
    WlT = Wl.T
    if Wu is None and du is None:
        lo = WlT @ dl
        return lo, lo.clone()
    if Wu is None:
        Wp, Wn = _pos(WlT), _neg(WlT)
        return (Wp @ dl).addmm_(Wn, du), (Wp @ du).addmm_(Wn, dl)
    if du is None:
        dp, dn = _pos(dl), _neg(dl)
        return (WlT @ dp).addmm_(Wu.T, dn), (Wu.T @ dp).addmm_(WlT, dn)
    return midrad(WlT, Wu.T, dl, du)


def relu_backward_(d: tuple[Tensor, Tensor], d2: Optional[tuple[Tensor, Tensor]],
                    a: Pair) -> None:
    """Multiply the delta bounds ``d`` (and ``d2``, same layer and gates) in place by the
    ReLU derivative ``s in [H(h_lo), H(h_hi)]`` (paper eqs. 25-26), ``a`` the layer's
    post-activation bounds. The exact product of ``[lo, hi]`` with ``s`` in ``{0, 1}``
    (:func:`iv.mul_heaviside`): a unit surely on keeps ``[lo, hi]``, one surely off gives
    ``0``, an unstable one ``[min(lo, 0), max(hi, 0)]``. By the compiled kernel in one pass
    when it runs here; else ``lo' = min(lo, cap) s_u``, ``hi' = max(hi, -cap) s_u`` with the
    float gates of :func:`relu_gates`."""
    if kernels.relu_gate_(d, d2, a):
        return
    su, cap, ncap = relu_gates(a)
    for lo, hi in [d] + ([d2] if d2 is not None else []):
        torch.minimum(lo, cap, out=lo).mul_(su)
        torch.maximum(hi, ncap, out=hi).mul_(su)


def backward_step(W: Pair, dC: Pair, dP: Optional[Pair], a: Pair):
    """The delta bounds of the layer below: ``W^T delta`` (:func:`backprop`) times the
    ReLU derivative given by ``a``, that layer's post-activation bounds, for ``dC`` and
    (with the same gates) ``dP`` (None: none). Returns ``(dC', dP')``."""
    dC = backprop(W, dC)
    dP = backprop(W, dP) if dP is not None else None
    relu_backward_(dC, dP, a)
    return dC, dP


def producer(W: Pair, dC: Pair, dP: Pair, a: Pair) -> kernels.Produced:
    """:func:`backward_step` for ``dC`` and ``dP`` as :class:`kernels.Produced`, so that the
    kernel computes the bounds unit by unit: the cases of :func:`backprop` as stacked
    products ``lo = Plo @ Z``, ``hi = Phi @ Z`` (``W`` ``(out, in)``, ``Z`` ``(K, n)``):

    * ``W`` a point: ``lo = W+^T dl + W-^T du``: ``Plo = [W+^T, W-^T]``,
      ``Phi = [W-^T, W+^T]``, ``Z = [dl; du]``;
    * ``W`` an interval (midpoint-radius, :func:`midrad`): ``Plo = [Wm, -Wr, -(|Wm| + Wr)]
      / 2``, ``Phi = [Wm, Wr, |Wm| + Wr] / 2`` (of ``W^T``), ``Z = [am2; |am2|; ar2]`` with
      ``am2 = dl + du``, ``ar2 = du - dl``."""
    Wl, Wu = W
    if Wu is None:
        WT = Wl.T
        Wp, Wn = _pos(WT), _neg(WT)
        plo, phi = torch.cat([Wp, Wn], 1), torch.cat([Wn, Wp], 1)

        def z(d: Pair) -> Tensor:
            return torch.cat([d[0], d[1]], 0)
    else:
        plo, phi = _midrad_stack(Wl.T, Wu.T)

        def z(d: Pair) -> Tensor:
            return _midrad_rows(d[0], d[1])
    return kernels.Produced(plo, phi, z(dC), z(dP), a[0], a[1])


def forward(params, x: Pair):
    """Interval forward pass, unit-major. Returns the logit bounds and the layer inputs
    ``inputs`` (``inputs[0]`` = the data, then the post-activation bounds of each hidden
    layer), pairs of ``(width, n)``. The ReLU is applied in place: the backward pass reads
    its gates from the post-activations (``max(h, 0) > 0`` iff ``h > 0``)."""
    inputs = []
    a = x
    for l, (Wl, Wu, bl, bu) in enumerate(params):
        inputs.append(a)
        h = affine((Wl, Wu), (bl, bu), a, nonneg=l > 0)
        if l == len(params) - 1:
            return h, inputs
        a = (h[0].clamp_min_(0.0), None if h[1] is None else h[1].clamp_min_(0.0))


def deltas(h: Pair, y: Tensor, loss: str, changes, n_classes) -> list[Pair]:
    """Loss-gradient bounds at the logits ``(m, n)`` for each label change, sharing the
    softmax / sigmoid bounds (:func:`.propagate.delta_bounds_many`)."""
    zl = h[0].T
    zu = zl if h[1] is None else h[1].T
    return [(dl.T.contiguous(), du.T.contiguous())
            for dl, du in delta_bounds_many(zl, zu, y, loss, changes, n_classes)]
