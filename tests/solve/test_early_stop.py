"""Time limits, stop_bound and on_incumbent: early stops keep a sound bound."""
from __future__ import annotations

import math

import numpy as np
import pytest

from solve_models import MARKET_SPLIT_OPT, hard_knapsack, lp_model, market_split
from mipcert.solve import solve


def test_time_limit_bound_is_still_sound(solver):
    out = solve(market_split(), solver, time_limit=0.5)
    assert out.status == "time_limit"
    assert out.bound <= MARKET_SPLIT_OPT  # min: the proven lower bound
    assert out.seconds < 5.0
    if out.has_solution:
        assert out.value >= MARKET_SPLIT_OPT - 1e-6
        assert out.gap is None or out.gap >= 0


def test_time_limit_on_a_max_problem_keeps_an_upper_bound(solver, hard_optimum):
    out = solve(hard_knapsack(), solver, time_limit=0.05)
    assert out.status in ("time_limit", "optimal")
    assert out.bound >= hard_optimum


def test_stop_bound_stops_with_a_bound_past_it(solver, hard_optimum):
    threshold = hard_optimum + 30  # max: stop as soon as the bound is proven < threshold
    out = solve(hard_knapsack(), solver, stop_bound=threshold, time_limit=20)
    assert out.status in ("interrupted", "optimal")
    assert hard_optimum <= out.bound < threshold
    if out.status == "interrupted":
        assert out.seconds < 20


def test_stop_bound_not_reached_solves_to_optimality(solver):
    out = solve(lp_model(), solver, stop_bound=-100.0)  # min, optimum 5: bound never <= -100 only > it
    assert out.bound > -100.0


def test_on_incumbent_true_stops(solver, hard_optimum):
    m = hard_knapsack()
    seen = []

    def on_incumbent(get):
        x = get(m.x)
        assert x.dtype == np.float64 and x.shape == (len(m.x),)
        seen.append(x.copy())
        return len(seen) >= 2

    out = solve(m, solver, on_incumbent=on_incumbent, time_limit=20)
    assert len(seen) >= 1
    if out.status == "interrupted":
        assert len(seen) == 2
        np.testing.assert_allclose(out.values(m.x), seen[-1])
        assert out.value == pytest.approx(float(seen[-1] @ _values(m)), abs=1e-6)
    assert out.bound >= hard_optimum


def _values(m) -> np.ndarray:
    from pyomo.repn import generate_standard_repn

    repn = generate_standard_repn(m.obj.expr)
    coef = {id(v): c for v, c in zip(repn.linear_vars, repn.linear_coefs)}
    return np.array([coef.get(id(v), 0.0) for v in m.x.values()])


def test_on_incumbent_false_runs_to_the_end(solver):
    m = lp_model()
    calls = []
    out = solve(m, solver, on_incumbent=lambda get: calls.append(get([m.x, m.y])) and False)
    assert out.status == "optimal" and len(calls) >= 1
    np.testing.assert_allclose(calls[-1], [3.0, 1.0], atol=1e-6)


def test_on_incumbent_exception_propagates(solver):
    m = hard_knapsack(n=12, m=2)

    def boom(get):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        solve(m, solver, on_incumbent=boom, time_limit=10)


def test_nothing_proven_is_infinite():
    from mipcert.solve.outcome import nothing_proven, safe_bound

    assert nothing_proven("min") == -math.inf and nothing_proven("max") == math.inf
    assert safe_bound(float("nan"), "min") == -math.inf
    assert safe_bound(2.0, "min") < 2.0 < safe_bound(2.0, "max")
