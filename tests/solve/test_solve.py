"""solve(): known optima, proven bounds, statuses, errors — through every installed solver."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pyomo.environ as pe
import pytest

from solve_models import (BILINEAR_OPT, FRAC_LP, FRAC_OPT, KNAP_OPT, LP_OPT, QUAD_SOLVERS, TOL, bilinear_model,
                      fractional_knapsack, infeasible_model, knapsack, lp_model)
from mipcert.errors import SolverError, SolverUnavailableError
from mipcert.solve import LP_BOUND_SAFETY, Outcome, available_solvers, solve


def test_available_solvers_lists_highs_and_scip():
    assert "highs" in available_solvers()
    assert set(available_solvers()) <= {"highs", "scip", "gurobi"}


def test_lp_min(solver):
    m = lp_model()
    out = solve(m, solver)
    assert isinstance(out, Outcome)
    assert out.status == "optimal" and out.sense == "min" and out.solver == solver
    assert out.bound <= LP_OPT <= out.value + TOL
    assert out.bound == pytest.approx(LP_OPT, abs=TOL) and out.value == pytest.approx(LP_OPT, abs=TOL)
    assert out.bound < LP_OPT  # the safety margin moves it outward
    np.testing.assert_allclose(out.values([m.x, m.y]), [3.0, 1.0], atol=1e-6)
    assert out.values([m.x]).dtype == np.float64


def test_milp_max_and_lp_relaxation_differ(solver):
    out = solve(fractional_knapsack(), solver)
    assert out.status == "optimal" and out.sense == "max"
    assert out.value - TOL <= FRAC_OPT <= out.bound
    assert out.bound == pytest.approx(FRAC_OPT, abs=TOL)
    relaxed = fractional_knapsack()
    for v in relaxed.x.values():
        v.domain = pe.UnitInterval
    lp = solve(relaxed, solver)
    assert lp.status == "optimal" and lp.bound == pytest.approx(FRAC_LP, abs=TOL)
    assert lp.bound >= FRAC_LP  # max: bound is an upper bound


def test_knapsack_solution_values(solver):
    m = knapsack()
    out = solve(m, solver)
    assert out.value == pytest.approx(KNAP_OPT, abs=TOL)
    x = out.values(m.x)  # an IndexedVar is accepted, in index order
    np.testing.assert_allclose(x, [1, 1, 0, 0, 0], atol=1e-6)


def test_infeasible(solver):
    out = solve(infeasible_model(), solver)
    assert out.status == "infeasible" and out.bound == math.inf and not out.has_solution
    with pytest.raises(SolverError, match="no incumbent"):
        out.values([infeasible_model().x])


def test_infeasible_max_gives_minus_inf(solver):
    m = infeasible_model()
    m.obj.sense = pe.maximize
    assert solve(m, solver).bound == -math.inf


def test_unbounded(solver):
    m = pe.ConcreteModel()
    m.x = pe.Var(within=pe.NonNegativeReals)
    m.y = pe.Var(domain=pe.Integers, bounds=(0, 3))
    m.c = pe.Constraint(expr=m.x >= m.y)
    m.obj = pe.Objective(expr=m.x, sense=pe.maximize)
    out = solve(m, solver)
    assert out.status == "unbounded" and out.bound == math.inf


@pytest.mark.parametrize("solver", QUAD_SOLVERS)
def test_nonconvex_quadratic_constraint(solver):
    q = bilinear_model()
    out = solve(q, solver)
    assert out.status == "optimal"
    assert out.bound >= BILINEAR_OPT - 1e-9
    assert out.bound == pytest.approx(BILINEAR_OPT, abs=1e-3)
    x, y, z = out.values([q.x, q.y, q.z])
    assert x * y == pytest.approx(z, abs=1e-5)


def test_highs_refuses_quadratic_constraints():
    with pytest.raises(SolverError, match="scip"):
        solve(bilinear_model(), "highs")


def test_convex_quadratic_objective_highs():
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(-5, 5))
    m.y = pe.Var(bounds=(-5, 5))
    m.c = pe.Constraint(expr=m.x + m.y >= 2)
    m.obj = pe.Objective(expr=m.x ** 2 + m.y ** 2 + m.x * m.y)  # min at x = y = 1: 3
    for s in ["highs"] + QUAD_SOLVERS:
        out = solve(m, s)
        assert out.status == "optimal" and out.bound <= 3 + 1e-6
        assert out.bound == pytest.approx(3.0, abs=1e-4)
    m.obj.expr = -m.x * m.y
    with pytest.raises(SolverError, match="convex"):
        solve(m, "highs")


def test_fixed_variables_are_constants(solver):
    m = lp_model()
    m.x.fix(1.0)
    out = solve(m, solver)
    # y <= 3 - 0 (c1), 3y <= 5 (c2) → y = 5/3, objective -1 - 10/3 + 10
    assert out.bound == pytest.approx(10 - 1 - 10 / 3, abs=TOL)
    np.testing.assert_allclose(out.values([m.x, m.y]), [1.0, 5 / 3], atol=1e-6)


def test_blocks_and_deactivated_components(solver):
    m = pe.ConcreteModel()
    m.b = pe.Block()
    m.b.x = pe.Var(bounds=(0, 10))
    m.b.c = pe.Constraint(expr=m.b.x <= 4)
    m.b.off = pe.Constraint(expr=m.b.x <= 1)
    m.b.off.deactivate()
    m.b.obj = pe.Objective(expr=m.b.x, sense=pe.maximize)
    m.obj2 = pe.Objective(expr=m.b.x)
    m.obj2.deactivate()
    assert solve(m, solver).bound == pytest.approx(4.0, abs=TOL)
    assert solve(m.b, solver).bound == pytest.approx(4.0, abs=TOL)


def test_objective_count_errors():
    m = lp_model()
    m.obj2 = pe.Objective(expr=m.x)
    with pytest.raises(SolverError, match="exactly one active Objective"):
        solve(m)
    m.obj.deactivate()
    m.obj2.deactivate()
    with pytest.raises(SolverError, match="exactly one active Objective"):
        solve(m)


def test_unknown_solver_lists_available():
    with pytest.raises(SolverUnavailableError, match="highs"):
        solve(lp_model(), solver="cplex")


def test_outcome_pickles_and_reads_values_by_name(solver):
    m = lp_model()
    out = pickle.loads(pickle.dumps(solve(m, solver)))
    np.testing.assert_allclose(out.values([m.x, m.y]), [3.0, 1.0], atol=1e-6)


def test_safety_constant_is_small():
    assert 0 < LP_BOUND_SAFETY <= 1e-6


def test_all_variables_fixed(solver):
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(0, 1))
    m.x.fix(0.5)
    m.c = pe.Constraint(expr=m.x <= 1)
    m.obj = pe.Objective(expr=2 * m.x + 1)
    out = solve(m, solver)
    assert out.status == "optimal" and out.bound == pytest.approx(2.0, abs=TOL) and out.bound <= 2.0
    assert out.values([m.x])[0] == 0.5
    m.d = pe.Constraint(expr=m.x >= 0.7)  # a violated row without columns
    assert solve(m, solver).status == "infeasible"
