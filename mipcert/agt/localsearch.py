"""Hill climbing from the best perturbations found: the last stage of the sampled hull.

For each parameter ``j`` and direction ``s`` (maximise ``s theta_T[j]``), start from the data
set that attains the current bound and train every *neighbour* (:func:`neighbours`):

* one feature of one changed sample moved to the other end of its range (the mirrored
  corner ``2 x_i - x_i'`` of the ``eps`` box; for substitution the other end of the data's
  feature range);
* one changed sample's label set to another admissible value (a flip undone or done, the
  other end of ``y_i +- nu``, another class);
* one changed sample swapped for a random unchanged one (changed at a random corner), or a
  random sample added when fewer than ``k`` are changed;

keep the best if it improves, and repeat up to ``steps`` times. Every neighbour is an
admissible data set, so everything it reaches is reached; the search only decides which
data sets are tried.
"""
from __future__ import annotations

import numpy as np

from .instance import PerturbationConfig
from .perturb import flipped_labels, label_space, used_samples
from .run import TrainingRun


def _label_options(run: TrainingRun, pert: PerturbationConfig, i: int) -> list[float]:
    """Every label sample ``i`` may carry under ``pert`` (a finite set; ``nu``: both ends)."""
    y0 = float(run.y[i])
    space, C = label_space(run)
    if pert.kind == "substitution":
        if space == "value":
            return [float(run.y.min()), float(run.y.max())]
        return [-1.0, 1.0] if space == "pm1" else [float(c) for c in range(C)]
    if pert.kind == "label_flip":
        return flipped_labels(run, y0)
    opts = [y0]
    if pert.flips:
        opts += flipped_labels(run, y0)
    if pert.nu > 0:
        opts = [y0 - pert.nu, y0 + pert.nu]
    return opts


def _random_change(run, pert, i, rng, lo, hi):
    """A random admissible change of sample ``i``: ``(x or None, label or None)``."""
    if pert.kind == "removal":
        return None, None
    label = float(rng.choice(_label_options(run, pert, i)))
    if pert.kind == "substitution":
        return np.where(rng.random(run.X.shape[1]) < 0.5, lo, hi), label
    if pert.eps > 0:
        return run.X[i] + pert.eps * rng.choice((-1.0, 1.0), size=run.X.shape[1]), label
    return None, label


def _rebuild(pert, samples, xs, labels) -> dict:
    d = {"kind": pert.kind, "samples": [int(i) for i in samples]}
    if pert.kind != "removal":
        d["labels"] = [float(v) for v in labels]
        if xs is not None:
            d["x"] = [np.asarray(x, dtype=np.float64).tolist() for x in xs]
    return d


def neighbours(run: TrainingRun, pert: PerturbationConfig, desc: dict,
               rng: np.random.Generator, n_swaps: int = 16) -> list[dict]:
    """The data sets one move away from ``desc`` (see the module docstring)."""
    samples = list(desc.get("samples", []))
    U = used_samples(run)
    lo, hi = run.X.min(axis=0), run.X.max(axis=0)
    has_x = pert.kind == "substitution" or (pert.kind == "bounded" and pert.eps > 0)
    xs = [np.asarray(x, dtype=np.float64) for x in desc.get("x", [])] if has_x else None
    if has_x and not xs:
        xs = [run.X[i].copy() for i in samples]
    labels = list(desc.get("labels", run.y[samples].tolist()))
    out = []
    for r, i in enumerate(samples):
        if has_x:
            for c in range(run.X.shape[1]):
                x = xs[r].copy()
                if pert.kind == "substitution":
                    x[c] = hi[c] if x[c] != hi[c] else lo[c]
                else:
                    x[c] = 2.0 * run.X[i, c] - x[c]
                if x[c] != xs[r][c]:
                    out.append(_rebuild(pert, samples, xs[:r] + [x] + xs[r + 1:], labels))
        if pert.kind != "removal":
            for v in _label_options(run, pert, i):
                if v != labels[r]:
                    out.append(_rebuild(pert, samples, xs, labels[:r] + [v] + labels[r + 1:]))
    free = np.setdiff1d(U, samples)
    for _ in range(n_swaps if len(free) else 0):
        u = int(rng.choice(free))
        x, v = _random_change(run, pert, u, rng, lo, hi)
        if len(samples) < pert.k:
            s2, r = samples + [u], len(samples)
        else:
            r = int(rng.integers(len(samples)))
            s2 = samples[:r] + [u] + samples[r + 1:]
        x2 = None if xs is None else xs[:r] + [x] + xs[r + 1:]
        l2 = labels[:r] + [v] + labels[r + 1:] if pert.kind != "removal" else []
        out.append(_rebuild(pert, s2, x2, l2))
    return out


def hill_climb(run: TrainingRun, pert: PerturbationConfig, start: dict, j: int, s: float,
               value: float, evaluate, rng: np.random.Generator, steps: int = 5) -> None:
    """Improve ``s theta_T[j]`` (now ``value`` at ``start``) by best-neighbour moves;
    every neighbour goes through ``evaluate(descs) -> (R, P)`` (the caller keeps them)."""
    desc = start
    for _ in range(steps):
        cands = neighbours(run, pert, desc, rng)
        if not cands:
            return
        vals = s * evaluate(cands)[:, j]
        r = int(np.argmax(vals))
        if vals[r] <= value:
            return
        desc, value = cands[r], vals[r]
