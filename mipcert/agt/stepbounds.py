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
from .propagate import LabelChange, delta_bounds, split_params

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
    """Per-sample values ``v[o, j, i] = A[o, i] X1[j, i] + sign B[o, i] X2[j, i]`` of a
    weight block (rows ``o * in + j``), or ``v[o, i] = A[o, i]`` of a bias block (``X1``
    None). ``A``, ``B``: ``(out, n)``; ``X1``, ``X2``: ``(in, n)``, all contiguous;
    ``sign`` is +-1."""

    A: Tensor
    X1: Optional[Tensor] = None
    B: Optional[Tensor] = None
    X2: Optional[Tensor] = None
    sign: float = 1.0

    @property
    def dims(self) -> tuple[int, int, int]:
        """``(out, in, n)``; a bias block has ``in = 1``."""
        out, n = self.A.shape
        return out, 1 if self.X1 is None else self.X1.shape[0], n

    def rows(self, o0: int, o1: int, j0: int, j1: int) -> Tensor:
        """The values of rows ``(o, j)``, ``o0 <= o < o1``, ``j0 <= j < j1`` as
        ``((o1 - o0) * (j1 - j0), n)``."""
        if self.X1 is None:
            return self.A[o0:o1]
        A = self.A[o0:o1, None, :]
        n = A.shape[2]
        v = torch.mul(A, self.X1[None, j0:j1, :])
        if self.B is not None:
            v.addcmul_(self.B[o0:o1, None, :], self.X2[None, j0:j1, :], value=self.sign)
        return v.view(-1, n)

    def total(self) -> Tensor:
        """``sum_i v[., i]`` as ``(out * in,)`` (matmuls)."""
        if self.X1 is None:
            return self.A.sum(1)
        s = self.A @ self.X1.T
        if self.B is not None:
            s.addmm_(self.B, self.X2.T, alpha=self.sign)
        return s.view(-1)

    def topk_sum(self, k: int) -> Tensor:
        """Per row, the sum of the ``k`` largest of ``max(0, v_i)``, ``(out * in,)``."""
        fast = kernels.bilinear_topk_sum(self.A, self.X1, self.B, self.X2, k, self.sign)
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
    negL, U = cl - pl, pu - cu
    if a is None:
        return Bilinear(negL), Bilinear(U)
    if nonneg:
        return Bilinear(negL, al), Bilinear(U, al)
    # lo_C - lo_P = (cl - pl) a+ + (cu - pu) a-;  hi_P - hi_C = (pu - cu) a+ + (pl - cl) a-
    ap, an = _pos(al), _neg(al)
    return Bilinear(negL, ap, U, an, -1.0), Bilinear(U, ap, negL, an, -1.0)


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
def _affine(W: Pair, b: Pair, a: Pair, nonneg: bool) -> Pair:
    """``h = W a + b``: ``W`` ``(out, in)``, ``a`` ``(in, n)`` -> ``(out, n)``. The same
    enclosures as :func:`iv.matmul` (exact end products when an operand is a point or
    ``a >= 0``; midpoint-radius otherwise)."""
    (Wl, Wu), (bl, bu), (al, au) = W, b, a
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
        else:
            ap, an = _pos(al), _neg(al)
            lo = (Wl @ ap).addmm_(Wu, an)
            hi = (Wu @ ap).addmm_(Wl, an)
    elif nonneg:
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


def _backprop(W: Pair, d: Pair, masks: tuple[Tensor, Tensor]) -> Pair:
    """``delta_{l-1} = (W^T delta_l) * [H(hl), H(hu)]`` (paper eqs. 23-26): ``W``
    ``(out, in)``, ``d`` ``(out, n)`` -> ``(in, n)``; ``masks`` = ``(H(hl), H(hu))`` as
    0/1 floats (:func:`_relu_masks`). With ``s`` in ``{0, 1}`` the exact product bounds are
    ``lo = min(lo s_l, lo s_u)``, ``hi = max(hi s_l, hi s_u)`` (:func:`iv.mul_heaviside`)."""
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
    sl, su = masks
    t = hi * sl if hi is not lo else None
    hi_s = torch.mul(hi, su)
    lo_s = torch.mul(lo, su)
    torch.minimum(lo_s, lo.mul_(sl) if lo is not hi else lo * sl, out=lo_s)
    if t is not None:
        torch.maximum(hi_s, t, out=hi_s)
    else:
        torch.maximum(hi_s, hi * sl, out=hi_s)
    return lo_s, hi_s


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


