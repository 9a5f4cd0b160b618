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


_AFTER_TORCH = """
import sys
sys.path.insert(0, {tmp!r})
import torch
from mipcert.solve import map_solves
from torch_job import job

torch.set_num_threads(2)
x = torch.ones(512, 512, dtype=torch.float64)
(x @ x).sum()                      # the parent's OpenMP threads have now run
print(map_solves(job, [1, 2], workers=2, backend="processes"))
"""


@pytest.mark.slow
def test_processes_after_parallel_torch_in_the_parent(tmp_path):
    """A worker forked from a process whose OpenMP threads have run hangs at its first
    parallel operation: the 'processes' back-end must start its workers afresh."""
    import subprocess
    import sys

    (tmp_path / "torch_job.py").write_text(
        "import torch\n\ndef job(n):\n"
        "    x = torch.ones(512, 512, dtype=torch.float64)\n"
        "    return float((x @ x).sum()) / n\n")
    try:
        out = subprocess.run([sys.executable, "-c", _AFTER_TORCH.format(tmp=str(tmp_path))],
                             capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("map_solves hung in workers started after torch's parallel operations")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[134217728.0,", "67108864.0]"]
