"""Interval Abstract Gradient Training: a box containing every reachable parameter vector.

FORMULATIONS 3.5: for every step ``t`` of the fixed run, bound the per-sample gradients of
the batch over the current box (:mod:`.propagate`), aggregate them under the perturbation
model with a per-batch budget (:mod:`.aggregate`) into ``[d_l, d_u]`` (both fused, without
materialising what an aggregation does not need, in :mod:`.stepbounds`) and update

    theta_l <- theta_l - eta_t d_u,     theta_u <- theta_u - eta_t d_l.

Floating point: everything is float64 with round-to-nearest (no directed rounding). When
the perturbation is non-zero, each new box is widened outward by
:data:`~mipcert.bounds.interval.OUTWARD_REL` relative to the magnitudes involved, which
covers the rounding of the sums (see docs/agt.md). A zero perturbation is not widened: the
box then collapses to the nominal trajectory.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..bounds import interval as iv
from ..errors import InputError
from . import aggregate as agg
from .instance import PerturbationConfig
from .propagate import LabelChange, gradient_blocks
from .run import TrainingRun
from .stepbounds import descent_bounds

log = logging.getLogger(__name__)


@dataclass
class AGTResult:
    lower: np.ndarray          # (P,)
    upper: np.ndarray          # (P,)
    seconds: float
    widths: list[float] = field(default_factory=list)  # total width after each step

    @property
    def total_width(self) -> float:
        return float(np.sum(self.upper - self.lower))

    def contains(self, theta: np.ndarray, tol=0.0) -> bool:
        """``theta`` in the box widened by ``tol`` (a number or one per parameter), as the
        MIP and hull boxes read it."""
        return bool(np.all(self.lower - tol <= theta) and np.all(theta <= self.upper + tol))


def check_budget(run: TrainingRun, pert: PerturbationConfig) -> None:
    """Refuse budgets the per-batch rules cannot take (removal emptying a batch, ...)."""
    smallest = min(len(b) for b in run.batches)
    if pert.kind == "removal" and pert.k >= smallest:
        raise InputError(f"removal of k = {pert.k} could empty a batch of {smallest} samples")
    if pert.kind == "substitution" and run.clip is None:
        raise InputError("substitution needs clipped gradients ([training] clip = GAMMA)")
    if pert.k > max(len(b) for b in run.batches):
        raise InputError(f"k = {pert.k} is larger than the batch size")
    if pert.eps < 0 or pert.nu < 0 or pert.k < 0:
        raise InputError("k, eps and nu must be >= 0")


def _aggregate_block(g, p, pert: PerturbationConfig, gamma):
    (gl, gu) = g
    if pert.is_zero:
        return agg.nominal(gl, gu)
    if pert.kind in ("bounded", "label_flip"):
        return agg.bounded(gl, gu, torch.minimum(p[0], gl), torch.maximum(p[1], gu), pert.k)
    if pert.kind == "removal":
        return agg.removal(gl, gu, pert.k)
    if pert.kind == "substitution":
        return agg.substitution(gl, gu, pert.k, gamma)
    raise InputError(f"unknown perturbation kind {pert.kind!r}")


def _step_bounds(lo, hi, run, Xb, yb, pert: PerturbationConfig):
    """Descent-direction bounds ``(d_l, d_u, mag)`` for one batch (``(P,)`` each), with
    ``mag`` a bound on ``mean_i |g_i|`` (None for a zero perturbation); the fused path
    (:func:`.stepbounds.descent_bounds`)."""
    dl, du, mag = descent_bounds(lo, hi, run.layers, Xb, yb, run.loss, pert, run.clip,
                                 run.n_classes)
    if mag is None:
        return dl, du, None
    return dl, du, mag / Xb.shape[0] + pert.k * (run.clip or 0.0)


def _step_bounds_reference(lo, hi, run, Xb, yb, pert: PerturbationConfig):
    """:func:`_step_bounds` by materialising every per-sample gradient bound
    (:func:`.propagate.gradient_blocks`) and the rules of :mod:`.aggregate` as written in
    FORMULATIONS 3.5 (slow; kept as the executable specification the tests compare to)."""
    change = None
    eps = 0.0
    if pert.kind in ("bounded", "label_flip") and not pert.is_zero:
        change, eps = LabelChange(flip=pert.flips, nu=pert.nu), pert.eps
    clean, pois, mag = gradient_blocks(lo, hi, run.layers, Xb, yb, run.loss, run.clip,
                                       eps=eps, change=change, n_classes=run.n_classes)
    pois = pois or [None] * len(clean)
    parts = [_aggregate_block(g, p, pert, run.clip) for g, p in zip(clean, pois)]
    dl = torch.cat([d[0] for d in parts])
    du = torch.cat([d[1] for d in parts])
    if pert.is_zero:
        return dl, du, None
    b = Xb.shape[0]
    mag = mag / b + pert.k * (run.clip or 0.0)
    return dl, du, mag


def _steps(run: TrainingRun, pert: PerturbationConfig, dev, lo, hi, start: int, outward: float,
           step):
    """Yield ``(t, lo, hi)``: the box after step ``t`` for ``t = start, start + 1, ...``,
    starting from the box ``[lo, hi]`` (torch tensors on ``dev``) before step ``start``."""
    X = torch.as_tensor(run.X, dtype=torch.float64, device=dev)
    y = torch.as_tensor(run.y, dtype=torch.float64, device=dev)
    for t in range(start, len(run.batches)):
        batch, lr = run.batches[t], run.lrs[t]
        idx = torch.as_tensor(batch, dtype=torch.long, device=dev)
        dl, du, mag = step(lo, hi, run, X[idx], y[idx], pert)
        new_lo, new_hi = lo - lr * du, hi - lr * dl
        if mag is not None and outward > 0:
            scale = lo.abs() + hi.abs() + lr * (dl.abs() + du.abs() + mag)
            new_lo, new_hi = iv.widen(new_lo, new_hi, outward, scale)
        lo, hi = new_lo, new_hi
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise InputError(f"interval AGT diverged at step {t} (infinite bounds): lower the "
                             "learning rate, the number of epochs or the budget")
        yield t, lo, hi


def interval_agt(run: TrainingRun, pert: PerturbationConfig, device: str = "cpu",
                 outward: float = iv.OUTWARD_REL, reference: bool = False) -> AGTResult:
    """Run interval AGT over the whole training run; returns the final parameter box.
    ``reference=True`` uses the slow materialising path (for tests)."""
    step = _step_bounds_reference if reference else _step_bounds
    iv.keep_freed_memory()
    check_budget(run, pert)
    dev = iv.resolve_device(device)
    t0 = time.perf_counter()
    lo = torch.as_tensor(run.theta0, dtype=torch.float64, device=dev).clone()
    hi = lo.clone()
    widths = []
    for t, lo, hi in _steps(run, pert, dev, lo, hi, 0, outward, step):
        widths.append(float((hi - lo).sum()))
        log.debug("step %d: total width %.6g", t, widths[-1])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    lower, upper = lo.cpu().numpy(), hi.cpu().numpy()
    log.info("interval AGT: %d steps, total width %.6g, %.3f s", len(run.batches),
             float(np.sum(upper - lower)), seconds)
    return AGTResult(lower=lower, upper=upper, seconds=seconds, widths=widths)


def interval_boxes(run: TrainingRun, pert: PerturbationConfig, device: str = "cpu",
                   start: int = 0, lower: np.ndarray | None = None,
                   upper: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The interval AGT box before every step ``start .. T`` (``T + 1 - start`` pairs of
    ``(P,)`` arrays), starting from ``[lower, upper]`` before step ``start`` (default: the
    point ``theta_0`` at step 0). These are the warm-start bounds of the MIP methods."""
    check_budget(run, pert)
    dev = iv.resolve_device(device)
    if lower is None:
        if start != 0:
            raise InputError("interval_boxes needs the box before step start")
        lower = upper = run.theta0
    lo = torch.as_tensor(np.asarray(lower, np.float64), device=dev).clone()
    hi = torch.as_tensor(np.asarray(upper, np.float64), device=dev).clone()
    boxes = [(lo.cpu().numpy(), hi.cpu().numpy())]
    for _, lo, hi in _steps(run, pert, dev, lo, hi, start, iv.OUTWARD_REL, _step_bounds):
        boxes.append((lo.cpu().numpy(), hi.cpu().numpy()))
    return boxes
