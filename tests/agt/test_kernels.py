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
    assert kernels.bilinear_topk_sum(A, A, A, A, 2, sign=0.5) is None   # sign is +-1


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


def test_kernel_ties_at_the_threshold_and_large_k(scan):
    """Many values equal to the k-th largest (label-structured rows give exact ties: e.g.
    ``lo(delta) - lo(delta')`` is exactly 1 for every sample of a class), and a k large
    enough that the heap is sorted by qsort."""
    n = 4000
    g = torch.Generator().manual_seed(5)
    A = torch.zeros(3, n, dtype=torch.float64)
    A[0, ::2] = 1.0                                   # 2000 ties, k of them count
    A[1] = torch.randint(0, 4, (n,), generator=g).to(torch.float64)   # ties at each level
    A[2] = torch.randn(n, generator=g, dtype=torch.float64)
    for k in (1, 10, 33, 700):
        got = kernels.bilinear_topk_sum(A, None, None, None, k)
        np.testing.assert_allclose(got, torch_reference(A, None, None, None, k, 1.0),
                                   rtol=1e-14)


@needs_kernel
def test_kernel_scans_give_the_same_bits():
    """The AVX2 and the scalar scan give bit-identical sums (the heap is summed in sorted
    order, and both compute each value with the same operations)."""
    if kernels._topk.use_simd(True) != "avx2":
        pytest.skip("this CPU has no AVX2 scan")
    g = torch.Generator().manual_seed(6)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    A, A2, B, B2, X1, X2 = r(5, 3001), r(5, 3001), r(5, 3001), r(5, 3001), r(4, 3001), r(4, 3001)
    problems = [(A, A2, X1, B, B2, X2, -1.0, 10), (A, None, X1, None, None, None, 1.0, 0),
                (A, A2, None, None, None, None, 1.0, 7)]
    try:
        fast = kernels.row_reduce(problems)
        kernels._topk.use_simd(False)
        slow = kernels.row_reduce(problems)
    finally:
        kernels._topk.use_simd(True)
    for f, s in zip(fast, slow):
        assert torch.equal(f, s)


def _materialise(A, A2, X1, B, B2, X2, sign):
    A = A if A2 is None else A - A2
    if X1 is None:
        return A
    v = A[:, None, :] * X1[None]
    if B is not None:
        v = v + sign * ((B if B2 is None else B - B2)[:, None, :] * X2[None])
    return v.reshape(-1, A.shape[1])


@pytest.mark.parametrize("n_out,n_in", [(9, 2), (2, 11), (9, 9)])  # o-major, j-major order;
# (9, 9): more rows per unit than one group holds
@pytest.mark.parametrize("threads", [1, 3])
def test_row_reduce_equals_torch(scan, monkeypatch, n_out, n_in, threads):
    """Every problem of a batch (top-k sums and plain sums of weight and bias rows sharing
    their arrays, as a layer's aggregation sends them) against torch on the materialised
    values, with the rows split over threads or not."""
    n = 700
    g = torch.Generator().manual_seed(n_out * 10 + n_in)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    cl, pl, cu, pu = (r(n_out, n) for _ in range(4))
    cl[0, :100] = pl[0, :100]          # a zero prefix of the differences
    x1, x2 = r(n_in, n), r(n_in, n)
    problems = [(cl, pl, x1, pu, cu, x2, -1.0, 4), (pu, cu, x1, cl, pl, x2, -1.0, 4),
                (cl, None, x1, cu, None, x2, 1.0, 0), (cl, pl, None, None, None, None, 1.0, 6),
                (pu, None, None, None, None, None, 1.0, 0), (cl, None, x1, None, None, None, 1.0, 3)]
    monkeypatch.setattr(kernels, "PARALLEL_MIN_VALUES", 1)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = kernels.row_reduce(problems)
    finally:
        torch.set_num_threads(old)
    for (A, A2, X1, B, B2, X2, sign, k), out in zip(problems, got):
        v = _materialise(A, A2, X1, B, B2, X2, sign)
        want = v.sum(1) if k == 0 else topk_sum(v, k, dim=1, nonneg=True)
        np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-12)


