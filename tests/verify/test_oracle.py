"""mipcert's verdicts agree with brute-force enumeration on random tiny networks."""
import numpy as np
import pytest

from mipcert.network import mlp
from mipcert.solve import available_solvers
from mipcert.spec import Clause, Region, Specification
from mipcert.verify import verify

from .oracle import min_clause_margins

# Instances whose true minimum margin is this close to 0 are skipped: a verdict there
# depends on solver tolerances, not on the encoding.
TIE = 1e-5


def random_instance(seed):
    rng = np.random.default_rng(seed)
    n0 = int(rng.integers(2, 4))
    hidden = [[4, 4], [6], [3, 3, 3], [5, 4], [12], [6, 6]][seed % 6]
    m = int(rng.integers(2, 4))
    sizes = [n0, *hidden, m]
    weights = [rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(size=o) * 0.5 for o in sizes[1:]]
    center = rng.uniform(-1, 1, n0)
    radius = rng.uniform(0.05, 0.8)
    lo, hi = center - radius, center + radius
    clauses = []
    for _ in range(int(rng.integers(1, 4))):
        rows = int(rng.integers(1, 3))
        C = rng.normal(size=(rows, m))
        y0 = mlp(weights, biases).forward(center)
        d = C @ y0 + rng.normal(size=rows) * 1.5   # sometimes violated, sometimes not
        clauses.append(Clause(C, d))
    return weights, biases, Specification([Region(lo, hi, clauses)], n0, m, name=f"seed{seed}")


def truth(weights, biases, spec):
    region = spec.regions[0]
    best, _ = min_clause_margins(weights, biases, region.lo, region.hi,
                                 [(c.C, c.d) for c in region.clauses])
    return float(best.min())


SOLVERS = [s for s in ("highs", "scip") if s in available_solvers()]


@pytest.mark.slow
@pytest.mark.parametrize("solver", SOLVERS)
def test_verdicts_match_enumeration(solver):
    checked = {"sat": 0, "unsat": 0}
    for seed in range(36):
        weights, biases, spec = random_instance(seed)
        best = truth(weights, biases, spec)
        if abs(best) < TIE:
            continue
        expected = "sat" if best < 0 else "unsat"
        net = mlp(weights, biases)
        runs = [dict(bounds="ibp", attack=False, split=False),    # the MILP alone
                dict(bounds="crown", attack=False, split=False),
                dict(bounds="lp", attack=False, split=False),
                dict(bounds="crown", attack=False),                # input splitting first
                dict()]                                            # the whole pipeline
        for kw in runs:
            result = verify(net, spec, solver=solver, **kw)
            bounds = kw
            assert result.verdict == expected, (seed, bounds, best, result)
            if expected == "unsat":
                assert 0 < result.bound <= best + 1e-6, (seed, result.bound, best)
            else:
                x, y = result.counterexample
                assert spec.regions[0].contains(x)[0]
                assert np.allclose(net.forward(x), y)
                assert spec.regions[0].margin(y)[0] <= 0
        checked[expected] += 1
    assert checked["sat"] >= 5 and checked["unsat"] >= 5, checked


@pytest.mark.parametrize("seed", range(12))
def test_lp_relaxation_is_sound_and_never_sat(seed):
    weights, biases, spec = random_instance(seed)
    best = truth(weights, biases, spec)
    result = verify(mlp(weights, biases), spec, relaxation="lp", attack=False)
    assert result.verdict in ("unsat", "unknown")
    assert result.counterexample is None
    if result.verdict == "unsat":
        assert best > 0 and result.bound <= best + 1e-6


@pytest.mark.parametrize("seed", range(12))
def test_bounds_never_beaten_by_enumeration(seed):
    """The clause margin bounds used for early proofs are below the true minimum."""
    from mipcert.bounds import clause_margin_bounds, compute_bounds

    weights, biases, spec = random_instance(seed)
    net = mlp(weights, biases)
    region = spec.regions[0]
    rng = np.random.default_rng(seed)
    exact, _ = min_clause_margins(weights, biases, region.lo, region.hi,
                                  [(c.C, c.d) for c in region.clauses])
    for method in ("ibp", "crown", "lp"):
        b = compute_bounds(net, region.lo, region.hi, method)
        lo, hi = clause_margin_bounds(net, b, region, method)
        # upper bounds: never below the margin at sampled points
        ys = net.forward(region.lo + (region.hi - region.lo) * rng.random((500, region.lo.size)))
        for k, c in enumerate(region.clauses):
            assert lo[k] <= exact[k] + 1e-9, (method, k, lo[k], exact[k])
            assert hi[k] >= c.margin(ys).max() - 1e-9
