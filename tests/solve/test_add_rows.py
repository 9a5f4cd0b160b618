"""PersistentSolver.add_constraints: rows added to a built model (cutting planes) give the
same optimum as a fresh solve of the model with every row, for every back-end."""
from __future__ import annotations

import pyomo.environ as pe
import pytest

from solve_models import TOL
from mipcert.errors import SolverError
from mipcert.solve import PersistentSolver, solve

# cuts a x + b y <= c of the unit disc around (2, 2), added one at a time
CUTS = [(1.0, 1.0, 3.0), (1.0, -1.0, 0.5), (-1.0, 2.0, 2.0)]


def _model(n_cuts: int):
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(-5, 5))
    m.y = pe.Var(bounds=(-5, 5))
    m.cuts = pe.ConstraintList()
    for a, b, c in CUTS[:n_cuts]:
        m.cuts.add(a * m.x + b * m.y <= c)
    return m


@pytest.mark.parametrize("quadratic", [False, True])
def test_cuts_added_one_by_one_match_fresh_solves(solver, quadratic):
    m = _model(0)
    ps = PersistentSolver(m, solver)

    def objective(mm):
        return (mm.x - 2) ** 2 + (mm.y - 2) ** 2 if quadratic else -(mm.x + 2 * mm.y)

    ps.set_objective(objective(m), "min")
    before = ps.solve()
    for k, (a, b, c) in enumerate(CUTS, start=1):
        con = m.cuts.add(a * m.x + b * m.y <= c)
        assert ps.add_constraints([con]) == 1
        again = ps.solve()
        fresh_model = _model(k)
        fresh_model.obj = pe.Objective(expr=objective(fresh_model))
        fresh = solve(fresh_model, solver)
        assert again.status == fresh.status == "optimal"
        assert again.value == pytest.approx(fresh.value, abs=1e-5)
        assert again.value >= before.value - 1e-6  # a cut never improves a minimum
        x, y = again.values([m.x, m.y])
        assert a * x + b * y <= c + 1e-6
        before = again


def test_rows_over_a_new_variable_and_ranges(solver):
    m = _model(0)
    ps = PersistentSolver(m, solver)
    ps.set_objective(m.x + m.y, "max")
    assert ps.solve().value == pytest.approx(10.0, abs=TOL)
    m.z = pe.Var(bounds=(0, 1))
    m.extra = pe.Constraint(expr=pe.inequality(-1.0, m.x + m.y - 3 * m.z, 2.0))
    assert ps.add_constraints([m.extra]) == 1
    out = ps.solve()
    assert out.value == pytest.approx(5.0, abs=TOL)   # x + y <= 2 + 3 z, z <= 1
    assert out.values([m.z])[0] == pytest.approx(1.0, abs=TOL)
    assert ps.add_constraints([]) == 0


def test_infeasible_after_a_cut(solver):
    m = _model(0)
    ps = PersistentSolver(m, solver)
    ps.set_objective(m.x, "min")
    assert ps.solve().status == "optimal"
    ps.add_constraints([m.cuts.add(m.x + m.y >= 20.0)])
    assert ps.solve().status == "infeasible"


def test_quadratic_rows_are_refused():
    m = _model(0)
    ps = PersistentSolver(m, "highs")
    m.q = pe.Constraint(expr=m.x * m.y <= 1)
    with pytest.raises(SolverError, match="linear rows only"):
        ps.add_constraints([m.q])


def test_time_limit_is_per_solve_on_a_persistent_highs_model():
    """HiGHS's run clock keeps counting over the runs of one instance; a per-solve time limit
    shorter than the time already spent must still let the next solve finish."""
    import numpy as np

    rng = np.random.default_rng(0)
    m = pe.ConcreteModel()
    m.x = pe.Var(range(200), bounds=(-1, 1))
    m.c = pe.ConstraintList()
    for _ in range(120):
        m.c.add(sum(float(rng.normal()) * m.x[j] for j in range(200)) >= 0.5)
    ps = PersistentSolver(m, "highs")
    ps.set_objective(sum((m.x[j] - 0.3) ** 2 for j in range(200)), "min")
    first = ps.solve()
    assert first.status == "optimal"
    used = ps.backend.h.getRunTime()
    for _ in range(4):   # each re-solve takes about as long as the first (no QP warm start)
        out = ps.solve(time_limit=3 * used + 0.05)
        assert out.status == "optimal"
        assert out.value == pytest.approx(first.value, rel=1e-6)


def test_time_limit_of_a_persistent_highs_mip_does_not_grow():
    """HiGHS's MIP solver times each run from zero (unlike its LP/QP clock): an offset by the
    time already used made the n-th limit of a persistent MIP about 2^n times the asked one
    (AGT's time-limited rolling windows then ran for minutes per solve)."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    rows, n = 4, 36   # a market-split instance: far beyond 0.3 s for branch and bound
    A = rng.integers(0, 100, (rows, n))
    m = pe.ConcreteModel()
    m.x = pe.Var(range(n), domain=pe.Binary)
    m.s = pe.Var(range(rows), range(2), bounds=(0, 1000))
    m.c = pe.ConstraintList()
    for i in range(rows):
        m.c.add(sum(int(A[i, j]) * m.x[j] for j in range(n)) + m.s[i, 0] - m.s[i, 1]
                == int(A[i].sum() // 2))
    ps = PersistentSolver(m, "highs", threads=1)
    for k in range(4):
        ps.set_objective(sum(m.s[i, t] for i in range(rows) for t in range(2))
                         + 0.001 * k * m.x[0], "min")
        t0 = time.perf_counter()
        out = ps.solve(time_limit=0.3)
        assert out.status == "time_limit"
        assert time.perf_counter() - t0 < 1.5
