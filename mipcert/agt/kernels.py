"""Optional compiled kernels for interval AGT on the CPU (C, ``_topk.c``).

* :func:`bilinear_topk_sum`: for every row ``(o, j)`` of a weight block, the sum of the ``k``
  largest of ``max(0, (A - A2)[o, i] X1[j, i] +- (B - B2)[o, i] X2[j, i])`` over the samples
  ``i`` (see :class:`mipcert.agt.streams.Bilinear`), without storing the
  ``(rows, n)`` values that the torch path builds and hands to ``torch.topk``.
* :func:`row_reduce`: several such reductions (top-k sums or plain sums) of one layer in one
  call, the rows that share arrays together, so that each array is read from memory once
  (:func:`bilinear_topk_sum` is one problem of it); with a :class:`Produced` layer it also
  computes the layer's delta bounds itself, unit by unit, in the cache.
* :func:`relu_gate_`: the ReLU derivative applied to delta bounds in place, in one pass.

They are built at install time when a C compiler is present (``setup.py`` marks the
extension optional), with OpenMP where the compiler has it: a call then runs on torch's own
OpenMP threads (:func:`_threads`). Without them, or on CUDA, or with ``MIPCERT_NO_KERNELS=1`` in the
environment, the functions return None / False and callers use the torch path, which gives
the same numbers up to rounding (``tests/agt/test_kernels.py`` compares the two).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

try:  # built by setup.py when a C compiler is available
    from . import _topk
except ImportError:  # pragma: no cover - depends on the install
    _topk = None

Tensor = torch.Tensor

#: below this many values touched a call runs on one thread
PARALLEL_MIN_VALUES = 1 << 16


def available() -> bool:
    """True when the compiled kernel is built and not turned off."""
    return _topk is not None and not os.environ.get("MIPCERT_NO_KERNELS")


def describe() -> str:
    """``"avx2"`` / ``"scalar"`` (the compiled scan in use) or ``"torch"`` (no kernel)."""
    return _topk.simd() if available() else "torch"


def _ok(t: Optional[Tensor], rows: int, n: int) -> bool:
    return t is None or (t.dtype == torch.float64 and t.device.type == "cpu"
                         and t.is_contiguous() and tuple(t.shape) == (rows, n))


def bilinear_topk_sum(A: Tensor, X1: Optional[Tensor], B: Optional[Tensor],
                      X2: Optional[Tensor], k: int, sign: float = 1.0,
                      A2: Optional[Tensor] = None, B2: Optional[Tensor] = None
                      ) -> Optional[Tensor]:
    """Per row ``(o, j)``: the sum of the ``k`` largest of ``max(0, v_i)``,
    ``v_i = (A - A2)[o, i] X1[j, i] + sign (B - B2)[o, i] X2[j, i]`` (``A2``/``B2`` None:
    zero; ``B``/``X2`` None: the first term only; ``X1`` None too: ``v_i = (A - A2)[o, i]``),
    as ``(out * in,)``: :func:`row_reduce` with one problem. None when the kernel cannot run
    here (not built, turned off, not float64 CPU tensors, ``sign`` not +-1), so the caller
    falls back."""
    if k <= 0:
        return None
    out = row_reduce([(A, A2, X1, B, B2, X2, sign, k)])
    return None if out is None else out[0]


#: one problem of :func:`row_reduce`: ``(A, A2, X1, B, B2, X2, sign, k)`` as in
#: :func:`bilinear_topk_sum`; ``k = 0`` asks for the plain sum of ``v`` over the samples
Problem = tuple

#: with a :class:`Produced` layer, the coefficients ``A, A2, B, B2`` of a problem name the
#: produced rows of each unit ``o``: its clean bounds ``(CL, CU)`` and perturbed ``(PL, PU)``
CL, CU, PL, PU = 1, 2, 3, 4


@dataclass
class Produced:
    """Delta bounds that :func:`row_reduce` computes unit by unit instead of reading them:
    for unit ``o``, the backward pass through the layer above, ``lo = plo[o] @ z``,
    ``hi = phi[o] @ z`` (``z = zc`` for the clean bounds ``(CL, CU)``, ``z = zp`` for the
    perturbed ones ``(PL, PU)``), then the ReLU derivative given by the unit's
    post-activation bounds ``(al[o], au[o])`` (as :func:`relu_gate_`). ``plo``, ``phi``
    ``(out, K)``; ``zc``, ``zp`` ``(K, n)``; ``al``, ``au`` ``(out, n)`` (``au`` None: a
    point). The rows of a unit live in the cache while its reductions run, so the layer's
    ``(out, n)`` delta bounds are never written to memory."""

    plo: Tensor
    phi: Tensor
    zc: Tensor
    zp: Tensor
    al: Tensor
    au: Optional[Tensor]


def row_reduce(problems: Sequence[Problem], produced: Optional[Produced] = None
               ) -> Optional[list[Tensor]]:
    """Several row reductions of bilinear values over blocks with the same ``(out, n)``
    coefficient shape, in one pass: for problem ``(A, A2, X1, B, B2, X2, sign, k)`` and each
    row ``(o, j)``, the sum of the ``k`` largest of ``max(0, v_i)`` (``k > 0``) or the sum
    of ``v_i`` (``k = 0``), ``v_i`` as in :func:`bilinear_topk_sum`; one ``(out * in,)``
    tensor per problem. The rows that share arrays (those of one unit ``o``, or of one input
    ``j`` when the block has more inputs than outputs) are reduced together, block of
    samples by block, so that each array is read from memory once. With ``produced``, the
    coefficients are :data:`CL` .. :data:`PU` (see :class:`Produced`). None when the kernel
    cannot run here."""
    if not available() or not problems:
        return None
    if produced is not None:
        n_out, n = produced.al.shape
        K = produced.plo.shape[1]
        if not (_ok(produced.plo, n_out, K) and _ok(produced.phi, n_out, K)
                and _ok(produced.zc, K, n) and _ok(produced.zp, K, n)
                and _ok(produced.al, n_out, n) and _ok(produced.au, n_out, n)):
            return None
    else:
        n_out, n = problems[0][0].shape
    outs, desc = [], []
    for A, A2, X1, B, B2, X2, sign, k in problems:
        n_in = 1 if X1 is None else X1.shape[0]
        coefs = (A, A2, B, B2)
        if produced is not None:
            good = all(c is None or (type(c) is int and c in (CL, CU, PL, PU)) for c in coefs)
        else:
            good = all(_ok(t, n_out, n) for t in coefs)
        if not (good and A is not None and _ok(X1, n_in, n) and _ok(X2, n_in, n) and k >= 0
                and (B is None) == (X2 is None) and (X1 is not None or B is None)
                and (B2 is None or B is not None) and sign in (1.0, -1.0)):
            return None
        ptrs = [0 if c is None else (c if produced is not None else c.data_ptr())
                for c in coefs]
        out = torch.empty((n_out, n_in), dtype=torch.float64)
        outs.append(out)
        a, a2, b, b2 = ptrs
        desc.append(struct.pack("=7Q2qd", a, a2, 0 if X1 is None else X1.data_ptr(), b, b2,
                                0 if X2 is None else X2.data_ptr(), out.data_ptr(),
                                n_in, int(k), float(sign)))
    prod = None
    if produced is not None:
        p = produced
        prod = struct.pack("=6Qq", p.plo.data_ptr(), p.phi.data_ptr(), p.zc.data_ptr(),
                           p.zp.data_ptr(), p.al.data_ptr(),
                           0 if p.au is None else p.au.data_ptr(), K)
    n_in = max(o.shape[1] for o in outs)
    j_outer = n_in > n_out and produced is None
    work = sum(o.numel() for o in outs) * n
    _topk.row_reduce(b"".join(desc), n_out, n, j_outer, _threads(work), prod)
    return [o.view(-1) for o in outs]


def relu_gate_(d: tuple[Tensor, Tensor], d2: Optional[tuple[Tensor, Tensor]],
               a: tuple[Tensor, Optional[Tensor]]) -> bool:
    """Multiply the delta bounds ``d = (lo, hi)`` (and ``d2``, with the same gates) in place
    by the ReLU derivative ``s in [1[al > 0], 1[au > 0]]``, where ``(al, au)`` are the
    layer's post-activation bounds (``au`` None: a point), all ``(width, n)``: a surely-on
    unit keeps ``[lo, hi]``, an unstable one gets ``[min(lo, 0), max(hi, 0)]``, a surely-off
    one ``[0, 0]`` (:func:`mipcert.bounds.interval.mul_heaviside`), NaN kept. One pass;
    False (nothing done) when the kernel cannot run here."""
    if not available():
        return False
    al, au = a
    shape = tuple(al.shape)
    pairs = [d] + ([d2] if d2 is not None else [])
    tensors = [t for p in pairs for t in p] + [al, au]
    if not all(_ok(t, *shape) for t in tensors) or len(shape) != 2:
        return False
    if any(p[0].data_ptr() == p[1].data_ptr() for p in pairs):
        return False   # lo and hi must be distinct arrays
    ptr = [t.data_ptr() for t in d] + ([t.data_ptr() for t in d2] if d2 else [0, 0])
    ptr += [al.data_ptr(), 0 if au is None else au.data_ptr()]
    size = shape[0] * shape[1]
    _topk.relu_gate(*ptr, size, _threads(size * 4 * len(pairs)))
    return True


def _threads(work: int) -> int:
    """Threads for a call touching ``work`` values: torch's intra-op thread count, or one
    for small calls. The kernel's OpenMP runtime is torch's own (``libgomp.so.1`` is loaded
    once), so a call runs on the thread team that torch's operations use."""
    return torch.get_num_threads() if work >= PARALLEL_MIN_VALUES else 1
