"""Concrete perturbations of a training run's data set (FORMULATIONS 3.2, one global budget).

A perturbation is described by a small JSON-able dict, so that a reported bound names the
data set that attains it and anyone can replay it with :func:`replay`:

* ``{"nominal": True}``: the data as given;
* ``{"kind": "label_flip", "samples": [i, ...], "labels": [y_i', ...]}``: new labels;
* ``{"kind": "removal", "samples": [i, ...]}``: the samples leave every batch they were in;
* ``{"kind": "bounded" | "substitution", "samples": [...], "x": [[...], ...],
  "labels": [...]}``: new model inputs (after the feature map) and labels.

The adversary acts once on the data set: a sample is changed the same way in every step
where it appears. Label conventions follow the loss (:func:`label_space`).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .instance import PerturbationConfig
from .run import TrainingRun

NOMINAL = {"nominal": True}


def label_space(run: TrainingRun) -> tuple[str, int | None]:
    """``("pm1", 2)`` for hinge and squared on +-1 labels, ``("binary01", 2)`` for bce,
    ``("classes", C)`` for cross-entropy, ``("value", None)`` for regression targets."""
    if run.loss == "hinge":
        return "pm1", 2
    if run.loss == "bce":
        return "binary01", 2
    if run.loss == "cross_entropy":
        return "classes", int(run.n_classes or int(np.max(run.y)) + 1)
    if run.n_classes == 2 and np.all(np.isin(run.y, (-1.0, 1.0))):
        return "pm1", 2
    return "value", None


def flipped_labels(run: TrainingRun, label: float) -> list[float]:
    """Every label a flip may give a sample whose label is ``label``: ``-y`` (+-1 labels),
    ``1 - y`` (0/1 labels) or each other class (cross-entropy)."""
    space, C = label_space(run)
    if space == "pm1":
        return [-float(label)]
    if space == "binary01":
        return [1.0 - float(label)]
    if space == "classes":
        return [float(c) for c in range(C) if c != int(label)]
    raise InputError("label flips need classification labels; for real-valued targets use "
                     "kind = 'bounded' with nu")


def used_samples(run: TrainingRun) -> np.ndarray:
    """The samples that appear in some batch (sorted): only these can change the run."""
    return np.unique(np.concatenate([np.asarray(b, dtype=np.int64) for b in run.batches]))


def check_perturbation(run: TrainingRun, pert: PerturbationConfig) -> None:
    """Refuse what no data set can realise: removal emptying a batch, flips of real
    labels, substitution without clipping, negative radii."""
    if pert.k < 0 or pert.eps < 0 or pert.nu < 0:
        raise InputError("k, eps and nu must be >= 0")
    if pert.kind not in ("none", "bounded", "label_flip", "removal", "substitution"):
        raise InputError(f"unknown perturbation kind {pert.kind!r}")
    if pert.is_zero:
        return
    if pert.kind == "removal" and pert.k >= min(len(b) for b in run.batches):
        raise InputError(f"removal of k = {pert.k} could empty a batch of "
                         f"{min(len(b) for b in run.batches)} samples: lower k")
    if pert.kind == "substitution" and run.clip is None:
        raise InputError("substitution needs clipped gradients ([training] clip = GAMMA)")
    if pert.flips or pert.kind == "label_flip":
        flipped_labels(run, run.y[0])  # raises for real-valued labels
    if pert.nu > 0 and label_space(run)[0] != "value":
        raise InputError("nu bounds changes of real-valued labels; use flips for classes")


def perturbed_data(run: TrainingRun, desc: dict):
    """``(X, y, batches)`` of the data set ``desc`` describes (copies; the run is untouched)."""
    X, y, batches = run.X, run.y, run.batches
    if desc.get("nominal"):
        return X, y, batches
    idx = np.asarray(desc.get("samples", []), dtype=np.int64)
    if desc.get("kind") == "removal":
        return X, y, [np.asarray(b)[~np.isin(b, idx)] for b in batches]
    if "x" in desc:
        X = X.copy()
        X[idx] = np.asarray(desc["x"], dtype=np.float64).reshape(len(idx), X.shape[1])
    if "labels" in desc:
        y = y.copy()
        y[idx] = np.asarray(desc["labels"], dtype=np.float64)
    return X, y, batches


def replay(run: TrainingRun, desc: dict) -> np.ndarray:
    """Final parameters of the reference run (:meth:`TrainingRun.train`) on ``desc``'s data."""
    X, y, batches = perturbed_data(run, desc)
    return run.train(X=X, y=y, batches=batches)


def stack(run: TrainingRun, descs: list[dict], kind: str):
    """The arrays :func:`~mipcert.agt.batched.train_many` takes for ``descs`` (all of one
    ``kind``): ``(X or None, Y or None, Wt or None)``."""
    R, n = len(descs), len(run.y)
    if kind == "removal":
        Wt = np.ones((R, n))
        for r, d in enumerate(descs):
            Wt[r, d.get("samples", [])] = 0.0
        return None, None, Wt
    Y = np.tile(run.y, (R, 1))
    X = np.tile(run.X, (R, 1, 1)) if any("x" in d for d in descs) else None
    for r, d in enumerate(descs):
        idx = d.get("samples", [])
        if "labels" in d:
            Y[r, idx] = d["labels"]
        if "x" in d:
            X[r, idx] = d["x"]
    return X, Y, None
