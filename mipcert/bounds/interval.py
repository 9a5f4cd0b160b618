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

_MALLOC_TUNED: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (``M_MMAP_THRESHOLD`` and
    ``M_TRIM_THRESHOLD`` raised to 256 MiB) instead of returning every multi-MiB tensor to the
    kernel and faulting it back in on the next allocation.

    Interval AGT allocates several ``(P, n)`` temporaries per step; with glibc's defaults each
    one can cost thousands of page faults (measured: ~96 000 minor faults for the 4 steps
    of ``agt_moons_mlp``, about 2/3 of its run time on a 2-core VM). This changes no result,
    only when the process returns memory to the system; it is process-wide, done once, and
    skipped off glibc or with ``MIPCERT_NO_MALLOPT=1``. Returns True when it is in effect."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED is not None:
        return _MALLOC_TUNED
    _MALLOC_TUNED = False
    import os
    import sys
    if os.environ.get("MIPCERT_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        size = 256 << 20
        ok = libc.mallopt(M_MMAP_THRESHOLD, size) or libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        ok = ok and libc.mallopt(M_TRIM_THRESHOLD, size)
        _MALLOC_TUNED = bool(ok)
    except (OSError, AttributeError):
        pass
    return _MALLOC_TUNED


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


def matmul(al: Tensor, au: Optional[Tensor], Bl: Tensor, Bu: Optional[Tensor],
           nonneg: bool = False):
    """Interval ``A @ B`` by midpoint-radius (Rump; FORMULATIONS 3.5).

    ``A``: ``(..., n, k)``, ``B``: ``(k, m)`` or batched. ``mid = Am Bm``,
    ``rad = |Am| Br + Ar |Bm| + Ar Br``. Exact when either operand is a point; otherwise
    at most 1.5x wider than the tightest interval product. ``nonneg=True`` promises
    ``A >= 0`` (e.g. after a ReLU): then both operands being intervals, the exact interval
    product is used instead, ``lo = Al Bl+ + Au Bl-``, ``hi = Au Bu+ + Al Bu-`` (the end
    products of each ``a b`` with ``a >= 0``), which is tighter and takes two matmuls a side.

    Implementation: the halving is moved onto ``B`` (``Am Bm = (al + au)(Bm / 2)``, exact
    scaling by a power of two), so ``A`` is touched by two or three elementwise passes; when
    the inner dimension is narrow (``2k <= m``, e.g. the backward pass through a 2-unit
    output layer) ``[lo | hi]`` is one matmul of ``[Am, |Am|, Ar]`` against the stacked
    ``B`` terms, which saves the ``(n, m)`` passes of ``mid -+ rad`` (the two ends are then
    column views of one ``(n, 2m)`` result).
    """
    if au is None and Bu is None:
        c = al @ Bl
        return c, c
    narrow = al.dim() == 2 and Bl.dim() == 2 and 2 * al.shape[-1] <= Bl.shape[-1]
    m = Bl.shape[-1]
    if au is None:
        Bm, Br = mid_rad(Bl, Bu)
        aa = al if nonneg else al.abs()
        if narrow:  # [lo | hi] = [a, |a|] @ [[Bm, Bm], [-Br, Br]]: one matmul, no passes
            out = torch.cat([al, aa], 1) @ torch.cat([torch.cat([Bm, Bm], 1),
                                                      torch.cat([-Br, Br], 1)], 0)
            return out[:, :m], out[:, m:]
        mid, rad = al @ Bm, aa @ Br
    elif Bu is None:
        Am2, Ar2 = al + au, au - al
        mid, rad = Am2 @ (Bl * 0.5), Ar2 @ (Bl.abs() * 0.5)
    elif nonneg:
        lo = al @ Bl.clamp_min(0.0) + au @ Bl.clamp_max(0.0)
        hi = au @ Bu.clamp_min(0.0) + al @ Bu.clamp_max(0.0)
        return lo, hi
    else:
        Am2, Ar2 = al + au, au - al            # twice the midpoint and the radius of A
        Bm, Br = mid_rad(Bl, Bu)
        Am2a = Am2.abs()
        C = (Bm.abs() + Br) * 0.5
        Bh = Br * 0.5
        if narrow:  # [lo | hi] = [Am2, |Am2|, Ar2] @ [[Bm/2, Bm/2], [-Br/2, Br/2], [-C, C]]
            Bh2 = Bm * 0.5
            out = torch.cat([Am2, Am2a, Ar2], 1) @ torch.cat(
                [torch.cat([Bh2, Bh2], 1), torch.cat([-Bh, Bh], 1), torch.cat([-C, C], 1)], 0)
            return out[:, :m], out[:, m:]
        mid = Am2 @ (Bm * 0.5)
        rad = Am2a @ Bh + Ar2 @ C
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
    on, maybe = sl > 0, su > 0
    lo = torch.where(on, dl, dl.clamp_max(0.0))
    hi = torch.where(on, du, du.clamp_min(0.0))
    return lo.masked_fill_(~maybe, 0.0), hi.masked_fill_(~maybe, 0.0)


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
