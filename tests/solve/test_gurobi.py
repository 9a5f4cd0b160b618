"""Gurobi's size-limited pip licence is reported before solving, with the fix."""
from __future__ import annotations

import pyomo.environ as pe
import pytest

from mipcert.errors import SolverLicenseError, SolverUnavailableError
from mipcert.solve import available_solvers, solve

gurobipy = pytest.importorskip("gurobipy")


def _big_model(n: int = 2500) -> pe.ConcreteModel:
    m = pe.ConcreteModel()
    m.x = pe.Var(range(n), bounds=(0, 1))
    m.c = pe.Constraint(expr=sum(m.x.values()) <= 3)
    m.obj = pe.Objective(expr=sum(m.x.values()), sense=pe.maximize)
    return m


def test_size_limited_licence_is_explained():
    from mipcert.solve.gurobi import licence_is_size_limited

    if "gurobi" not in available_solvers():
        pytest.skip("gurobi installed but not usable here")
    if not licence_is_size_limited():
        assert solve(_big_model(), "gurobi").bound == pytest.approx(3.0, abs=1e-6)
        return
    with pytest.raises(SolverLicenseError) as info:
        solve(_big_model(), "gurobi")
    text = str(info.value)
    assert "2500 variables" in text and "2000" in text and "highs" in text and "GRB_LICENSE_FILE" in text


def test_small_model_solves_under_the_restricted_licence():
    if "gurobi" not in available_solvers():
        pytest.skip("gurobi not usable here")
    assert solve(_big_model(50), "gurobi").bound == pytest.approx(3.0, abs=1e-6)


def test_unavailable_error_type_is_a_solver_error():
    assert issubclass(SolverUnavailableError, Exception)


def test_quadratic_objective_uses_the_smaller_limit():
    from mipcert.solve.gurobi import licence_is_size_limited

    if "gurobi" not in available_solvers() or not licence_is_size_limited():
        pytest.skip("needs gurobi with the size-limited licence")
    m = _big_model(300)
    m.obj.expr = sum(v * v for v in m.x.values())
    m.obj.sense = pe.minimize
    with pytest.raises(SolverLicenseError, match="300 variables and 1 constraints and quadratic terms"):
        solve(m, "gurobi")