def test_row_reduce_rows_with_different_supports(scan):
    """Rows reduced together (those of one input ``j``: more inputs than outputs) whose
    coefficients are zero on different stretches (a prefix, a suffix, a middle run,
    everywhere): the common support they are scanned over must take in every row's nonzero
    samples."""
    n = 1000
    g = torch.Generator().manual_seed(8)
    A = torch.randn(6, n, generator=g, dtype=torch.float64)
    A[0, :700] = 0.0
    A[1, 300:] = 0.0
    A[2, 100:900] = 0.0
    A[3] = 0.0
    A[4, :3] = 0.0
    A[4, -5:] = 0.0
    X1 = torch.randn(8, n, generator=g, dtype=torch.float64)
    problems = [(A, None, X1, None, None, None, 1.0, 5), (A, None, X1, None, None, None, 1.0, 0),
                (A, None, None, None, None, None, 1.0, 40)]
    for (a, a2, x1, b, b2, x2, sign, k), out in zip(problems, kernels.row_reduce(problems)):
        v = _materialise(a, a2, x1, b, b2, x2, sign)
        want = v.sum(1) if k == 0 else topk_sum(v, k, dim=1, nonneg=True)
        np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-12)


def _first_layer(seed: int, point_w: bool, point_a: bool, n: int = 517):
    """Random operands of a network's first layer below a 2-output layer: the weight
    interval of the layer above ``(2, 6)``, the clean and perturbed delta bounds there
    ``(2, n)``, the hidden layer's post-activations ``(6, n)`` (some units surely off,
    some exactly 0) and the data ``(3, n)``."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    Wl = r(2, 6)
    W = (Wl, None if point_w else Wl + r(2, 6).abs())
    dl = r(2, n)
    dC = (dl, dl + r(2, n).abs())
    pl = dl + r(2, n)
    dP = (pl, pl + r(2, n).abs())
    hl = r(6, n)
    hl[0] = -hl[0].abs()                       # a unit surely off
    hl[1, :50] = 0.0
    a = (hl.clamp_min(0.0), None if point_a else (hl + r(6, n).abs()).clamp_min(0.0))
    X = r(3, n)
    return W, dC, dP, a, X


@pytest.mark.parametrize("point_w", [False, True])
@pytest.mark.parametrize("point_a", [False, True])
def test_produced_layer_equals_formed_delta_bounds(scan, point_w, point_a):
    """The first layer's aggregation with the delta bounds produced inside the kernel
    (backward pass through the layer above and ReLU derivative, unit by unit) against the
    torch path: the delta bounds formed by ``_backprop`` and the torch gate, then reduced
    by ``_layer_blocks`` on materialised values."""
    from mipcert.agt import passes, stepbounds as sb
    W, dC, dP, a, X = _first_layer(int(point_w) * 2 + int(point_a), point_w, point_a)
    k, b = 7, X.shape[1]
    got = sb._layer_by_kernel(None, None, (X, None), False, True, k, b,
                              produced=passes.producer(W, dC, dP, a))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIPCERT_NO_KERNELS", "1")
        fC, fP = passes.backward_step(W, dC, dP, a)
        want = sb._layer_blocks(fC, fP, (X, None), (X, None), False, True, "poisoned", k, b,
                                None, True, True)
    for g_side, w_side in zip(got, want):
        for g_blk, w_blk in zip(g_side, w_side):
            scale = max(float(w_blk.abs().max()), 1.0)
            np.testing.assert_allclose(g_blk, w_blk, rtol=0, atol=1e-13 * scale)


@needs_kernel
def test_produced_layer_scans_give_the_same_bits_and_nan():
    """Produced delta bounds: the AVX2 and scalar kernels agree bit for bit, and a NaN in the
    layer above's delta bounds gives NaN where the torch path gives it (a NaN times a
    surely-off gate stays NaN there too, so that the divergence check fires)."""
    from mipcert.agt import passes, stepbounds as sb
    if kernels._topk.use_simd(True) != "avx2":
        pytest.skip("this CPU has no AVX2 scan")
    W, dC, dP, a, X = _first_layer(11, False, False, n=1003)
    run = lambda: sb._layer_by_kernel(None, None, (X, None), False, True, 5, 1003,  # noqa: E731
                                      produced=passes.producer(W, dC, dP, a))
    try:
        fast = run()
        kernels._topk.use_simd(False)
        slow = run()
    finally:
        kernels._topk.use_simd(True)
    for f, s in zip(fast[0] + fast[1], slow[0] + slow[1]):
        assert torch.equal(f, s)
    dC[0][1, 40] = math.nan
    got = run()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIPCERT_NO_KERNELS", "1")
        fC, fP = passes.backward_step(W, dC, dP, a)
        want = sb._layer_blocks(fC, fP, (X, None), (X, None), False, True, "poisoned", 5,
                                1003, None, True, True)
    for g_side, w_side in zip(got, want):
        for g_blk, w_blk in zip(g_side, w_side):
            assert torch.equal(g_blk.isnan(), w_blk.isnan()) and g_blk.isnan().any()


@needs_kernel
def test_row_reduce_nan_and_refusals():
    A = torch.ones(2, 50, dtype=torch.float64)
    A[1, 9] = math.nan
    top, total = kernels.row_reduce([(A, None, None, None, None, None, 1.0, 3),
                                     (A, None, None, None, None, None, 1.0, 0)])
    assert top[0] == 3.0 and math.isnan(top[1]) and total[0] == 50.0 and math.isnan(total[1])
    assert kernels.row_reduce([(A.float(), None, None, None, None, None, 1.0, 3)]) is None
    assert kernels.row_reduce([(A, None, torch.ones(3, 49, dtype=torch.float64), None, None,
                                None, 1.0, 3)]) is None
    # a produced layer: its operands' shapes must agree, coefficients must be its rows
    p = kernels.Produced(torch.ones(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64),
                         torch.ones(3, 50, dtype=torch.float64), torch.ones(3, 50, dtype=torch.float64),
                         A.abs().nan_to_num(), None)
    bias = (kernels.CL, kernels.PL, None, None, None, None, 1.0, 3)
    assert kernels.row_reduce([bias], p) is not None
    assert kernels.row_reduce([(A, None, None, None, None, None, 1.0, 3)], p) is None
    bad = kernels.Produced(p.plo, p.phi, torch.ones(2, 50, dtype=torch.float64), p.zp, p.al, None)
    assert kernels.row_reduce([bias], bad) is None


@pytest.mark.parametrize("point", [False, True])
@pytest.mark.parametrize("two", [False, True])
def test_relu_gate_equals_mul_heaviside(scan, point, two):
    """The compiled ReLU gate against :func:`iv.mul_heaviside` with the gates from the
    pre-activations, including units exactly at 0, NaN and infinite delta bounds (which
    must come out as the torch path gives them, so that the divergence check fires)."""
    from mipcert.bounds import interval as iv
    from mipcert.agt.passes import relu_backward_
    g = torch.Generator().manual_seed(int(point) * 2 + int(two))
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    w, n = 7, 301
    hl = r(w, n)
    hu = hl if point else hl + r(w, n).abs()
    hl[0, :20] = 0.0
    hu[0, :10] = 0.0                   # h exactly 0: the derivative is 0 there
    pairs = []
    for _ in range(2 if two else 1):
        lo = r(w, n)
        hi = lo + r(w, n).abs()
        lo[1, 3], hi[2, 4], lo[3, 5] = math.nan, math.nan, -math.inf
        pairs.append((lo, hi))
    a = (hl.clamp_min(0.0), None if point else hu.clamp_min(0.0))
    want = [iv.mul_heaviside(lo, hi, *iv.heaviside(hl, hu)) for lo, hi in pairs]
    torch_path = [(lo.clone(), hi.clone()) for lo, hi in pairs]
    assert kernels.relu_gate_(pairs[0], pairs[1] if two else None, a)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MIPCERT_NO_KERNELS", "1")
        relu_backward_(torch_path[0], torch_path[1] if two else None, a)
    for (lo, hi), (tl, tu), (wl, wu) in zip(pairs, torch_path, want):
        for k, t, w in ((lo, tl, wl), (hi, tu, wu)):
            # NaN exactly where the torch path has NaN (a NaN or an infinity times 0)
            assert torch.equal(k.isnan(), t.isnan())
            assert k.isnan().any()
            # equal to the torch path where finite (that path caps infinities at 1e308)
            fin = k.isfinite()
            assert torch.equal(k[fin], t[fin])
            # and the exact product wherever that is a number
            num = ~w.isnan() & ~k.isnan()
            assert torch.equal(k[num], w[num])
