"""Bound propagation in numpy (the default, no torch import) and in torch agree, and both
enclose sampled pre-activations."""
import numpy as np
import pytest

from mipcert.bounds import batch_pre_bounds, clause_margin_bounds, compute_bounds, to_numpy
from mipcert.network import mlp
from mipcert.spec import Clause, Region

pytest.importorskip("torch")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["ibp", "crown", "lp"])
def test_numpy_and_torch_bounds_agree_and_enclose_samples(seed, method):
    rng = np.random.default_rng(seed)
    sizes = [3, 12, 9, 4]
    net = mlp([rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])],
              [rng.normal(size=o) * 0.3 for o in sizes[1:]])
    lo = rng.uniform(-1, 0, 3)
    hi = lo + rng.uniform(0.1, 1.0, 3)
    b_np = compute_bounds(net, lo, hi, method)              # numpy
    b_t = compute_bounds(net, lo, hi, method, device="cpu")  # torch
    for (l1, u1), (l2, u2) in zip(b_np.pre, b_t.pre):
        assert np.allclose(l1, l2, rtol=1e-7, atol=1e-7) and np.allclose(u1, u2, rtol=1e-7, atol=1e-7)
    xs = lo + (hi - lo) * rng.random((3000, 3))
    a = xs
    for (l, u), blk in zip(b_np.pre, net.affine_relu_stack()):
        h = a @ blk.W.T + blk.b
        assert (h >= l - 1e-12).all() and (h <= u + 1e-12).all()
        a = np.maximum(h, 0) if blk.relu else h
    region = Region(lo, hi, [Clause(rng.normal(size=(2, 4)), rng.normal(size=2))])
    m_np = clause_margin_bounds(net, b_np, region, method)
    m_t = clause_margin_bounds(net, b_t, region, method)
    assert np.allclose(m_np, m_t, rtol=1e-7, atol=1e-7)
    margins = region.margin(net.forward(xs))
    assert margins.min() >= m_np[0][0] - 1e-12 and margins.max() <= m_np[1][0] + 1e-12


def test_batched_boxes_agree():
    rng = np.random.default_rng(9)
    net = mlp([rng.normal(size=(8, 5)), rng.normal(size=(3, 8))], [np.zeros(8), np.zeros(3)])
    lo = rng.uniform(-1, 0, (20, 5))
    hi = lo + 0.3
    pre_np, _, _ = batch_pre_bounds(net, lo, hi)
    pre_t, _, _ = batch_pre_bounds(net, lo, hi, device="cpu")
    assert isinstance(pre_np[0][0], np.ndarray)
    for (l1, u1), (l2, u2) in zip(pre_np, pre_t):
        assert np.allclose(l1, to_numpy(l2)) and np.allclose(u1, to_numpy(u2))
