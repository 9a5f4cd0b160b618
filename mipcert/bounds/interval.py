"""Interval arithmetic primitives in torch (float64, CPU or CUDA, batched over samples).

An interval is a pair ``(lo, hi)`` of tensors of the same shape. A *point* operand may be
passed with ``hi=None`` (then ``lo`` is the exact value), which lets the primitives skip the
radius terms. All results enclose the exact real-valued result; in floating point they are
computed with round-to-nearest, *without* outward rounding, so an end can be off by a few
ulps (callers that need a rigorous enclosure widen by :data:`OUTWARD_REL`).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import InputError

#: relative outward widening a caller may apply to cover float64 rounding (see docs/agt.md)
OUTWARD_REL = 1e-12
#: absolute companion of :data:`OUTWARD_REL` (covers values that round to zero)
OUTWARD_ABS = 1e-300

Tensor = torch.Tensor


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"cpu"``/``"cuda"`` -> a torch device; CUDA without a GPU is an :class:`InputError`."""
    dev = torch.device(device or "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but CUDA is not available "
                         "(no GPU, or a CPU-only torch build): use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r}: use cpu or cuda")
    return dev


def mid_rad(lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
    """Midpoint ``(lo + hi) / 2`` and radius ``(hi - lo) / 2``."""
    return (lo + hi) * 0.5, (hi - lo) * 0.5


def matmul(al: Tensor, au: Optional[Tensor], Bl: Tensor, Bu: Optional[Tensor]):
    """Interval ``A @ B`` by midpoint-radius (Rump; FORMULATIONS 3.5).

    ``A``: ``(..., n, k)``, ``B``: ``(k, m)`` or batched. ``mid = Am Bm``,
    ``rad = |Am| Br + Ar |Bm| + Ar Br``. Exact when either operand is a point; otherwise
    at most 1.5x wider than the tightest interval product.
    """
    if au is None and Bu is None:
        c = al @ Bl
        return c, c
    if au is None:
        Bm, Br = mid_rad(Bl, Bu)
        mid, rad = al @ Bm, al.abs() @ Br
    elif Bu is None:
        Am, Ar = mid_rad(al, au)
        mid, rad = Am @ Bl, Ar @ Bl.abs()
    else:
        Am, Ar = mid_rad(al, au)
        Bm, Br = mid_rad(Bl, Bu)
        mid = Am @ Bm
        rad = Am.abs() @ Br + Ar @ (Bm.abs() + Br)
    return mid - rad, mid + rad


def mul(al: Tensor, au: Optional[Tensor], bl: Tensor, bu: Optional[Tensor]):
    """Exact elementwise interval product (min / max of the end products, broadcasting)."""
    if au is None and bu is None:
        c = al * bl
        return c, c
    if au is None:
        p, q = al * bl, al * bu
        return torch.minimum(p, q), torch.maximum(p, q)
    if bu is None:
        p, q = al * bl, au * bl
        return torch.minimum(p, q), torch.maximum(p, q)
    p1, p2, p3, p4 = al * bl, al * bu, au * bl, au * bu
    lo = torch.minimum(torch.minimum(p1, p2), torch.minimum(p3, p4))
    hi = torch.maximum(torch.maximum(p1, p2), torch.maximum(p3, p4))
    return lo, hi


def outer(dl: Tensor, du: Tensor, al: Tensor, au: Optional[Tensor], nonneg: bool = False):
    """Per-sample outer product ``d a^T``: ``d`` ``(n, o)``, ``a`` ``(n, i)`` -> ``(n, o, i)``.

    Exact in real arithmetic. ``a`` a point: midpoint-radius (``dm a +- dr |a|``);
    ``a >= 0`` (``nonneg``, e.g. after a ReLU): ``lo = dl+ al - dl- au``,
    ``hi = du+ au - du- al``; otherwise the four end products (:func:`mul`).
    """
    d3l, d3u = dl.unsqueeze(2), du.unsqueeze(2)
    if au is None:
        a3 = al.unsqueeze(1)
        if dl is du:
            c = d3l * a3
            return c, c
        dm, dr = mid_rad(d3l, d3u)
        mid, rad = dm * a3, dr * a3.abs()
        return mid - rad, mid + rad
    al3, au3 = al.unsqueeze(1), au.unsqueeze(1)
    if nonneg:
        lo = d3l.clamp_min(0.0) * al3 + d3l.clamp_max(0.0) * au3
        hi = d3u.clamp_min(0.0) * au3 + d3u.clamp_max(0.0) * al3
        return lo, hi
    return mul(d3l, d3u, al3, au3)


def relu(lo: Tensor, hi: Tensor):
    """``relu`` is monotone: ``[relu(lo), relu(hi)]``."""
    return lo.clamp_min(0.0), hi.clamp_min(0.0)


def heaviside(lo: Tensor, hi: Tensor):
    """Bounds of the ReLU derivative ``1[h > 0]`` over ``h in [lo, hi]``: ``[1[lo>0], 1[hi>0]]``."""
    return (lo > 0).to(lo.dtype), (hi > 0).to(hi.dtype)


def mul_heaviside(dl: Tensor, du: Tensor, sl: Tensor, su: Tensor):
    """``d * s`` with ``s`` in ``[sl, su]`` subset of {0, 1} (exact).

    ``su = 0``: 0; ``sl = 1``: ``d``; otherwise the hull of 0 and ``[dl, du]``.
    """
    lo = torch.where(sl > 0, dl, torch.where(su > 0, dl.clamp_max(0.0), torch.zeros_like(dl)))
    hi = torch.where(sl > 0, du, torch.where(su > 0, du.clamp_min(0.0), torch.zeros_like(du)))
    return lo, hi


def clip(lo: Tensor, hi: Tensor, gamma: float | None):
    """Elementwise ``clip(., -gamma, gamma)`` is monotone: clip both ends."""
    if gamma is None:
        return lo, hi
    return lo.clamp(-gamma, gamma), hi.clamp(-gamma, gamma)


def sigmoid(lo: Tensor, hi: Tensor):
    """The logistic function is monotone."""
    return torch.sigmoid(lo), torch.sigmoid(hi)


def softmax(zl: Tensor, zu: Tensor):
    """Sound softmax bounds over ``z in [zl, zu]`` (``(n, C)`` each; paper appendix A):

    ``p_j >= 1 / (1 + sum_{i != j} exp(zu_i - zl_j))``,
    ``p_j <= 1 / (1 + sum_{i != j} exp(zl_i - zu_j))``,
    evaluated as ``exp(-logsumexp)`` so large logit gaps neither overflow nor give NaN.
    """
    C = zl.shape[-1]
    eye = torch.eye(C, dtype=torch.bool, device=zl.device)
    # t[..., j, i] = zu_i - zl_j (i != j), 0 on the diagonal
    t_lo = (zu.unsqueeze(-2) - zl.unsqueeze(-1)).masked_fill(eye, 0.0)
    t_hi = (zl.unsqueeze(-2) - zu.unsqueeze(-1)).masked_fill(eye, 0.0)
    return torch.exp(-torch.logsumexp(t_lo, dim=-1)), torch.exp(-torch.logsumexp(t_hi, dim=-1))


def widen(lo: Tensor, hi: Tensor, rel: float = OUTWARD_REL, scale: Tensor | None = None):
    """Outward widening by ``rel * (|lo| + |hi| + scale)`` plus :data:`OUTWARD_ABS`."""
    if rel < 0:
        raise InputError("an outward widening must be >= 0")
    w = rel * (lo.abs() + hi.abs() + (scale if scale is not None else 0.0)) + OUTWARD_ABS
    return lo - w, hi + w
