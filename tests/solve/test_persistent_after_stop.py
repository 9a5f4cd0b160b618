"""A solve stopped early must not stop the next solve of the same persistent model."""
import numpy as np
import pyomo.environ as pyo
import pytest

from mipcert.solve import PersistentSolver, available_solvers, solve


def knapsack(n=30, seed=0):
    rng = np.random.default_rng(seed)
    w, v = rng.integers(5, 40, n), rng.integers(5, 40, n)
    m = pyo.ConcreteModel()
    m.x = pyo.Var(range(n), domain=pyo.Binary)
    m.cap = pyo.Constraint(expr=sum(int(w[i]) * m.x[i] for i in range(n)) <= int(w.sum() // 3))
    return m, v


@pytest.mark.parametrize("solver", [s for s in ("highs", "scip") if s in available_solvers()])
def test_stop_bound_does_not_leak_into_next_solve(solver):
    m, v = knapsack()
    n = len(v)
    obj_a = sum(-int(v[i]) * m.x[i] for i in range(n))          # min: optimum well below 0
    obj_b = sum(int(v[i]) * m.x[i] for i in range(n)) - 1000    # min: optimum -1000
    engine = PersistentSolver(m, solver)
    engine.set_objective(obj_a)
    first = engine.solve(stop_bound=-1e9)     # dual bound passes -1e9 at once: early stop
    assert first.status in ("interrupted", "optimal") and first.bound > -1e9
    engine.set_objective(obj_b)
    second = engine.solve(stop_bound=1e9)     # never reached: must solve to optimality
    assert second.status == "optimal"
    m.obj = pyo.Objective(expr=obj_b)
    fresh = solve(m, solver)
    assert second.bound == pytest.approx(fresh.bound, abs=1e-5)
    assert second.bound == pytest.approx(-1000, abs=1e-5)
