"""The compiled top-k kernel (:mod:`mipcert.agt.kernels`) against torch on the same values:
materialise ``v = A X1 + sign B X2`` per row and take the ``k`` largest of ``max(0, v)``
with ``torch.topk``. Both scans of the kernel (AVX2 and scalar) are checked."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mipcert.agt import kernels
from mipcert.agt.aggregate import topk_sum
from mipcert.agt.interval_agt import interval_agt

from .helpers import build, small_doc

needs_kernel = pytest.mark.skipif(not kernels.available(),
                                  reason="the C kernel is not built in this install")


def torch_reference(A, X1, B, X2, k, sign, A2=None, B2=None):
    A = A if A2 is None else A - A2
    B = B if B2 is None else B - B2
    if X1 is None:
        v = A
    else:
        v = A[:, None, :] * X1[None]
        if B is not None:
            v = v + sign * (B[:, None, :] * X2[None])
        v = v.reshape(-1, A.shape[1])
    return topk_sum(v, k, dim=1, nonneg=True)


@pytest.fixture(params=["avx2", "scalar"])
def scan(request):
    if not kernels.available():
        pytest.skip("the C kernel is not built in this install")
    got = kernels._topk.use_simd(request.param == "avx2")
    if got != request.param:
        pytest.skip(f"this CPU has no {request.param} scan")
    yield got
    kernels._topk.use_simd(True)


@pytest.mark.parametrize("n", [1, 5, 8, 17, 64, 333])
@pytest.mark.parametrize("k", [1, 3, 10, 400])
@pytest.mark.parametrize("form", ["bias", "one", "two+", "two-", "diff-bias", "diff-two-"])
def test_kernel_equals_torch_topk(scan, n, k, form):
    g = torch.Generator().manual_seed(n * 1000 + k)
    n_out, n_in = 3, 4
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    A, X1 = r(n_out, n), r(n_in, n)
    B, X2, sign = (r(n_out, n), r(n_in, n), -1.0 if form.endswith("two-") else 1.0)
    A2 = B2 = None
    if form.endswith("bias"):
        X1, B, X2, n_in = None, None, None, 1
    elif form == "one":
        B = X2 = None
    if form.startswith("diff"):   # coefficients given as differences A - A2, B - B2
        A2 = A - r(n_out, n)
        B2 = None if B is None else B - r(n_out, n)
    for C, C2 in ((A, A2), (B, B2)):   # a zero prefix / suffix of the coefficients
        if C is not None:
            C[0, : n // 3] = 0.0 if C2 is None else C2[0, : n // 3]
            C[1, n - n // 4:] = 0.0 if C2 is None else C2[1, n - n // 4:]
    got = kernels.bilinear_topk_sum(A, X1, B, X2, k, sign, A2, B2)
    want = torch_reference(A, X1, B, X2, k, sign, A2, B2)
    assert got.shape == (n_out * n_in,)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


def test_kernel_ties_and_all_nonpositive(scan):
    A = torch.tensor([[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 0.5, 1.0, 1.0, 1.0],
                      [-1.0] * 10, [0.0] * 10], dtype=torch.float64)
    got = kernels.bilinear_topk_sum(A, None, None, None, 3)
    assert got.tolist() == [5.0, 0.0, 0.0]


def test_kernel_sorted_rows_and_large_n(scan):
    """Increasing rows (every value enters the heap) and a long row."""
    n = 5000
    A = torch.linspace(-1.0, 3.0, n, dtype=torch.float64)[None].repeat(2, 1).contiguous()
    A[1] = A[1].flip(0)
    X1 = torch.rand(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = kernels.bilinear_topk_sum(A, X1, None, None, 25)
    np.testing.assert_allclose(got, torch_reference(A, X1, None, None, 25, 1.0), rtol=1e-14)


def test_kernel_nan_gives_nan(scan):
    A = torch.ones(2, 20, dtype=torch.float64)
    A[1, 7] = math.nan
    got = kernels.bilinear_topk_sum(A, None, None, None, 4)
    assert got[0] == 4.0 and math.isnan(got[1])
    A = torch.ones(1, 20, dtype=torch.float64)
    A[0, 3] = math.inf
    assert kernels.bilinear_topk_sum(A, None, None, None, 4)[0] == math.inf


@needs_kernel
def test_kernel_declines_what_it_cannot_take():
    A = torch.ones(2, 10, dtype=torch.float64)
    assert kernels.bilinear_topk_sum(A.float(), None, None, None, 2) is None
    assert kernels.bilinear_topk_sum(A.T.contiguous().T, None, None, None, 2) is None
    assert kernels.bilinear_topk_sum(A, torch.ones(3, 9, dtype=torch.float64), None, None,
                                     2) is None
    assert kernels.bilinear_topk_sum(A, None, None, None, 0) is None


@needs_kernel
def test_kernel_threads_split_rows(monkeypatch):
    """The row split across threads gives the single-thread answer."""
    g = torch.Generator().manual_seed(3)
    A, X1 = (torch.randn(7, 4000, generator=g, dtype=torch.float64),
             torch.randn(50, 4000, generator=g, dtype=torch.float64))
    one = kernels.bilinear_topk_sum(A, X1, None, None, 5)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_VALUES", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        many = kernels.bilinear_topk_sum(A, X1, None, None, 5)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, many)


@needs_kernel
@pytest.mark.parametrize("loss,hidden", [("cross_entropy", (6,)), ("bce", (5, 3)),
                                         ("hinge", ())])
def test_agt_with_and_without_kernel(monkeypatch, loss, hidden):
    """The whole run gives the same box with the kernel and with the torch path."""
    inst, data, run = build(small_doc(loss=loss, kind="label_flip", k=3, hidden=hidden))
    fast = interval_agt(run, inst.perturbation)
    monkeypatch.setenv("MIPCERT_NO_KERNELS", "1")
    slow = interval_agt(run, inst.perturbation)
    scale = max(np.abs(slow.lower).max(), np.abs(slow.upper).max(), 1.0)
    np.testing.assert_allclose(fast.lower, slow.lower, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(fast.upper, slow.upper, rtol=0, atol=1e-12 * scale)
