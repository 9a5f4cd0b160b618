"""Guards of optimisation-based AGT against wrong solver answers (docs/agt_mip.md).

Solvers prove bounds up to tolerances, and on these models both HiGHS and SCIP were seen to
return wrong "optimal" values. Two guards keep the boxes sound:

- :func:`model_boxes`: the boxes handed to a model are widened by a margin above the
  solvers' tolerances, so no reachable point sits within a tolerance of a bound;
- :func:`check_against_known`: every proved box must contain known reachable parameter
  vectors (replayed perturbed runs); a bound that excludes one is refused and the previous
  valid bound is kept.
"""
from __future__ import annotations

import logging

import numpy as np

from .instance import PerturbationConfig
from .run import TrainingRun

log = logging.getLogger(__name__)

#: how far outside a proved box a known reachable point may lie (solver tolerances)
SENTINEL_TOL = 1e-6
#: random admissible perturbed runs replayed to check every proved box
SENTINEL_RUNS = 16
#: enumerate every admissible perturbation for the check when there are at most this many
SENTINEL_ENUMERATE = 5000


def reachable_trajectories(run: TrainingRun, pert: PerturbationConfig,
                           n: int = SENTINEL_RUNS, seed: int = 0) -> np.ndarray:
    """``(R, T + 1, P)``: known reachable trajectories, replayed by the numpy reference: every
    admissible perturbed run when a discrete threat has at most :data:`SENTINEL_ENUMERATE`
    of them (then a proved box that misses any reachable value is caught), else the nominal
    run and ``n`` random admissible ones (:func:`mipcert.agt.enumerate.random_descs`)."""
    from ..network import training as ref
    from .enumerate import _enumerate_descs, _is_discrete, enumeration_count, random_descs
    from .perturb import perturbed_data
    out = [run.train_trajectory()]
    if pert.is_zero:
        return np.stack(out)
    if _is_discrete(pert) and enumeration_count(run, pert) <= SENTINEL_ENUMERATE:
        descs = _enumerate_descs(run, pert)
    else:
        descs = random_descs(run, pert, n, np.random.default_rng(seed))
    for desc in descs:
        X, y, batches = perturbed_data(run, desc)
        out.append(ref.train(run.theta0, run.layers, X, y, batches, run.lrs, run.loss,
                             run.clip, trajectory=True))
    return np.stack(out)


def check_against_known(box, points, interval_box, record, names):
    """Known reachable parameter vectors (``(R, P)``: the nominal run and sampled perturbed
    runs) are feasible points of every model: a proved box that excludes one (beyond solver
    tolerances) exposes a wrong solver answer. So does a solve's replayed witness
    (``SolveRecord.attained``: a value some admissible run reaches). Such coordinates fall
    back to the previous valid box of the step, and the record says so."""
    lo, hi = box
    pmin, pmax = points.min(axis=0), points.max(axis=0)
    col = {n: j for j, n in enumerate(names)}
    for s in record.solves:
        if s.attained is not None and np.isfinite(s.attained) and s.target in col:
            j = col[s.target]
            pmin[j], pmax[j] = min(pmin[j], s.attained), max(pmax[j], s.attained)
    tol = SENTINEL_TOL * (1.0 + np.maximum(np.abs(pmin), np.abs(pmax)))
    bad = np.flatnonzero((pmin < lo - tol) | (pmax > hi + tol))
    if bad.size == 0:
        return box
    lo, hi = lo.copy(), hi.copy()
    for j in bad:
        log.error("step %d: the proved bounds [%.10g, %.10g] of %s exclude a reachable value "
                  "(%.10g .. %.10g): the solver's answer is wrong; using the previous bounds",
                  record.stop, lo[j], hi[j], names[j], pmin[j], pmax[j])
        lo[j], hi[j] = interval_box[0][j], interval_box[1][j]
        for s in record.solves:
            if s.target == names[j]:
                s.note = "refuted: the solver's bound excluded a reachable run; previous bound used"
                s.used = s.interval_bound
    return lo, hi



#: relative margin by which the boxes handed to a model are widened (not the reported ones)
MODEL_BOX_MARGIN = 1e-6


def model_boxes(boxes):
    """The boxes as bounds for a model: every coordinate of positive width widened by
    :data:`MODEL_BOX_MARGIN` (relative, plus the same absolute). Proved boxes are exact up
    to 1e-9, and a variable whose range is that narrow (a parameter multiplying a feature of
    1e-10) led HiGHS's and SCIP's presolve to cut off feasible points; a margin above the
    solvers' tolerances keeps every reachable point strictly inside. Point coordinates
    (exact constants, e.g. ``theta_0``) stay points."""
    out = []
    for lo, hi in boxes:
        pad = MODEL_BOX_MARGIN * (1.0 + np.maximum(np.abs(lo), np.abs(hi)))
        wide = hi > lo
        out.append((np.where(wide, lo - pad, lo), np.where(wide, hi + pad, hi)))
    return out
