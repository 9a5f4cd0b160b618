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
