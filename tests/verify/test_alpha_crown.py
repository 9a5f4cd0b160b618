"""alpha-CROWN (optimised lower ReLU slopes): sound against sampled points and the exact MILP
optimum, never looser than CROWN, and used by ``verify`` on regions with many inputs."""
import numpy as np
import pytest

from mipcert.bounds import clause_margin_bounds, compute_bounds
from mipcert.network import mlp
from mipcert.verify import verify

from .test_schedule import check_sound, robustness

pytest.importorskip("torch")

TOL = 1e-7


def _net(seed, sizes=(4, 16, 12, 10, 3)):
    rng = np.random.default_rng(seed)
    return mlp([rng.normal(size=(o, i)) * np.sqrt(2.0 / i) for i, o in zip(sizes[:-1], sizes[1:])],
               [rng.normal(size=o) * 0.2 for o in sizes[1:]])


def _pre_activations(net, xs):
    out, a = [], xs
    for blk in net.affine_relu_stack():
        h = a @ blk.W.T + blk.b
        out.append(h)
        a = np.maximum(h, 0) if blk.relu else h
    return out


def test_alpha_bounds_enclose_samples_and_are_tighter_than_crown():
    gain = 0.0
    for seed in range(6):
        net = _net(seed)
        rng = np.random.default_rng(100 + seed)
        x0 = rng.uniform(-1, 1, 4)
        lo, hi = x0 - 0.4, x0 + 0.4
        crown = compute_bounds(net, lo, hi, "crown")
        alpha = compute_bounds(net, lo, hi, "alpha")
        xs = np.vstack([lo + (hi - lo) * rng.random((5000, 4)), lo, hi])
        for (lc, uc), (la, ua), h in zip(crown.pre, alpha.pre, _pre_activations(net, xs)):
            assert (la >= lc - 1e-12).all() and (ua <= uc + 1e-12).all()   # never looser
            assert (h >= la - 1e-12).all() and (h <= ua + 1e-12).all()     # sound
            gain += float((la - lc).sum() + (uc - ua).sum())
    assert gain > 1e-3   # and really tighter somewhere (the test would catch a no-op)


def test_batched_alpha_bounds_each_box_as_alone_and_soundly():
    """One call on a batch of boxes gives every box the clause bounds of a call on that box
    alone (each box and row has its own α and Adam is elementwise), intermediate bounds at
    least as tight (rows of neurons unstable in any box of the batch are optimised in all),
    and every bound holds on points sampled in its own box."""
    from mipcert.bounds import batch_pre_bounds, to_numpy
    from mipcert.bounds.alpha import alpha_crown

    net = _net(7, sizes=(3, 20, 20, 16, 4))
    stack = net.affine_relu_stack()
    rng = np.random.default_rng(7)
    region = robustness(net, rng.uniform(-1, 1, 3), 0.6).regions[0]
    B = 12
    width = (region.hi - region.lo) * rng.uniform(0.1, 0.6, (B, 3))
    lo = region.lo + (region.hi - region.lo - width) * rng.random((B, 3))
    hi = lo + width
    pre = [(to_numpy(l), to_numpy(u)) for l, u in batch_pre_bounds(net, lo, hi, "crown")[0]]
    b_pre, b_m = alpha_crown(stack, lo, hi, pre, region.clauses, iters=10)
    assert b_m.shape == (B, len(region.clauses))
    assert np.isfinite(b_m).all()
    for i in range(B):
        one_pre, one_m = alpha_crown(stack, lo[i], hi[i], [(l[i], u[i]) for l, u in pre],
                                     region.clauses, iters=10)
        xs = lo[i] + (hi[i] - lo[i]) * rng.random((3000, 3))
        for (l1, u1), (lb, ub), h in zip(one_pre, b_pre, _pre_activations(net, xs)):
            assert (lb[i] >= l1 - 1e-9).all() and (ub[i] <= u1 + 1e-9).all()
            assert (h >= lb[i] - 1e-12).all() and (h <= ub[i] + 1e-12).all()
        y = net.forward(xs)
        for k, clause in enumerate(region.clauses):
            assert clause.margin(y).min() >= b_m[i, k] - 1e-12
        # the same clause bound as alone, up to the tighter intermediate bounds
        assert (b_m[i] >= one_m - 1e-9).all()
    exact = [alpha_crown(stack, lo[i], hi[i], [(l[i], u[i]) for l, u in pre], region.clauses,
                         iters=10, layers=False)[1] for i in range(B)]
    batch_no_layers = alpha_crown(stack, lo, hi, pre, region.clauses, iters=10, layers=False)[1]
    np.testing.assert_allclose(batch_no_layers, np.array(exact), rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_alpha_margins_between_crown_and_exact_milp(seed):
    """CROWN <= alpha-CROWN <= exact MILP optimum <= sampled minimum, for every clause."""
    from mipcert.encode import build_margin_model
    from mipcert.solve import PersistentSolver

    net = _net(seed)
    rng = np.random.default_rng(seed)
    spec = robustness(net, rng.uniform(-1, 1, 4), 0.5)
    region = spec.regions[0]
    b = compute_bounds(net, region.lo, region.hi, "crown")
    m_crown, _ = clause_margin_bounds(net, b, region, "crown")
    m_alpha, m_hi = clause_margin_bounds(net, b, region, "alpha")
    model, margins = build_margin_model(net, b, region, "milp")
    eng = PersistentSolver(model, "highs", threads=1)
    xs = np.vstack([region.lo + (region.hi - region.lo) * rng.random((5000, 4)),
                    region.lo, region.hi])
    y = net.forward(xs)
    for k, (clause, e) in enumerate(zip(region.clauses, margins)):
        eng.set_objective(e, "min")
        out = eng.solve(time_limit=30)
        assert out.status == "optimal"
        assert m_crown[k] <= m_alpha[k] + 1e-12
        assert m_alpha[k] <= out.value + TOL
        assert out.value <= clause.margin(y).min() + TOL
        assert clause.margin(y).max() <= m_hi[k] + TOL


def test_verify_refines_open_high_dimensional_regions_soundly():
    """Inputs of many dimensions (no splitting): CROWN leaves clauses open, alpha-CROWN runs
    (phase ``alpha``), and the verdict matches the plain MILP's on the same property."""
    net = _net(7, sizes=(24, 32, 32, 4))
    x0 = np.random.default_rng(7).uniform(0, 1, 24)
    for eps in (0.05, 0.12):
        spec = robustness(net, x0, eps, 0.0, 1.0)
        res = verify(net, spec, timeout=60)
        check_sound(net, spec, res)
        ref = verify(net, spec, timeout=60, bounds="ibp", attack=False)
        assert res.verdict == ref.verdict
        reg = res.stats["regions"][0]
        if reg["proved_by_bounds"] < reg["clauses"] and res.decided_by != "attack":
            assert "alpha" in res.stats["phases"] and "alpha_unstable" in reg
