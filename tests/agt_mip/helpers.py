"""Tiny training runs for the optimisation-based AGT tests (built directly, no instance file)."""
from __future__ import annotations

import itertools

import numpy as np

from mipcert.agt.instance import PerturbationConfig
from mipcert.agt.run import TrainingRun, make_layers
from mipcert.network import training as ref


def tiny_run(loss="hinge", hidden=(), n=8, d=2, steps=2, batch=4, seed=0, clip=None,
             lr=0.5, n_classes=None, pm1=False) -> TrainingRun:
    """``n`` samples in ``d`` dimensions, ``steps`` SGD steps over fixed batches
    (``pm1``: squared error on +-1 labels, which label flips need)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if loss in ("hinge",):
        y = np.where(X[:, 0] + 0.3 * rng.normal(size=n) > 0, 1.0, -1.0)
        n_out, n_classes = 1, 2
    elif loss == "squared":
        y = X[:, 0] - 0.5 * X[:, 1] + 0.1 * rng.normal(size=n)
        n_out, n_classes = 1, None
        if pm1:
            y, n_classes = np.where(y > 0, 1.0, -1.0), 2
    elif loss == "bce":
        y = (X[:, 0] > 0).astype(float)
        n_out, n_classes = 1, 2
    else:
        n_classes = n_classes or 3
        y = rng.integers(0, n_classes, size=n).astype(float)
        n_out = n_classes
    layers = make_layers(d, list(hidden), n_out, True)
    theta0 = np.concatenate([np.concatenate([rng.normal(0, 0.7, s.out * s.inp),
                                             rng.normal(0, 0.1, s.out)]) for s in layers])
    batches = [np.sort(rng.choice(n, size=batch, replace=False)) for _ in range(steps)]
    return TrainingRun(layers=layers, theta0=theta0, X=X, y=y, batches=batches,
                       lrs=np.full(steps, lr), loss=loss, clip=clip, n_classes=n_classes)


def used_samples(run) -> list[int]:
    return sorted({int(i) for b in run.batches for i in b})


def perturbed(run, pert: PerturbationConfig, chosen: tuple[int, ...]):
    """``(X, y, batches)`` of the run with the samples ``chosen`` perturbed (flip/removal)."""
    X, y, batches = run.X.copy(), run.y.copy(), [b.copy() for b in run.batches]
    for i in chosen:
        if pert.kind == "label_flip":
            if run.loss == "bce":
                y[i] = 1.0 - y[i]
            else:
                y[i] = -y[i]
        elif pert.kind == "removal":
            batches = [b[b != i] for b in batches]
    return X, y, batches


def enumerate_final(run, pert: PerturbationConfig, stop=None) -> np.ndarray:
    """``(n_runs, P)``: the parameters after ``stop`` steps of every admissible flip/removal
    (subsets of at most k used samples, the nominal run included)."""
    stop = len(run.batches) if stop is None else stop
    out = []
    for r in range(pert.k + 1):
        for chosen in itertools.combinations(used_samples(run), r):
            X, y, batches = perturbed(run, pert, chosen)
            out.append(ref.train(run.theta0, run.layers, X, y, batches[:stop], run.lrs[:stop],
                                 run.loss, run.clip))
    return np.array(out)
