"""map_solves: independent jobs in input order, on every fan-out backend."""
from __future__ import annotations

import pytest

from solve_models import knapsack
from mipcert.errors import InputError
from mipcert.solve import map_solves, solve


def _job(cap: int) -> float:
    return solve(knapsack(cap=cap), "highs", threads=1).bound


def _fail(x: int) -> int:
    if x == 2:
        raise ValueError("job 2 failed")
    return x


CAPS = [3, 12, 7, 20, 5]


@pytest.fixture(scope="module")
def expected():
    return [_job(c) for c in CAPS]


@pytest.mark.parametrize("backend", ["serial", "threads", "processes", "dask"])
def test_results_in_input_order(backend, expected):
    assert map_solves(_job, CAPS, workers=2, backend=backend) == expected


@pytest.mark.parametrize("backend", ["threads", "processes", "dask"])
def test_exceptions_propagate(backend):
    with pytest.raises(ValueError, match="job 2 failed"):
        map_solves(_fail, range(4), workers=2, backend=backend)


def test_outcomes_come_back_from_processes():
    outs = map_solves(lambda_free_outcome, [12], workers=2, backend="processes")
    assert outs[0].status == "optimal" and outs[0].value == pytest.approx(23.0)


def lambda_free_outcome(cap: int):
    return solve(knapsack(cap=cap), "highs", threads=1)


def test_bad_backend():
    with pytest.raises(InputError, match="processes"):
        map_solves(_fail, [1], backend="mpi")
