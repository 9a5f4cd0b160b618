"""Zero-width perturbations reproduce the nominal run; larger budgets give larger boxes."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mipcert.agt.interval_agt import interval_agt

from .helpers import build, small_doc

CASES = [("hinge", "label_flip"), ("bce", "bounded"), ("cross_entropy", "removal"),
         ("squared", "bounded"), ("bce", "substitution")]


def _doc(loss, kind, hidden=(4,)):
    return small_doc(loss=loss, kind=kind, k=1, hidden=hidden, eps=0.02,
                     nu=0.05 if loss == "squared" else 0.0,
                     flips=loss != "squared", clip=0.5 if kind == "substitution" else None)


@pytest.mark.parametrize("loss,kind", CASES)
def test_zero_perturbation_is_the_nominal_trajectory(loss, kind):
    inst, data, run = build(_doc(loss, kind))
    nominal = run.train()
    zero = [replace(inst.perturbation, k=0)]
    if kind == "bounded":
        zero.append(replace(inst.perturbation, eps=0.0, nu=0.0, flips=False))
    for pert in zero:
        res = interval_agt(run, pert)
        assert np.array_equal(res.lower, res.upper)  # the box collapses to a point
        np.testing.assert_allclose(res.lower, nominal, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("loss,kind", CASES)
def test_larger_budget_never_gives_a_smaller_box(loss, kind):
    inst, data, run = build(_doc(loss, kind))
    prev = None
    for k in range(0, 4):
        res = interval_agt(run, replace(inst.perturbation, k=k))
        if prev is not None:
            assert np.all(res.lower <= prev.lower) and np.all(prev.upper <= res.upper)
        prev = res
    if kind == "bounded":
        prev = None
        for eps in (0.0, 0.01, 0.05, 0.1):
            res = interval_agt(run, replace(inst.perturbation, k=2, eps=eps))
            if prev is not None:
                assert np.all(res.lower <= prev.lower) and np.all(prev.upper <= res.upper)
            prev = res