def _deltas(h: Pair, y: Tensor, loss: str, change: LabelChange, n_classes) -> Pair:
    """Loss-gradient bounds at the logits (:func:`.propagate.delta_bounds`), ``(m, n)``."""
    zl = h[0].T
    zu = zl if h[1] is None else h[1].T
    dl, du = delta_bounds(zl, zu, y, loss, change, n_classes)
    return dl.T.contiguous(), du.T.contiguous()


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
    eps = pert.eps if poisoned else 0.0
    XT = X.T.contiguous()
    hsC, inC = _forward(params, (XT, None))
    hsP, inP = (_forward(params, (XT - eps, XT + eps)) if eps > 0 else (hsC, inC))
    shared = inP is inC
    dC = _deltas(hsC[-1], y, loss, LabelChange(), n_classes)
    dP = (_deltas(hsP[-1], y, loss, LabelChange(flip=pert.flips, nu=pert.nu), n_classes)
          if poisoned else None)
    kk = min(k, b)

    lows: list[Tensor] = []
    highs: list[Tensor] = []
    mags: list[Tensor] = []
    for l in range(len(params) - 1, -1, -1):
        Wl, Wu, bl, _ = params[l]
        nonneg = l > 0
        blocks = [inC[l]] + ([None] if bl is not None else [])     # weight, bias
        blocksP = [inP[l]] + ([None] if bl is not None else [])
        blk_lo, blk_hi = [], []
        for a, aP in zip(blocks, blocksP):
            C = product_bounds(dC, a, nonneg)
            if zero:
                lo_, hi_ = _reduce(C, None, None, "none", 0, b, clip)
            elif poisoned:
                D = label_change_bounds(dP, dC, a, nonneg) if (shared and clip is None) else None
                P = None if D is not None else product_bounds(dP, aP, nonneg)
                lo_, hi_ = _reduce(C, P, D, "poisoned", kk, b, clip)
            else:
                lo_, hi_ = _reduce(C, None, None, kind, k, b, clip)
            blk_lo.append(lo_)
            blk_hi.append(hi_)
        lows = blk_lo + lows
        highs = blk_hi + highs
        # ---- magnitude bound sum_i |g_i| (clean and perturbed), for the outward widening
        if not zero:
            dm, am = _absmax(dC), _absmax(inC[l])
            if dP is not None and shared:
                dm = dm + _absmax(dP)   # same inputs: one matmul for both
            mag_blk = [(dm @ am.T).view(-1)] + ([dm.sum(1)] if bl is not None else [])
            if dP is not None and not shared:
                dmP = _absmax(dP)
                mag_blk[0] = mag_blk[0] + (dmP @ _absmax(inP[l]).T).view(-1)
                if bl is not None:
                    mag_blk[1] = mag_blk[1] + dmP.sum(1)
            mags = mag_blk + mags
        # ---- delta of the layer below
        if l > 0:
            masks = _relu_masks(hsC[l - 1])
            dC = _backprop((Wl, Wu), dC, masks)
            if dP is not None:
                if not shared:
                    masks = _relu_masks(hsP[l - 1])
                dP = _backprop((Wl, Wu), dP, masks)
    dl = torch.cat(lows)
    du = torch.cat(highs)
    return dl, du, (torch.cat(mags) if mags else None)


def _reduce(C, P, D, rule: str, k: int, b: int, clip: float | None):
    """The aggregated bounds ``(lo, hi)`` of one block (FORMULATIONS 3.5) from its value
    streams: ``C`` the clean ``(lo, hi)``, ``P`` the perturbed ones, ``D`` the label-change
    differences (:func:`label_change_bounds`); ``rule`` is ``none``, ``poisoned``
    (bounded / label flips; ``k`` already capped at ``b``), ``removal`` or ``substitution``."""
    Cl, Cu = C
    if clip is None and (rule == "none" or D is not None):
        sl, su = Cl.total(), Cu.total()
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


def _relu_masks(h: Pair) -> tuple[Tensor, Tensor]:
    """``(H(h_lo), H(h_hi))``: the bounds of the ReLU derivative ``1[h > 0]`` as 0/1 floats
    (float masks: arithmetic on them is several times faster than on boolean masks)."""
    lo, hi = h
    sl = torch.gt(lo, 0.0, out=torch.empty_like(lo))
    su = sl if hi is None else torch.gt(hi, 0.0, out=torch.empty_like(hi))
    return sl, su


def _absmax(pair: Pair) -> Tensor:
    """``max(|lo|, |hi|)`` of an interval (``= max(hi, -lo)`` as ``lo <= hi``)."""
    lo, hi = pair
    if hi is None or hi is lo:
        return lo.abs()
    return torch.maximum(hi, -lo)
