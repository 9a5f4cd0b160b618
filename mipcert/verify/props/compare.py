"""``mipcert compare`` for every property kind other than CR (which keeps its batched path in
:mod:`mipcert.verify.compare`): the same table, CSV, JSON and plot, read through the
property's margin ``mu`` (:mod:`mipcert.verify.props.base`).

Per test point and radius (one job, fanned out by :mod:`mipcert.verify.pointjobs`):

- ``nominal``: ``mu`` at the test point itself (for relational properties: at the centre of
  each pair box); a property already violated there is marked ``m`` like a misclassified
  point, and LP / MILP are not run;
- ``attack``: the smallest ``mu`` the property's PGD attack found (an upper bound of
  ``min mu``); a violation confirmed in float64 *falsifies* the point for every method;
- ``ibp``, ``crown``, ``lp``: the property's proven lower bounds of ``min mu``;
- ``milp``: the exact verifier's bound (``unsat``), or the margin of its float64 witness.

A method *certifies* a point when ``PosedProperty.certifies(bound)``; a certificate on a
falsified point is a soundness ``conflict``.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from ..compare_result import CompareResult, MethodResult, PointResult, Progress
from ..pointjobs import job_rng, run_jobs

log = logging.getLogger(__name__)


@dataclass
class PropertyPoint(PointResult):
    """A :class:`PointResult` whose ``m`` mark means: violated at the test point itself."""

    violated_nominal: bool = False

    @property
    def misclassified(self) -> bool:
        return self.violated_nominal


def _num(v):
    return None if v is None or not math.isfinite(v) else float(v)


def _status(certified: bool, broken: bool, at_nominal: bool) -> str:
    if broken or at_nominal:
        return "conflict" if certified else ("misclassified" if at_nominal else "falsified")
    return "certified" if certified else "open"


def point_job(job: dict) -> PropertyPoint:
    """Every method on one test point at one radius (a module-level function: picklable)."""
    p = job["config"].pose(job["network"], job["x0"], job["label"], job["eps"],
                           job["input_lo"], job["input_hi"], job["reference"])
    rng = job_rng(job["seed"], job["eps_index"], job["index"])
    centres = np.vstack([(lo + hi) / 2 for lo, hi in p.regions])
    mus = p.margins(centres)
    at_nominal = bool(p.violated(mus.min()))
    t0 = time.perf_counter()
    u, attack_mu = p.attack(rng)
    found = p.confirm(u)
    pt = PropertyPoint(job["index"], job["label"], job["predicted"], job["eps"],
                       float(mus.min()), float(attack_mu), time.perf_counter() - t0,
                       found is not None or at_nominal, violated_nominal=at_nominal)
    if at_nominal:
        pt.counterexample = centres[int(np.argmin(mus))]
    elif found is not None:
        pt.counterexample = found[0]
    broken = pt.falsified
    solver, timeout, threads = job["solver"], job["timeout"], job["threads"]
    for m in job["methods"]:
        if m in ("lp", "milp") and at_nominal:
            pt.methods[m] = MethodResult(None, 0.0, "misclassified", "not run")
            continue
        t1 = time.perf_counter()
        if m != "milp":
            b = p.bound(m, solver=solver, threads=threads, timeout=timeout)
            pt.methods[m] = MethodResult(_num(b), time.perf_counter() - t1,
                                         _status(p.certifies(b), broken, at_nominal))
            continue
        r = p.verify(solver=solver, timeout=timeout, seed=job["seed"], threads=threads,
                     attack=False)
        bound = r.margin if r.verdict == "sat" else r.bound
        status = _status(r.verdict == "unsat" and p.certifies(r.bound), broken, False)
        if r.verdict == "sat":
            status = "falsified"
            if not broken:
                pt.falsified, pt.counterexample = True, r.counterexample[0]
        pt.methods[m] = MethodResult(_num(bound), r.seconds, status, r.verdict)
    for m, res in pt.methods.items():
        if res.status == "conflict":
            log.error("SOUNDNESS CONFLICT: %s certifies %s for point %d at eps %g, but a "
                      "validated violation exists", m, p.kind, pt.index, pt.eps)
    return pt


def compare_property(network, X, labels, eps_values, config, methods, *, input_lo=0.0,
                     input_hi=1.0, solver="highs", timeout=30.0, threads=1, seed=0,
                     reference=None, name="compare", network_name="",
                     progress: Progress | None = None, workers: int | None = None,
                     scheduler: str | None = None) -> CompareResult:
    """Every method on every point ``X`` ``(n, d)`` at every radius for ``config`` (a
    :class:`~mipcert.verify.props.PropertyConfig`); see the module docstring."""
    from ..instance import METHODS

    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    X, labels, index = config.select(X, labels)
    methods = [m for m in METHODS if m in set(methods)]
    predicted = network.forward(X).argmax(axis=1)
    start = time.perf_counter()
    jobs = [dict(network=network, config=config, x0=X[i], label=int(labels[i]),
                 predicted=int(predicted[i]), index=int(index[i]), eps=float(eps),
                 eps_index=e, input_lo=input_lo, input_hi=input_hi, reference=reference,
                 methods=methods, solver=solver, timeout=timeout, threads=threads, seed=seed)
            for e, eps in enumerate(eps_values) for i in range(len(X))]
    points = run_jobs(point_job, jobs, workers=workers, scheduler=scheduler, progress=progress)
    return CompareResult(name, network_name, [float(e) for e in eps_values], methods, points,
                         solver, timeout, time.perf_counter() - start, network.num_relus,
                         prop=config.label())
