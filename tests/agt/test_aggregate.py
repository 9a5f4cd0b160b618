"""Aggregation rules (FORMULATIONS 3.5) against brute force over all subsets."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mipcert.agt import aggregate as agg

TOL = 1e-12


def _t(a):
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _bounds(rng, b, P=3):
    gl = rng.normal(size=(b, P))
    gu = gl + rng.uniform(0, 1, size=(b, P))
    return gl, gu


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), b=st.integers(2, 6), k=st.integers(0, 5))
def test_removal_bounds_every_subset_mean(seed, b, k):
    if k >= b:
        return
    rng = np.random.default_rng(seed)
    gl, gu = _bounds(rng, b)
    lo, hi = (x.numpy() for x in agg.removal(_t(gl), _t(gu), k))
    for j in range(k + 1):  # j removed: the mean divides by b - j
        for keep in itertools.combinations(range(b), b - j):
            keep = list(keep)
            assert np.all(lo <= gl[keep].mean(0) + TOL)
            assert np.all(gu[keep].mean(0) <= hi + TOL)
    # the rule is attained: tight for the j = k case
    best = max(gu[list(c)].mean(0)[0] for c in itertools.combinations(range(b), b - k))
    assert hi[0] == pytest.approx(best)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), b=st.integers(1, 6), k=st.integers(0, 6))
def test_substitution_bounds_every_replacement(seed, b, k):
    gamma = 0.7
    rng = np.random.default_rng(seed)
    gl, gu = (np.clip(x, -gamma, gamma) for x in _bounds(rng, b))
    lo, hi = (x.numpy() for x in agg.substitution(_t(gl), _t(gu), k, gamma))
    for j in range(min(k, b) + 1):
        for S in itertools.combinations(range(b), j):
            rest = [i for i in range(b) if i not in S]
            low = (gl[rest].sum(0) - j * gamma) / b  # replaced terms at -gamma
            high = (gu[rest].sum(0) + j * gamma) / b
            assert np.all(lo <= low + TOL) and np.all(high <= hi + TOL)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), b=st.integers(1, 6), k=st.integers(0, 6))
def test_bounded_bounds_every_poisoned_subset(seed, b, k):
    rng = np.random.default_rng(seed)
    gl, gu = _bounds(rng, b)
    gpl, gpu = gl - rng.uniform(0, 2, gl.shape), gu + rng.uniform(0, 2, gu.shape)
    lo, hi = (x.numpy() for x in agg.bounded(_t(gl), _t(gu), _t(gpl), _t(gpu), k))
    for j in range(min(k, b) + 1):
        for S in itertools.combinations(range(b), j):
            low = np.where(np.isin(np.arange(b), S)[:, None], gpl, gl).sum(0) / b
            high = np.where(np.isin(np.arange(b), S)[:, None], gpu, gu).sum(0) / b
            assert np.all(lo <= low + TOL) and np.all(high <= hi + TOL)


def test_removal_refuses_emptying_a_batch():
    with pytest.raises(Exception, match="empty"):
        agg.removal(_t(np.zeros((2, 1))), _t(np.zeros((2, 1))), 2)
