"""PersistentSolver: one solver model, several objectives, same answers as fresh solves."""
from __future__ import annotations

import pyomo.environ as pe
import pytest

from solve_models import QUAD_SOLVERS, TOL, knapsack, lp_model
from mipcert.errors import SolverError
from mipcert.solve import PersistentSolver, solve


def _objectives(m):
    return [(m.x[0] + 2 * m.x[1] - m.x[3], "max"),
            (3 * m.x[2] - m.x[4] + 1.5, "min"),
            (sum(m.x[i] for i in m.I), "max")]


def test_three_objectives_match_fresh_solves(solver):
    m = knapsack()
    ps = PersistentSolver(m, solver)
    for k, (expr, sense) in enumerate(_objectives(m)):
        ps.set_objective(expr, sense)
        again = ps.solve()
        fm = knapsack()
        fm.obj.deactivate()
        fm.obj2 = pe.Objective(expr=_objectives(fm)[k][0], sense=pe.maximize if sense == "max" else pe.minimize)
        fresh = solve(fm, solver)
        assert again.status == fresh.status == "optimal"
        assert again.sense == sense
        assert again.bound == pytest.approx(fresh.bound, abs=TOL)
        assert again.value == pytest.approx(fresh.value, abs=TOL)


def test_model_without_objective_needs_set_objective(solver):
    m = lp_model()
    m.obj.deactivate()
    ps = PersistentSolver(m, solver)
    with pytest.raises(SolverError, match="set_objective"):
        ps.solve()
    ps.set_objective(m.x + m.y, "max")
    out = ps.solve()
    assert out.bound == pytest.approx(4.0, abs=TOL)


def test_objective_over_a_new_variable(solver):
    m = lp_model()
    m.free = pe.Var(bounds=(-2, 7), domain=pe.Integers)  # in no constraint
    ps = PersistentSolver(m, solver)
    ps.set_objective(m.x + m.free, "max")
    out = ps.solve()
    assert out.bound == pytest.approx(10.0, abs=TOL)
    assert out.values([m.free])[0] == pytest.approx(7.0)
    ps.set_objective(m.y, "min")
    assert ps.solve().bound == pytest.approx(0.0, abs=TOL)


def test_persistent_time_limit_and_stop_bound(solver):
    m = knapsack()
    ps = PersistentSolver(m, solver)
    out = ps.solve(time_limit=5, stop_bound=100.0)  # max: optimum 23 < 100 is proven at once
    assert out.bound < 100.0 and out.status in ("interrupted", "optimal")
    assert ps.solve().bound == pytest.approx(23.0, abs=TOL)


def test_bad_sense():
    ps = PersistentSolver(lp_model())
    with pytest.raises(SolverError, match="sense"):
        ps.set_objective(ps.model.x, "maximise")


@pytest.mark.parametrize("solver", ["highs"] + QUAD_SOLVERS)
def test_switch_between_quadratic_and_linear_objectives(solver):
    m = lp_model()
    ps = PersistentSolver(m, solver)
    ps.set_objective((m.x - 1) ** 2 + (m.y - 0.5) ** 2 + 2.0, "min")  # feasible centre: 2
    assert ps.solve().bound == pytest.approx(2.0, abs=1e-5)
    ps.set_objective(m.x + m.y, "max")
    assert ps.solve().bound == pytest.approx(4.0, abs=TOL)
    ps.set_objective(-(m.x ** 2) - m.y ** 2, "max")  # concave: max 0 at the origin
    assert ps.solve().bound == pytest.approx(0.0, abs=1e-5)


def test_highs_threads_can_change_between_solves():
    for threads in (1, None, 2, 1):
        assert solve(knapsack(), "highs", threads=threads).bound == pytest.approx(23.0, abs=TOL)


@pytest.mark.parametrize("solver", ["highs"])
def test_reset_makes_the_next_solve_a_fresh_one(solver):
    # AGT's workers reuse one model for many jobs: after reset() a solve must not depend on
    # what was solved before (same bound, same search) or the boxes would depend on which
    # worker ran which job
    import numpy as np

    rng = np.random.default_rng(3)
    n = 40
    v, w = rng.integers(5, 60, n), rng.integers(5, 60, n)

    def model():
        m = pe.ConcreteModel()
        m.x = pe.Var(range(n), domain=pe.Binary)
        m.cap = pe.Constraint(expr=sum(int(w[i]) * m.x[i] for i in range(n)) <= int(w.sum()) // 3)
        m.pair = pe.Constraint(expr=m.x[0] + m.x[1] <= 1)
        return m

    def objective(m, k):
        return sum(int(v[(i + k) % n]) * m.x[i] for i in range(n))

    fresh = PersistentSolver(model(), solver)
    fresh.set_objective(objective(fresh.model, 0), "max")
    want = fresh.solve()
    ps = PersistentSolver(model(), solver)
    for k in (1, 2):
        ps.set_objective(objective(ps.model, k), "max")
        ps.solve()
    assert ps.reset()
    ps.set_objective(objective(ps.model, 0), "max")
    got = ps.solve()
    assert (got.bound, got.value, got.nodes) == (want.bound, want.value, want.nodes)


def test_many_solves_with_a_start(solver):
    """SCIP keeps every partial start solution of a persistent model and raised 'cannot be
    called at this time' once it held limits/maxorigsol (10) of them: the 11th solve of a
    clause MILP with a start crashed verify. Starts are hints; every solve must still answer
    what a fresh solve answers."""
    m = knapsack()
    ps = PersistentSolver(m, solver)
    fresh = solve(knapsack(), solver)
    for k in range(15):
        ps.set_objective(m.obj.expr, "max")
        out = ps.solve(start=[(m.x[i], float(k % 2)) for i in m.I])
        assert out.status == "optimal"
        assert out.bound == pytest.approx(fresh.bound, abs=TOL)
