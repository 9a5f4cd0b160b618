"""Fused per-step interval AGT: the aggregated descent-direction bounds of one batch.

This computes what :func:`.propagate.gradient_blocks` followed by the rules of
:mod:`.aggregate` computes (FORMULATIONS 3.5) without materialising the ``(n, P)``
per-sample interval gradients.

* **Layout.** Every per-sample quantity is kept *unit-major*, ``(width, n)``: one row per
  unit, the batch along the row. The per-sample values of a weight block ``dW = delta a^T``,
  ``delta[o, i] a[j, i]``, then come out with row ``(o, j)`` (the flattening order)
  contiguous over the samples, which is what every per-coordinate reduction runs along;
  nothing is ever transposed.
* **Bilinear values.** Every bound the aggregation needs of a block is, per sample, a
  *bilinear form* ``v[o, j, i] = A[o, i] X1[j, i] + B[o, i] X2[j, i]`` of two ``(out, n)``
  coefficient rows and two ``(in, n)`` input rows (:class:`Bilinear`): e.g. with ``a >= 0``
  an interval, ``lo(delta a) = dl+ al + dl- au``. Their sums over the samples are matmuls
  (``A X1^T + B X2^T``); the difference between the bounds of a sample with and without its
  label changed (which shares the forward pass) is again bilinear, formed from the two
  ``delta`` bounds alone.
* **Top-k sums** (bounded poisoning and label flips: the ``k`` largest of
  ``max(0, gl_i - gpl_i)`` per coordinate) are computed without storing the values: by the
  compiled kernel :mod:`mipcert.agt._topk` on the CPU when it is built (one pass, a heap of
  ``k`` per row), else chunk by chunk in torch, chunks of :data:`CHUNK_ELEMENTS` values.
* Clipping, removal and substitution need per-sample values themselves: those are built
  chunk by chunk, clipped and reduced.

``tests/agt/test_fused.py`` checks this against the materialising reference path.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..bounds import interval as iv
from ..errors import InputError
from ..network.training import LayerShape
from . import kernels
from .aggregate import topk_sum
from .instance import PerturbationConfig
from .propagate import LabelChange, delta_bounds_many, split_params

Tensor = torch.Tensor
Pair = tuple[Tensor, Optional[Tensor]]  # (lo, hi) of a (width, n) quantity; hi None: a point

#: values per chunk when per-sample values are built in torch (``2**16`` float64: 512 KiB)
CHUNK_ELEMENTS = 1 << 16


def _pos(x: Tensor) -> Tensor:
    return x.clamp_min(0.0)


def _neg(x: Tensor) -> Tensor:
    return x.clamp_max(0.0)


# ---------------------------------------------------------------- per-sample values
@dataclass
class Bilinear:
    """Per-sample values ``v[o, j, i] = A'[o, i] X1[j, i] + sign B'[o, i] X2[j, i]`` of a
    weight block (rows ``o * in + j``), or ``v[o, i] = A'[o, i]`` of a bias block (``X1``
    None), with ``A' = A - A2`` and ``B' = B - B2`` (``A2``/``B2`` None: zero; a difference
    of two delta bounds is left unformed so that the kernel forms it on the fly).
    ``A``, ``A2``, ``B``, ``B2``: ``(out, n)``; ``X1``, ``X2``: ``(in, n)``, all
    contiguous; ``sign`` is +-1."""

    A: Tensor
    X1: Optional[Tensor] = None
    B: Optional[Tensor] = None
    X2: Optional[Tensor] = None
    sign: float = 1.0
    A2: Optional[Tensor] = None
    B2: Optional[Tensor] = None

    @property
    def dims(self) -> tuple[int, int, int]:
        """``(out, in, n)``; a bias block has ``in = 1``."""
        out, n = self.A.shape
        return out, 1 if self.X1 is None else self.X1.shape[0], n

    def _coef(self, o0: int, o1: int):
        A = self.A[o0:o1] if self.A2 is None else self.A[o0:o1] - self.A2[o0:o1]
        if self.B is None:
            return A, None
        return A, (self.B[o0:o1] if self.B2 is None else self.B[o0:o1] - self.B2[o0:o1])

    def rows(self, o0: int, o1: int, j0: int, j1: int) -> Tensor:
        """The values of rows ``(o, j)``, ``o0 <= o < o1``, ``j0 <= j < j1`` as
        ``((o1 - o0) * (j1 - j0), n)``."""
        A, B = self._coef(o0, o1)
        if self.X1 is None:
            return A
        n = A.shape[1]
        v = torch.mul(A[:, None, :], self.X1[None, j0:j1, :])
        if B is not None:
            v.addcmul_(B[:, None, :], self.X2[None, j0:j1, :], value=self.sign)
        return v.view(-1, n)

    def total(self) -> Tensor:
        """``sum_i v[., i]`` as ``(out * in,)`` (matmuls)."""
        A, B = self._coef(0, self.A.shape[0])
        if self.X1 is None:
            return A.sum(1)
        s = A @ self.X1.T
        if B is not None:
            s.addmm_(B, self.X2.T, alpha=self.sign)
        return s.view(-1)

    def topk_sum(self, k: int) -> Tensor:
        """Per row, the sum of the ``k`` largest of ``max(0, v_i)``, ``(out * in,)``."""
        fast = kernels.bilinear_topk_sum(self.A, self.X1, self.B, self.X2, k, self.sign,
                                         self.A2, self.B2)
        if fast is not None:
            return fast
        out = self.A.new_empty(self.dims[:2])
        for o0, o1, j0, j1 in _chunks(*self.dims):
            out[o0:o1, j0:j1] = topk_sum(self.rows(o0, o1, j0, j1), k, dim=1,
                                         nonneg=True).view(o1 - o0, j1 - j0)
        return out.view(-1)


@dataclass
class Products:
    """Per-sample bounds of ``delta a^T`` with ``a`` an interval of either sign (the data
    within ``eps``): ``lo`` or ``hi`` of the four end products (:func:`iv.mul`)."""

    dl: Tensor
    du: Tensor
    al: Tensor
    au: Tensor
    upper: bool

    @property
    def dims(self) -> tuple[int, int, int]:
        return self.dl.shape[0], self.al.shape[0], self.dl.shape[1]

    def rows(self, o0: int, o1: int, j0: int, j1: int) -> Tensor:
        lo, hi = iv.mul(self.dl[o0:o1, None, :], self.du[o0:o1, None, :],
                        self.al[None, j0:j1, :], self.au[None, j0:j1, :])
        return (hi if self.upper else lo).reshape(-1, self.dl.shape[1])

    def total(self) -> Tensor:
        out = self.dl.new_empty(self.dims[:2])
        for o0, o1, j0, j1 in _chunks(*self.dims):
            out[o0:o1, j0:j1] = self.rows(o0, o1, j0, j1).sum(1).view(o1 - o0, j1 - j0)
        return out.view(-1)


def product_bounds(d: Pair, a: Optional[Pair], nonneg: bool):
    """``(lo, hi)`` per-sample value streams of ``d a^T`` (``d`` ``(out, n)``, ``a``
    ``(in, n)``; ``a`` None: the bias block, ``d`` itself). Exact interval products:
    ``a`` a point: ``lo = dl a+ + du a-``; ``a >= 0`` an interval: ``lo = dl+ al + dl- au``;
    ``hi`` alike."""
    dl, du = d
    point_d = du is None or du is dl
    du = dl if du is None else du
    if a is None:
        return Bilinear(dl), Bilinear(du)
    al, au = a
    if au is None:
        if point_d:
            v = Bilinear(dl, al)
            return v, v
        if nonneg:
            return Bilinear(dl, al), Bilinear(du, al)
        ap, an = _pos(al), _neg(al)
        return Bilinear(dl, ap, du, an), Bilinear(du, ap, dl, an)
    if nonneg:
        return (Bilinear(_pos(dl), al, _neg(dl), au), Bilinear(_pos(du), au, _neg(du), al))
    return Products(dl, du, al, au, False), Products(dl, du, al, au, True)


def label_change_bounds(dP: Pair, dC: Pair, a: Optional[Pair], nonneg: bool):
    """For a sample whose perturbed copy shares its forward pass (only the label changes):
    value streams of ``lo(dC a^T) - lo(dP a^T)`` and ``hi(dP a^T) - hi(dC a^T)``, formed
    from the delta bounds alone (None when ``a`` is an interval of either sign)."""
    (pl, pu), (cl, cu) = dP, dC
    al, au = (None, None) if a is None else a
    if au is not None and not nonneg:
        return None
    if au is not None:
        return (Bilinear(_pos(cl) - _pos(pl), al, _neg(cl) - _neg(pl), au),
                Bilinear(_pos(pu) - _pos(cu), au, _neg(pu) - _neg(cu), al))
    # negL = cl - pl and U = pu - cu, left unformed (A - A2, B - B2)
    if a is None:
        return Bilinear(cl, A2=pl), Bilinear(pu, A2=cu)
    if nonneg:
        return Bilinear(cl, al, A2=pl), Bilinear(pu, al, A2=cu)
    # lo_C - lo_P = (cl - pl) a+ + (cu - pu) a-;  hi_P - hi_C = (pu - cu) a+ + (pl - cl) a-
    ap, an = _pos(al), _neg(al)
    return (Bilinear(cl, ap, pu, an, -1.0, A2=pl, B2=cu),
            Bilinear(pu, ap, cl, an, -1.0, A2=cu, B2=pl))


def _chunks(n_out: int, n_in: int, n: int):
    """``(o0, o1, j0, j1)`` tiles of the ``(n_out, n_in)`` rows holding about
    :data:`CHUNK_ELEMENTS` values of ``n`` samples each."""
    rows = max(1, CHUNK_ELEMENTS // max(n, 1))
    if n_in <= rows:
        go = max(1, rows // n_in)
        for o0 in range(0, n_out, go):
            yield o0, min(n_out, o0 + go), 0, n_in
    else:
        for o0 in range(n_out):
            for j0 in range(0, n_in, rows):
                yield o0, o0 + 1, j0, min(n_in, j0 + rows)


# ---------------------------------------------------------------- forward / backward, unit-major
#: finite stand-in for +inf in the ReLU-derivative caps of :func:`_backprop`
_BIG = 1e308


def _affine(W: Pair, b: Pair, a: Pair, nonneg: bool) -> Pair:
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
        lo, hi = _midrad(Wl, Wu, al, au)
    if bl is not None:
        if lo is hi and bu is None:
            lo = hi = lo + bl[:, None]
        else:
            lo, hi = lo + bl[:, None], hi + (bl if bu is None else bu)[:, None]
    return lo, (None if lo is hi else hi)


def _midrad(Wl: Tensor, Wu: Tensor, al: Tensor, au: Tensor):
    """Midpoint-radius ``W a`` of two intervals of either sign (as :func:`iv.matmul`):
    ``mid = Wm am``, ``rad = |Wm| ar + Wr |am| + Wr ar``; ``W`` ``(m, K)``, ``a`` ``(K, n)``.

    When ``K`` is small (the backward pass through a narrow output layer) each end is one
    matmul of the stacked ``[Wm, -+Wr, -+(|Wm| + Wr)] / 2`` against ``[am2; |am2|; ar2]``
    (``am2 = al + au``, ``ar2 = au - al``), with no pass over the ``(m, n)`` result."""
    am2, ar2 = al + au, au - al                  # twice the midpoint and the radius
    Wm, Wr = iv.mid_rad(Wl, Wu)
    Wm2, Wr2, C2 = Wm * 0.5, Wr * 0.5, (Wm.abs() + Wr) * 0.5
    if Wl.shape[1] <= Wl.shape[0]:
        a3 = torch.cat([am2, am2.abs(), ar2], 0)
        return torch.cat([Wm2, -Wr2, -C2], 1) @ a3, torch.cat([Wm2, Wr2, C2], 1) @ a3
    mid = Wm2 @ am2
    rad = (Wr2 @ am2.abs()).addmm_(C2, ar2)
    return mid - rad, mid + rad


def _relu_gates(h: Pair) -> tuple[Tensor, Tensor, Tensor]:
    """For the ReLU derivative ``s in [H(h_lo), H(h_hi)]`` (``H(x) = 1[x > 0]``) of a
    pre-activation interval ``(width, n)``: ``(H(h_hi), cap, -cap)`` as floats, with
    ``cap = +inf`` (a finite stand-in) where ``H(h_lo) = 1`` and ``0`` elsewhere (float
    arithmetic on these is several times faster than boolean masks)."""
    lo, hi = h
    su = torch.gt(lo if hi is None else hi, 0.0, out=torch.empty_like(lo))
    cap = torch.gt(lo, 0.0, out=torch.empty_like(lo)).mul_(_BIG)
    return su, cap, cap.neg()


def _backprop(W: Pair, d: Pair, gates: tuple[Tensor, Tensor, Tensor]) -> Pair:
    """``delta_{l-1} = (W^T delta_l) * [H(hl), H(hu)]`` (paper eqs. 23-26): ``W``
    ``(out, in)``, ``d`` ``(out, n)`` -> ``(in, n)``; ``gates`` from :func:`_relu_gates`.

    The exact product of ``[lo, hi]`` with ``s in [s_l, s_u]``, ``s`` in ``{0, 1}``
    (:func:`iv.mul_heaviside`): a unit surely on keeps ``[lo, hi]``, one surely off gives
    ``0``, an unstable one ``[min(lo, 0), max(hi, 0)]``; that is
    ``lo' = min(lo, cap) s_u`` and ``hi' = max(hi, -cap) s_u``."""
    (Wl, Wu), (dl, du) = W, d
    WlT = Wl.T
    if Wu is None and du is None:
        lo = hi = WlT @ dl
    elif Wu is None:
        Wp, Wn = _pos(WlT), _neg(WlT)
        lo = (Wp @ dl).addmm_(Wn, du)
        hi = (Wp @ du).addmm_(Wn, dl)
    elif du is None:
        dp, dn = _pos(dl), _neg(dl)
        lo = (WlT @ dp).addmm_(Wu.T, dn)
        hi = (Wu.T @ dp).addmm_(WlT, dn)
    else:
        lo, hi = _midrad(WlT, Wu.T, dl, du)
    su, cap, ncap = gates
    if hi is lo:
        hi = lo.clone()
    # in place: the matmul results are fresh, and reusing them keeps fewer (in, n) arrays live
    return (torch.minimum(lo, cap, out=lo).mul_(su), torch.maximum(hi, ncap, out=hi).mul_(su))


def _forward(params, x: Pair):
    """Interval forward pass, unit-major. Returns the pre-activations ``hs`` and the layer
    inputs ``inputs`` (``inputs[0]`` = the data), pairs of ``(width, n)``."""
    hs, inputs = [], []
    a = x
    for l, (Wl, Wu, bl, bu) in enumerate(params):
        inputs.append(a)
        h = _affine((Wl, Wu), (bl, bu), a, nonneg=l > 0)
        hs.append(h)
        if l < len(params) - 1:
            a = (_pos(h[0]), None if h[1] is None else _pos(h[1]))
    return hs, inputs


def _deltas(h: Pair, y: Tensor, loss: str, changes, n_classes) -> list[Pair]:
    """Loss-gradient bounds at the logits ``(m, n)`` for each label change, sharing the
    softmax / sigmoid bounds (:func:`.propagate.delta_bounds_many`)."""
    zl = h[0].T
    zu = zl if h[1] is None else h[1].T
    return [(dl.T.contiguous(), du.T.contiguous())
            for dl, du in delta_bounds_many(zl, zu, y, loss, changes, n_classes)]


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
    hsC, inC = _forward(params, (XT, None))
    hsP, inP = (_forward(params, (XT - eps, XT + eps)) if eps > 0 else (hsC, inC))
    shared = inP is inC
    change = LabelChange(flip=pert.flips, nu=pert.nu)
    if not poisoned:
        dC, dP = _deltas(hsC[-1], y, loss, [LabelChange()], n_classes)[0], None
    elif shared:
        dC, dP = _deltas(hsC[-1], y, loss, [LabelChange(), change], n_classes)
    else:
        dC = _deltas(hsC[-1], y, loss, [LabelChange()], n_classes)[0]
        dP = _deltas(hsP[-1], y, loss, [change], n_classes)[0]
    kk = min(k, b)
    by_sums = clip is None and rule in ("none", "poisoned")

    lows: list[Tensor] = []
    highs: list[Tensor] = []
    mags: list[Tensor] = []
    for l in range(len(params) - 1, -1, -1):
        Wl, Wu, bl, _ = params[l]
        nonneg = l > 0
        bias = bl is not None
        sums = _clean_sums(dC, inC[l], nonneg, bias) if by_sums else None
        blocks = [(inC[l], inP[l])] + ([(None, None)] if bias else [])
        blk_lo, blk_hi = [], []
        for i, (a, aP) in enumerate(blocks):
            C = product_bounds(dC, a, nonneg)
            D = P = None
            if poisoned:
                if shared and clip is None:
                    D = label_change_bounds(dP, dC, a, nonneg)
                if D is None:
                    P = product_bounds(dP, aP, nonneg)
            lo_, hi_ = _reduce(C, P, D, rule, kk if poisoned else k, b, clip,
                               None if sums is None else sums[i])
            blk_lo.append(lo_)
            blk_hi.append(hi_)
        lows = blk_lo + lows
        highs = blk_hi + highs
        # ---- magnitude bound sum_i |g_i| (clean and perturbed), for the outward widening
        if not zero:
            dm, am = _absmax(dC), _absmax(inC[l], nonneg)
            if dP is not None and shared:
                dm = _absmax(dP).add_(dm)   # same inputs: one matmul for both
            mag_blk = [(dm @ am.T).view(-1)] + ([dm.sum(1)] if bias else [])
            if dP is not None and not shared:
                dmP = _absmax(dP)
                mag_blk[0] = mag_blk[0] + (dmP @ _absmax(inP[l], nonneg).T).view(-1)
                if bias:
                    mag_blk[1] = mag_blk[1] + dmP.sum(1)
            mags = mag_blk + mags
        # ---- delta of the layer below
        if l > 0:
            gates = _relu_gates(hsC[l - 1])
            dC = _backprop((Wl, Wu), dC, gates)
            if dP is not None:
                if not shared:
                    gates = _relu_gates(hsP[l - 1])
                dP = _backprop((Wl, Wu), dP, gates)
    dl = torch.cat(lows)
    du = torch.cat(highs)
    return dl, du, (torch.cat(mags) if mags else None)


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
