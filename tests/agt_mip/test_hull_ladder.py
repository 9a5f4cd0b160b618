"""Optimisation-based AGT against enumeration: on tiny runs (n <= 12, T <= 3, k = 1) the
exact methods at full horizon equal the hull of every admissible perturbed run, every
relaxation contains it, and the relaxation ladder holds parameter by parameter."""
from __future__ import annotations

import numpy as np
import pytest

from mipcert.agt.instance import PerturbationConfig
from mipcert.agt.interval_agt import interval_agt
from mipcert.agt.mip_agt import mip_agt

from .helpers import enumerate_final, tiny_run

TOL = 1e-6

FLIP = PerturbationConfig(kind="label_flip", k=1, flips=True)
REMOVE = PerturbationConfig(kind="removal", k=1)


def _hull(run, pert):
    E = enumerate_final(run, pert)
    return E.min(axis=0), E.max(axis=0)


def _contains(res, lo, hi):
    assert np.all(res.lower <= lo + TOL), (res.lower - lo).max()
    assert np.all(res.upper >= hi - TOL), (hi - res.upper).max()


@pytest.mark.parametrize("loss,pert", [("hinge", FLIP), ("squared", FLIP), ("squared", REMOVE),
                                       ("hinge", REMOVE)])
def test_linear_model_exact_equals_hull(loss, pert):
    run = tiny_run(loss, (), n=10, steps=3, batch=5, seed=1, pm1=pert.flips)
    lo, hi = _hull(run, pert)
    res = mip_agt(run, pert, "milp", "full")
    np.testing.assert_allclose(res.lower, lo, atol=TOL)
    np.testing.assert_allclose(res.upper, hi, atol=TOL)
    # a linear model has no product of continuous variables: MIQCP is the same model
    res_q = mip_agt(run, pert, "miqcp", "full", solver="highs")
    np.testing.assert_allclose(res_q.lower, lo, atol=TOL)
    for method in ("lp", "qcp"):
        _contains(mip_agt(run, pert, method, "full", solver="highs"), lo, hi)


@pytest.mark.slow
@pytest.mark.parametrize("loss,pert", [("hinge", FLIP), ("squared", REMOVE)])
def test_mlp_exact_equals_hull(loss, pert):
    """One hidden ReLU layer: MIQCP (SCIP) equals the hull; MILP / QCP / LP contain it."""
    run = tiny_run(loss, (2,), n=4, steps=2, batch=2, seed=2)
    lo, hi = _hull(run, pert)
    res = mip_agt(run, pert, "miqcp", "full", solver="scip")
    np.testing.assert_allclose(res.lower, lo, atol=1e-5)
    np.testing.assert_allclose(res.upper, hi, atol=1e-5)
    for method, solver in (("milp", "highs"), ("lp", "highs")):
        _contains(mip_agt(run, pert, method, "full", solver=solver), lo, hi)


@pytest.mark.slow
def test_ladder_same_bounds():
    """Without progressive tightening every method uses the same interval bounds, so
    IBP ⊇ LP ⊇ QCP ⊇ MIQCP and LP ⊇ MILP ⊇ MIQCP hold parameter by parameter; for the
    exact methods the full horizon is inside every rolling horizon."""
    run = tiny_run("hinge", (2,), n=4, steps=2, batch=2, seed=4)
    pert = FLIP
    ibp = interval_agt(run, pert)
    res = {m: mip_agt(run, pert, m, "full", solver="scip" if m in ("qcp", "miqcp") else "highs",
                      tighten=False) for m in ("lp", "qcp", "milp", "miqcp")}

    def inside(inner, outer):
        assert np.all(outer.lower <= inner.lower + TOL)
        assert np.all(inner.upper <= outer.upper + TOL)

    inside(res["lp"], ibp)
    inside(res["qcp"], res["lp"])
    inside(res["miqcp"], res["qcp"])
    inside(res["milp"], res["lp"])
    inside(res["miqcp"], res["milp"])
    rolling = mip_agt(run, pert, "milp", 1)
    full = mip_agt(run, pert, "milp", "full")
    inside(full, rolling)
    lo, hi = _hull(run, pert)
    _contains(rolling, lo, hi)


def test_sparser_tightening_is_still_exact_at_full_horizon():
    """Proving only every other step's box changes the constants, not the exact optimum.

    Up to the solver's tolerances: a binary may sit 1e-6 off integral (HiGHS's
    mip_feasibility_tolerance), which lets a Big-M row give way by M * 1e-6, so with
    looser constants the optimum may lie a little outside the hull (1.7e-6 here on the
    torch path of interval AGT, where MIPCERT_NO_KERNELS=1 or no C compiler). Outside is
    the sound side; it must never lie inside."""
    run = tiny_run("hinge", (), n=12, steps=3, batch=6, seed=6, pm1=True)
    lo, hi = _hull(run, FLIP)
    res = mip_agt(run, FLIP, "milp", "full", tighten_every=2)
    _contains(res, lo, hi)
    np.testing.assert_allclose(res.lower, lo, atol=1e-5)
    np.testing.assert_allclose(res.upper, hi, atol=1e-5)


def test_rolling_horizon_contains_hull_and_is_looser():
    run = tiny_run("hinge", (), n=12, steps=3, batch=6, seed=6)
    lo, hi = _hull(run, FLIP)
    full = mip_agt(run, FLIP, "milp", "full")
    per_step = mip_agt(run, FLIP, "milp", 1)
    _contains(per_step, lo, hi)
    assert per_step.total_width >= full.total_width - TOL
    assert [w.start for w in per_step.windows] == [0, 1, 2]
    assert [(w.start, w.stop) for w in full.windows] == [(0, 3)]
