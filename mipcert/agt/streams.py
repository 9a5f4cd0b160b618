"""Per-sample value streams of interval AGT's weight and bias blocks, unit-major.

The per-sample bounds of a block ``dW = delta a^T`` (``delta`` ``(out, n)``, ``a``
``(in, n)``) that the aggregation rules need are produced here as *streams*: objects that
give their sums over the samples (matmuls), their top-k sums (the compiled kernel of
:mod:`.kernels` or ``torch.topk``) or their values chunk by chunk, without the ``(out * in,
n)`` array ever being stored whole. :mod:`.stepbounds` drives them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..bounds import interval as iv
from . import kernels
from .aggregate import topk_sum

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
        return v.reshape(-1, n)   # a view unless the batch of one left odd strides

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
