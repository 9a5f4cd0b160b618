"""Optional compiled kernel for interval AGT on the CPU: top-k sums of bilinear values.

:func:`bilinear_topk_sum` computes, for every row ``(o, j)`` of a weight block, the sum of
the ``k`` largest of ``max(0, (A - A2)[o, i] X1[j, i] +- (B - B2)[o, i] X2[j, i])`` over the samples ``i``
(see :class:`mipcert.agt.stepbounds.Bilinear`) in one pass, without storing the ``(rows, n)``
values that the torch path builds and hands to ``torch.topk``. It is C (``_topk.c``), built at
install time when a C compiler is present (``setup.py`` marks the extension optional).

Without it, or on CUDA, or with ``MIPCERT_NO_KERNELS=1`` in the environment, the function
returns None and callers use the torch path, which gives the same numbers (up to the
rounding of a sum of ``k`` terms; ``tests/agt/test_kernels.py`` compares the two).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import torch

try:  # built by setup.py when a C compiler is available
    from . import _topk
except ImportError:  # pragma: no cover - depends on the install
    _topk = None

Tensor = torch.Tensor

#: below this many values a call runs on one thread (thread hand-off costs ~0.1 ms)
PARALLEL_MIN_VALUES = 1 << 18

_pool: ThreadPoolExecutor | None = None


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
    as ``(out * in,)``; None when the kernel cannot run here (not built, turned off, not
    float64 CPU tensors), so the caller falls back."""
    if not available() or k <= 0:
        return None
    n_out, n = A.shape
    n_in = 1 if X1 is None else X1.shape[0]
    if not (all(_ok(t, n_out, n) for t in (A, A2, B, B2))
            and _ok(X1, n_in, n) and _ok(X2, n_in, n)
            and (B is None) == (X2 is None) and (X1 is not None or B is None)
            and (B2 is None or B is not None)):
        return None
    out = torch.empty((n_out, n_in), dtype=torch.float64)
    ptr = [0 if t is None else t.data_ptr() for t in (A, A2, X1, B, B2, X2)]

    def run(o0: int, o1: int) -> None:
        _topk.bilinear_topk_sum(*ptr, float(sign), out.data_ptr(), n_out, n_in, n, int(k),
                                o0, o1)

    threads = min(torch.get_num_threads(), n_out)
    if threads <= 1 or n_out * n_in * n < PARALLEL_MIN_VALUES:
        run(0, n_out)
    else:
        global _pool
        if _pool is None or _pool._max_workers < threads:
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mipcert-topk")
        cuts = [n_out * t // threads for t in range(threads + 1)]
        # the operands stay referenced by this frame until every part has finished
        for f in [_pool.submit(run, a, b) for a, b in zip(cuts, cuts[1:]) if b > a]:
            f.result()
    return out.view(-1)
