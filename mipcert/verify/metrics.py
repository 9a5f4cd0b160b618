"""Robustness metrics of ``papers/004_*`` (FORMULATIONS 2), per property and radius.

For the test points ``x0_1..x0_n`` of an instance and one radius ``eps``:

- **constraint satisfaction**: the fraction of points where the exact verifier *proves* the
  property on the ball (verdict ``unsat``: no violation exists);
- **constraint security**: the fraction where the property's PGD attack finds no violation
  confirmed in float64;
- **constraint accuracy**: the mean over points of the fraction of ``samples`` uniform
  samples of the ball (of the pair space for LR and fairness) that satisfy the property.

On the same points ``satisfaction <= security`` and ``satisfaction <= accuracy`` hold by
soundness: a proved point can have neither an attack's confirmed violation nor a violated
sample. Both are checked point by point; a proved point with a violation is a soundness
**conflict** (reported, logged as an error; there should never be one). Points the verifier
leaves open (time limit) count as not satisfied and are listed as ``undecided``.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from .pointjobs import job_rng, run_jobs

log = logging.getLogger(__name__)

#: uniform samples per point and radius for the accuracy
DEFAULT_SAMPLES = 1000


@dataclass
class MetricPoint:
    """One test point at one radius."""

    index: int
    eps: float
    verdict: str              # the exact verifier's
    satisfied: bool           # verdict == unsat (proved)
    secure: bool              # the attack found no confirmed violation
    accuracy: float           # fraction of samples that satisfy the property
    attack_margin: float      # smallest margin the attack reached
    sample_margin: float      # smallest margin among the samples
    seconds: float
    verify_seconds: float

    @property
    def conflict(self) -> bool:
        return self.satisfied and (not self.secure or self.accuracy < 1.0)


@dataclass
class MetricsResult:
    name: str
    network: str
    prop: str
    eps: list[float]
    samples: int
    points: list[MetricPoint]
    seconds: float = 0.0

    def at(self, eps: float) -> list[MetricPoint]:
        return [p for p in self.points if p.eps == eps]

    @property
    def conflicts(self) -> list[tuple[float, int]]:
        return [(p.eps, p.index) for p in self.points if p.conflict]

    def summary(self) -> list[dict]:
        """Per radius: the three metrics, the undecided points and the conflicts."""
        rows = []
        for eps in self.eps:
            pts = self.at(eps)
            n = max(len(pts), 1)
            rows.append({"eps": eps, "points": len(pts),
                         "satisfaction": sum(p.satisfied for p in pts) / n,
                         "security": sum(p.secure for p in pts) / n,
                         "accuracy": float(np.mean([p.accuracy for p in pts])) if pts else 0.0,
                         "undecided": sum(p.verdict in ("unknown", "timed-out") for p in pts),
                         "conflicts": sum(p.conflict for p in pts),
                         "seconds": round(sum(p.seconds for p in pts), 4)})
        return rows

    def rows(self) -> list[dict]:
        return [{k: (_num(v) if isinstance(v, float) else v) for k, v in asdict(p).items()}
                for p in self.points]

    def to_json(self) -> dict:
        return {"name": self.name, "network": self.network, "property": self.prop,
                "eps": self.eps, "samples": self.samples, "seconds": round(self.seconds, 4),
                "summary": self.summary(), "conflicts": [list(c) for c in self.conflicts],
                "points": self.rows()}


def _num(v):
    return None if v is None or not math.isfinite(v) else float(v)


def metrics_job(job: dict) -> MetricPoint:
    """The three metrics of one point at one radius (module-level: picklable)."""
    start = time.perf_counter()
    p = job["config"].pose(job["network"], job["x0"], job["label"], job["eps"],
                           job["input_lo"], job["input_hi"], job["reference"])
    rng = job_rng(job["seed"], job["eps_index"], job["index"])
    S = p.sample(rng, job["samples"])
    mu = p.margins(S)
    accuracy = float(1.0 - np.mean(p.violated(mu))) if len(mu) else 1.0
    u, attack_mu = p.attack(rng)
    secure = p.confirm(u) is None
    # the verifier's own falsification is skipped: the attack above already ran, and the
    # proof (or its MILP witness) is what satisfaction needs; checking a proof against the
    # independent attack and samples is the point of the conflict check below
    r = p.verify(solver=job["solver"], timeout=job["timeout"], seed=job["seed"],
                 threads=job["threads"], attack=False)
    point = MetricPoint(job["index"], job["eps"], r.verdict, r.verdict == "unsat", secure,
                        accuracy, float(attack_mu), float(mu.min()) if len(mu) else math.inf,
                        time.perf_counter() - start, r.seconds)
    if point.conflict:
        log.error("SOUNDNESS CONFLICT: %s proved at point %d, eps %g, but the attack or a "
                  "sample violates it (attack margin %.6g, sample margin %.6g)", p.kind,
                  point.index, point.eps, attack_mu, point.sample_margin)
    return point


def metrics(network, X, labels, eps_values, config, *, samples: int = DEFAULT_SAMPLES,
            input_lo=0.0, input_hi=1.0, solver="highs", timeout=30.0, threads=1, seed=0,
            reference=None, name="metrics", network_name="", progress=None,
            workers: int | None = None, scheduler: str | None = None) -> MetricsResult:
    """The metrics of ``config`` on points ``X`` ``(n, d)`` / ``labels`` ``(n,)`` at every
    radius; one job per point and radius, fanned out like ``compare`` (module docstring)."""
    from ..errors import InputError

    if samples < 1:
        raise InputError(f"--samples {samples}: need at least one sample per point")
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    X, labels, index = config.select(X, labels)
    start = time.perf_counter()
    jobs = [dict(network=network, config=config, x0=X[i], label=int(labels[i]),
                 index=int(index[i]), eps=float(eps), eps_index=e, input_lo=input_lo,
                 input_hi=input_hi,
                 reference=reference, samples=samples, solver=solver, timeout=timeout,
                 threads=threads, seed=seed)
            for e, eps in enumerate(eps_values) for i in range(len(X))]
    points = run_jobs(metrics_job, jobs, workers=workers, scheduler=scheduler, progress=progress)
    return MetricsResult(name, network_name, config.label(), [float(e) for e in eps_values],
                         samples, points, time.perf_counter() - start)


def metrics_instance(instance, *, first=None, samples: int = DEFAULT_SAMPLES, timeout=None,
                     solver=None, progress=None, workers=None, scheduler=None) -> MetricsResult:
    """:func:`metrics` on an instance file's network, points, radii and property."""
    from .compare import instance_run
    from .props import PropertyConfig

    network, X, y, kwargs = instance_run(instance, first=first, timeout=timeout, solver=solver)
    return metrics(network, X, y, instance.eps, instance.prop or PropertyConfig("cr"),
                   samples=samples, progress=progress, workers=workers, scheduler=scheduler,
                   **kwargs)
