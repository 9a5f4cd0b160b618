"""The fused step (:mod:`mipcert.agt.stepbounds`) equals the materialising reference path
(per-sample bounds of FORMULATIONS 3.5 + the aggregation rules as written) for every loss,
perturbation kind, depth, clipping and ``eps``; and the interval primitives it relies on
enclose sampled point products."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mipcert.agt.interval_agt import interval_agt
from mipcert.bounds import interval as iv

from .helpers import build, small_doc

CASES = []
for loss in ("hinge", "bce", "cross_entropy", "squared"):
    for kind in ("bounded", "label_flip", "removal", "substitution"):
        if loss == "squared" and kind == "label_flip":
            continue
        for hidden in ((), (5,), (4, 3)):
            for eps in ((0.0, 0.05) if kind == "bounded" else (0.0,)):
                for clip in ((0.5,) if kind == "substitution" else (None, 0.5)):
                    CASES.append((loss, kind, hidden, eps, clip))


@pytest.mark.parametrize("loss,kind,hidden,eps,clip", CASES)
def test_fused_step_equals_reference(loss, kind, hidden, eps, clip):
    kw = dict(loss=loss, kind=kind, k=2, hidden=hidden, lr=0.3 if loss == "squared" else 0.5,
              clip=clip)
    if kind == "bounded":
        kw.update(eps=eps, nu=0.1 if loss == "squared" else 0.0, flips=loss != "squared")
    inst, data, run = build(small_doc(**kw))
    fast = interval_agt(run, inst.perturbation)
    ref = interval_agt(run, inst.perturbation, reference=True)
    scale = max(np.abs(ref.lower).max(), np.abs(ref.upper).max(), 1.0)
    np.testing.assert_allclose(fast.lower, ref.lower, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(fast.upper, ref.upper, rtol=0, atol=1e-12 * scale)
    # and the fused box is itself a box around the nominal run
    theta = run.train()
    assert np.all(fast.lower <= theta) and np.all(theta <= fast.upper)


@pytest.mark.parametrize("nonneg", [False, True])
@pytest.mark.parametrize("shape", [(7, 3, 11), (9, 12, 2)])
def test_interval_matmul_encloses_samples(shape, nonneg):
    n, k, m = shape
    g = torch.Generator().manual_seed(n * k + m)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    al = r(n, k).abs() if nonneg else r(n, k)
    au = al + r(n, k).abs()
    Bl = r(k, m)
    Bu = Bl + r(k, m).abs()
    for A_hi, B_hi in ((au, Bu), (None, Bu), (au, None)):
        lo, hi = iv.matmul(al, A_hi, Bl, B_hi, nonneg=nonneg)
        for _ in range(50):
            A = al if A_hi is None else al + torch.rand(n, k, generator=g,
                                                        dtype=torch.float64) * (A_hi - al)
            B = Bl if B_hi is None else Bl + torch.rand(k, m, generator=g,
                                                        dtype=torch.float64) * (B_hi - Bl)
            C = A @ B
            assert torch.all(lo <= C + 1e-12) and torch.all(C <= hi + 1e-12)


def test_mul_heaviside_matches_definition():
    d_lo = torch.tensor([-2.0, -1.0, 0.5, -3.0, 1.0, -1.0])
    d_hi = torch.tensor([1.0, 2.0, 1.5, -1.0, 2.0, 3.0])
    s_lo = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    s_hi = torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    lo, hi = iv.mul_heaviside(d_lo, d_hi, s_lo, s_hi)
    for i in range(6):
        vals = [d * s for d in (d_lo[i], d_hi[i]) for s in (s_lo[i], s_hi[i])]
        assert lo[i] == min(vals) and hi[i] == max(vals)


@pytest.mark.parametrize("chunk", [1, 20, 40, 100])
@pytest.mark.parametrize("loss,hidden", [("cross_entropy", (6,)), ("bce", (5, 3)), ("hinge", ())])
def test_chunked_topk_equals_reference(monkeypatch, chunk, loss, hidden):
    """Tiny chunks (several per weight block, split along both the output and the input
    units) give the reference box."""
    from mipcert.agt import streams
    monkeypatch.setattr(streams, "CHUNK_ELEMENTS", chunk)
    inst, data, run = build(small_doc(loss=loss, kind="label_flip", k=3, hidden=hidden))
    fast = interval_agt(run, inst.perturbation)
    ref = interval_agt(run, inst.perturbation, reference=True)
    scale = max(np.abs(ref.lower).max(), np.abs(ref.upper).max(), 1.0)
    np.testing.assert_allclose(fast.lower, ref.lower, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(fast.upper, ref.upper, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("loss,hidden", [("cross_entropy", (6,)), ("bce", (5, 3)),
                                         ("hinge", ())])
def test_kernel_layer_with_clean_sums_in_the_kernel(monkeypatch, loss, hidden):
    """Where the stacked clean-sum matmuls do not apply (an input wider than the layer),
    the per-layer kernel call computes the clean sums itself: same box as the reference."""
    from mipcert.agt import stepbounds
    inst, data, run = build(small_doc(loss=loss, kind="label_flip", k=3, hidden=hidden))
    ref = interval_agt(run, inst.perturbation, reference=True)
    monkeypatch.setattr(stepbounds, "_clean_sums", lambda *a, **kw: None)
    fast = interval_agt(run, inst.perturbation)
    scale = max(np.abs(ref.lower).max(), np.abs(ref.upper).max(), 1.0)
    np.testing.assert_allclose(fast.lower, ref.lower, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(fast.upper, ref.upper, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("loss,n_out,y", [("cross_entropy", 3, [0.0, 2.0]),
                                          ("hinge", 1, [1.0, -1.0]),
                                          ("squared", 1, [0.3, -0.2])])
def test_batch_of_one_under_feature_poisoning(loss, n_out, y):
    """A batch of one sample under bounded feature poisoning made the fused path's bilinear
    rows non-contiguous and ``view`` raised for cross-entropy (found by fuzzing). The fused
    path must give the reference path's box."""
    from mipcert.agt.instance import PerturbationConfig
    from mipcert.agt.interval_agt import interval_agt
    from mipcert.agt.run import TrainingRun, make_layers

    layers = make_layers(2, [], n_out, False)
    run = TrainingRun(layers=layers, theta0=np.linspace(-0.5, 0.5, layers[0].size),
                      X=np.array([[1.0, -0.5], [0.3, 2.0]]), y=np.array(y),
                      batches=[np.array([0])], lrs=np.array([0.5]), loss=loss,
                      n_classes=None if loss == "squared" else max(2, n_out))
    pert = PerturbationConfig(kind="bounded", k=1, eps=0.1)
    ref, fused = interval_agt(run, pert, reference=True), interval_agt(run, pert)
    np.testing.assert_allclose(fused.lower, ref.lower, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fused.upper, ref.upper, rtol=1e-9, atol=1e-12)
