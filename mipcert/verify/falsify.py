"""Falsification before any solve: random points, then a PGD attack on the margin (numpy).

The attack minimises one clause margin ``max_r (C_r f(x) - d_r)`` at a time by signed-gradient
steps projected onto the region's box (FORMULATIONS 5's PGD, on the property's margin instead
of the loss; the projected-step loop lives in :mod:`mipcert.attacks`). A point is only returned after the caller's ``check`` confirms it.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..attacks import projected_sign_descent

log = logging.getLogger(__name__)


def clause_margin_and_grad(network, clause, x):
    """Margin ``max_r (C_r f(x) - d_r)`` ``(B,)`` and its (sub)gradient ``(B, n)``."""
    y = network.forward(x)
    rows = y @ clause.C.T - clause.d  # (B, r)
    r_star = np.argmax(rows, axis=1)
    value, grad = network.input_gradient(x, clause.C[r_star])
    return value - clause.d[r_star], grad


def pgd(network, region, clause, starts, steps: int = 60, step_frac: float = 0.25):
    """PGD on one clause margin from ``starts`` ``(B, n)``; returns the best points and margins.

    The step shrinks linearly from ``step_frac`` of the box width to 0.1 % of it; the loop is
    :func:`mipcert.attacks.projected_sign_descent` (shared with the attacks of adversary
    correction).
    """
    lo, hi = region.lo, region.hi
    width = hi - lo

    def step(it):
        return step_frac * width * (1.0 - it / steps) + 1e-3 * width

    return projected_sign_descent(lambda x: clause_margin_and_grad(network, clause, x),
                                  starts, lo, hi, steps, step)


# Multiply-adds spent on random and local search (about a second of numpy).
SEARCH_BUDGET = 2e9
# Gaussian local search pays off in few dimensions only; above this PGD does the work.
LOCAL_SEARCH_MAX_DIM = 16


def _sample_budget(network) -> int:
    params = sum(blk.W.size for blk in network.affine_relu_stack())
    return int(np.clip(SEARCH_BUDGET / max(params, 1), 256, 200_000))


def local_search(network, region, rng, budget: int, rounds: int = 8, keep: int = 64):
    """Uniform samples, then Gaussian samples around the best ones at shrinking scales.

    Returns ``(x (B, n), margin (B,))`` of the points kept in the last round.
    """
    lo, hi = region.lo, region.hi
    n, width = lo.size, hi - lo
    first = budget // 2
    X = np.vstack([lo + width * rng.random((first, n)), (lo + hi)[None] / 2, lo[None], hi[None]])
    m = region.margin(network.forward(X))
    per = max(1, (budget - first) // (rounds * keep))
    for k in range(rounds):
        idx = np.argsort(m)[:keep]
        if m[idx[0]] <= 0:
            break
        best = X[idx]
        Y = np.clip(np.repeat(best, per, axis=0)
                    + rng.normal(size=(best.shape[0] * per, n)) * width * (0.1 * 0.5 ** k), lo, hi)
        X = np.vstack([best, Y])
        m = np.concatenate([m[idx], region.margin(network.forward(Y))])
    return X, m


def falsify(network, region, *, rng: np.random.Generator, restarts: int = 8, steps: int = 60,
            check=None, budget: int | None = None, deadline: float | None = None):
    """Search ``region`` for an input whose output violates the property.

    Random + local search for inputs of at most :data:`LOCAL_SEARCH_MAX_DIM` dimensions
    (``budget`` forward passes, default from the network size), then uniform samples and PGD
    per clause. ``check(x) -> bool`` confirms a candidate (the verifier's float64 and
    reference check). ``deadline`` (``time.perf_counter()``) skips the remaining PGD runs.
    Returns the first confirmed ``x`` ``(n,)`` or ``None``.
    """
    lo, hi = region.lo, region.hi
    n = lo.size
    if n <= LOCAL_SEARCH_MAX_DIM:
        xs, ms = local_search(network, region, rng, budget or _sample_budget(network))
        for i in np.argsort(ms)[:4]:
            if ms[i] <= 0 and (check is None or check(xs[i])):
                log.info("falsified by random/local search (margin %.3g)", ms[i])
                return xs[i]
    # uniform points plus the centre and the two extreme corners (pixels all at a bound
    # are classic adversarial starts)
    samples = np.vstack([lo + (hi - lo) * rng.random((256, n)), (lo + hi)[None] / 2, lo[None],
                         hi[None]])
    margins = region.margin(network.forward(samples))
    for i in np.argsort(margins)[:4]:
        if margins[i] <= 0 and (check is None or check(samples[i])):
            log.info("falsified by random sampling (margin %.3g)", margins[i])
            return samples[i]
    for k, clause in enumerate(region.clauses):
        if deadline is not None and time.perf_counter() > deadline:
            log.info("falsification stopped by the time limit")
            return None
        cm = clause.margin(network.forward(samples))
        starts = np.vstack([samples[np.argsort(cm)[: restarts // 2]], lo[None], hi[None],
                            lo + (hi - lo) * rng.random((restarts - restarts // 2, n))])
        xs, ms = pgd(network, region, clause, starts, steps)
        for i in np.argsort(ms)[:2]:
            if ms[i] <= 0 and (check is None or check(xs[i])):
                log.info("falsified by PGD on clause %d (margin %.3g)", k, ms[i])
                return xs[i]
    return None


def polish(network, region, x, steps: int = 30):
    """Push a near-counterexample (e.g. a MILP incumbent) deeper with a short PGD."""
    best, best_m = None, np.inf
    for clause in region.clauses:
        xs, ms = pgd(network, region, clause, np.atleast_2d(x), steps, step_frac=0.02)
        if ms[0] < best_m:
            best, best_m = xs[0], ms[0]
    return best, best_m
