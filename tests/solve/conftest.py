"""Fixtures of the solve tests; the models themselves are in solve_models.py."""
from __future__ import annotations

import pytest

from solve_models import SOLVERS, hard_knapsack


@pytest.fixture(scope="session")
def hard_optimum() -> float:
    """The true optimum of hard_knapsack(), by a solve without a time limit."""
    from mipcert.solve import solve

    out = solve(hard_knapsack(), "highs", options={"mip_rel_gap": 0.0})
    assert out.status == "optimal"
    return out.value


@pytest.fixture(params=SOLVERS)
def solver(request) -> str:
    return request.param
