"""write_model: .lp / .mps that other solvers read back to the same optimum, byte-stable, atomic."""
from __future__ import annotations

import os

import highspy
import pyomo.environ as pe
import pytest

from solve_models import QUAD_SOLVERS, TOL, bilinear_model, hard_knapsack, lp_model
from mipcert.errors import InputError
from mipcert.solve import solve, write_model


def _highs_optimum(path) -> float:
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    assert h.readModel(str(path)) == highspy.HighsStatus.kOk
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    return h.getInfo().objective_function_value


@pytest.mark.parametrize("fmt", ["lp", "mps"])
def test_round_trip_through_highs(tmp_path, fmt):
    m = hard_knapsack(n=14, m=3)
    m.extra = pe.Constraint(expr=pe.inequality(1, m.x[0] + m.x[1] - m.x[2], 2))
    path = write_model(m, tmp_path / f"model.{fmt}")
    assert path.exists()
    assert _highs_optimum(path) == pytest.approx(solve(m).value, abs=TOL)


@pytest.mark.parametrize("fmt", ["lp", "mps"])
def test_objective_constant_and_min_sense_survive(tmp_path, fmt):
    m = lp_model()
    path = write_model(m, tmp_path / f"m.{fmt}", format=fmt)
    assert _highs_optimum(path) == pytest.approx(5.0, abs=TOL)


def test_same_bytes_every_time_and_readable_names(tmp_path):
    a, b = tmp_path / "a.lp", tmp_path / "b.lp"
    write_model(hard_knapsack(n=10, m=2), a)
    write_model(hard_knapsack(n=10, m=2), b)
    assert a.read_bytes() == b.read_bytes()
    text = a.read_text()
    assert "x(3)" in text and "cap(1)" in text
    c, d = tmp_path / "c.mps", tmp_path / "d.mps"
    write_model(hard_knapsack(n=10, m=2), c)
    write_model(hard_knapsack(n=10, m=2), d)
    assert c.read_bytes() == d.read_bytes()


@pytest.mark.skipif(not QUAD_SOLVERS, reason="needs scip or gurobi")
def test_quadratic_constraints_exported_by_pyomo(tmp_path):
    path = write_model(bilinear_model(), tmp_path / "q.lp")
    text = path.read_text()
    assert "prod" in text and "*" in text


def test_missing_directory_is_an_input_error(tmp_path):
    target = tmp_path / "nope" / "m.lp"
    with pytest.raises(InputError, match="does not exist"):
        write_model(lp_model(), target)
    assert not target.parent.exists()


def test_unknown_format(tmp_path):
    with pytest.raises(InputError, match="lp"):
        write_model(lp_model(), tmp_path / "m.nl")
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_nothing(tmp_path):
    m = lp_model()
    m.bad = pe.Constraint(expr=pe.exp(m.x) <= 3)  # nonlinear: compilation fails
    with pytest.raises(Exception):
        write_model(m, tmp_path / "m.lp")
    assert os.listdir(tmp_path) == []
