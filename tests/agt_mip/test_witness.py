"""Witnesses: the solver's incumbent perturbation replayed as a real training run.

Oracle: the numpy reference training itself. A replayed witness is an admissible run, so
it must lie inside every proved box (else the bound is refuted), and for the exact models
it must reach the bound: then the proved box is shown exact, continuous threats included.
"""
from __future__ import annotations

import numpy as np
import pytest

from .helpers import tiny_run
from mipcert.agt.enumerate import enumerate_hull, sampled_hull
from mipcert.agt.instance import PerturbationConfig
from mipcert.agt.mip_agt import mip_agt

POISON = PerturbationConfig(kind="bounded", k=1, eps=0.3)
FLIP = PerturbationConfig(kind="label_flip", k=1, flips=True)


def _inside(res, tol=1e-6):
    pad = tol * (1 + np.maximum(np.abs(res.lower), np.abs(res.upper)))
    assert np.all(res.inner_lower >= res.lower - pad)
    assert np.all(res.inner_upper <= res.upper + pad)


@pytest.mark.slow
def test_exact_poisoning_box_is_attained_by_replayed_witnesses():
    run = tiny_run("hinge", (), n=8, steps=2, batch=4, seed=3)
    res = mip_agt(run, POISON, "miqcp", "full")
    _inside(res)
    assert res.bounds_attained(rel=1e-5) == 2 * run.n_params
    # the sampled attacks are an inner bound too, never outside the exact box
    hull = sampled_hull(run, POISON, 500, seed=0)
    assert np.all(hull.lower >= res.lower - 1e-6) and np.all(hull.upper <= res.upper + 1e-6)
    assert res.inner_total_width >= hull.total_width - 1e-9


def test_label_flip_witnesses_reach_the_enumerated_hull():
    run = tiny_run("hinge", (), n=10, steps=2, batch=5, seed=8)
    res = mip_agt(run, FLIP, "milp", "full")
    hull = enumerate_hull(run, FLIP)
    _inside(res)
    np.testing.assert_allclose(res.inner_lower, hull.lower, atol=1e-6)
    np.testing.assert_allclose(res.inner_upper, hull.upper, atol=1e-6)


def test_relaxed_and_rolling_witnesses():
    run = tiny_run("hinge", (), n=10, steps=2, batch=5, seed=8)
    lp = mip_agt(run, FLIP, "lp", "full")  # LP incumbents are read as runs too: inside
    _inside(lp)
    rolling = mip_agt(run, FLIP, "milp", 1)  # the last window starts at step 1: no witness
    assert rolling.inner_lower is None and rolling.bounds_attained() is None
    assert rolling.windows[0].solves[0].attained is not None


def test_witness_reading_is_admissible():
    from mipcert.agt.witness import witness_desc

    class Fake:  # an incumbent that moves every sample: more than k, some beyond eps
        has_solution = True

    run = tiny_run("hinge", (), n=6, steps=1, batch=6, seed=1)
    pert = PerturbationConfig(kind="bounded", k=2, eps=0.1)
    from mipcert.encode.varray import const
    from mipcert.encode.sgd import SampleVars
    moves = [0.05, 0.5, 0.0, 0.2, 1e-12, 0.01]
    samples = {i: SampleVars(x=const(run.X[i] + m), y=float(run.y[i]))
               for i, m in enumerate(moves)}
    desc = witness_desc(Fake(), samples, run, pert)
    assert desc["samples"] == [1, 3]  # the k largest moves
    x = np.asarray(desc["x"])
    assert np.all(np.abs(x - run.X[[1, 3]]) <= 0.1 + 1e-15)  # clipped into the eps ball
