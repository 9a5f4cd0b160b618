"""What must hold between the methods of ``mipcert compare`` (real solvers, digits model)."""
from __future__ import annotations

import numpy as np
import pytest

from mipcert.bounds import clause_margin_bounds, compute_bounds
from mipcert.spec import robustness_spec
from mipcert.verify.compare import true_margins

from .conftest import EPS, PICK, ball

TOL = 1e-6


def _bounds(result, method):
    return np.array([np.nan if p.methods[method].bound is None else p.methods[method].bound
                     for p in result.points])


def test_no_conflicts_and_expected_statuses(result):
    assert result.conflicts == []
    st = {(p.eps, PICK[p.index]): {m: r.status for m, r in p.methods.items()}
          for p in result.points}
    for eps in EPS:
        assert set(st[(eps, 12)].values()) == {"misclassified"}
        expect = "certified" if eps == 0.01 else "open"   # IBP only certifies at 0.01
        assert st[(eps, 19)] == {"ibp": expect, "crown": "certified", "lp": "certified",
                                 "milp": "certified"}
    # a certificate only the MILP finds, and falsified points
    assert st[(0.03, 0)] == {"ibp": "open", "crown": "open", "lp": "open", "milp": "certified"}
    assert st[(0.05, 7)]["milp"] == "certified" and st[(0.05, 7)]["lp"] == "open"
    assert set(st[(0.05, 0)].values()) == {"falsified"}
    assert set(st[(0.05, 14)].values()) == {"falsified"}
    assert st[(0.01, 0)]["ibp"] == "open" and st[(0.01, 0)]["crown"] == "certified"


def test_bound_order(result):
    """IBP <= CROWN holds here by construction (CROWN is intersected with the interval bound
    over its own, tighter, pre-activation bounds); LP over the same CROWN bounds is at least
    CROWN (CROWN is a feasible dual of the triangle LP)."""
    ibp, crown, lp = (_bounds(result, m) for m in ("ibp", "crown", "lp"))
    assert np.all(ibp <= crown + TOL)
    ok = ~np.isnan(lp)
    assert ok.sum() >= 10
    assert np.all(lp[ok] >= crown[ok] - 1e-6 * (1 + np.abs(crown[ok])))


def test_every_bound_below_sampled_and_attack_margins(result, network, picked):
    """Each lower bound <= the margin at 200 random points of the ball (and its corners)."""
    X, y = picked
    rng = np.random.default_rng(1)
    for p in result.points:
        lo, hi = ball(X[p.index], p.eps)
        S = lo + (hi - lo) * rng.random((200, X.shape[1]))
        S = np.vstack([S, lo, hi, X[p.index]])
        sampled = true_margins(network, S, np.full(len(S), y[p.index])).min()
        assert p.attack_margin <= sampled + 1e-12  # the attack starts from x0
        for m, r in p.methods.items():
            if r.bound is not None and r.status != "falsified":
                assert r.bound <= sampled + TOL, (p.eps, p.index, m, r.bound, sampled)
            if r.bound is not None and m != "milp":
                assert r.bound <= p.attack_margin + TOL, (p.eps, p.index, m)


def test_milp_verdict_matches_its_bound(result):
    for p in result.points:
        r = p.methods["milp"]
        if r.note == "not run":
            assert p.misclassified
            continue
        assert (r.note == "unsat") == (r.bound is not None and r.bound > 0)
        if r.note == "sat":
            assert r.bound <= 0


def test_counterexamples_are_real(result, network, picked):
    X, y = picked
    falsified = [p for p in result.points if p.falsified]
    assert len(falsified) >= 5
    for p in falsified:
        x = p.counterexample
        lo, hi = ball(X[p.index], p.eps)
        assert np.all(x >= lo) and np.all(x <= hi)
        assert true_margins(network, x[None], y[p.index:p.index + 1])[0] <= 0


def test_batched_bounds_agree_with_single_box_path(result, network, picked):
    """The batched IBP equals mipcert.bounds' single-box path; batched CROWN is at least it."""
    X, y = picked
    for p in result.points[:5]:
        spec = robustness_spec(X[p.index], int(y[p.index]), p.eps, 10, input_lo=0, input_hi=1)
        region = spec.regions[0]
        for m in ("ibp", "crown"):
            b = compute_bounds(network, region.lo, region.hi, m, device="cpu")
            lo, _ = clause_margin_bounds(network, b, region, m)
            if m == "ibp":
                assert p.methods[m].bound == pytest.approx(lo.min(), abs=1e-9)
            else:
                assert p.methods[m].bound >= lo.min() - 1e-9


@pytest.mark.slow
def test_lp_below_milp_optimum(result, network, picked):
    """LP bound <= exact MILP optimum <= attack margin, on the points where they differ."""
    from mipcert.encode import build_margin_model
    from mipcert.solve import PersistentSolver

    X, y = picked
    for eps, k in ((0.03, 0), (0.05, 1)):
        p = next(q for q in result.points if q.eps == eps and q.index == k)
        region = robustness_spec(X[k], int(y[k]), eps, 10, input_lo=0, input_hi=1).regions[0]
        b = compute_bounds(network, region.lo, region.hi, "crown", device="cpu")
        model, margins = build_margin_model(network, b, region, "milp")
        eng = PersistentSolver(model, "highs", threads=1)
        opt_lo, opt_hi = np.inf, np.inf
        for e in margins:
            eng.set_objective(e, "min")
            out = eng.solve(time_limit=60)
            assert out.status == "optimal"
            opt_lo, opt_hi = min(opt_lo, out.bound), min(opt_hi, out.value)
        assert p.methods["lp"].bound <= opt_lo + TOL
        assert p.methods["milp"].bound <= opt_hi + TOL
        assert opt_lo <= p.attack_margin + TOL
        assert p.methods["lp"].bound < 0 < opt_lo   # the MILP-only certificates
