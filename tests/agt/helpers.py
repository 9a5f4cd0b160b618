"""Small AGT runs for tests: instances built from dicts, and perturbed-data samplers."""
from __future__ import annotations

import copy

import numpy as np

from mipcert.agt.data import load_dataset
from mipcert.agt.instance import parse_instance
from mipcert.agt.run import build_run

LOSS_SETUP = {
    # loss: (data table, labels, hidden default)
    "hinge": ({"source": "moons", "n_samples": 60, "noise": 0.2, "features": "poly2"}, "pm1"),
    "bce": ({"source": "moons", "n_samples": 60, "noise": 0.2}, "index"),
    "cross_entropy": ({"source": "blobs", "n_samples": 60, "centers": 3, "cluster_std": 2.0},
                      "index"),
    "squared": ({"source": "diabetes", "scale": "standard", "scale_y": True,
                 "test_fraction": 0.9}, "value"),
}


def small_doc(loss="bce", kind="label_flip", k=1, hidden=(), eps=0.0, nu=0.0, flips=None,
              clip=None, batch_size=16, epochs=2, lr=0.5, order="sequential", n_test=12):
    data, labels = LOSS_SETUP[loss]
    data = dict(data, labels=labels)
    if "test_fraction" not in data:
        data["n_test"] = n_test
    pert = {"kind": kind, "k": k}
    if kind == "bounded":
        pert.update(eps=eps, nu=nu, flips=bool(flips))
    doc = {"name": f"t_{loss}_{kind}", "data": data,
           "model": {"hidden": list(hidden), "init": "normal", "init_seed": 1},
           "training": {"loss": loss, "lr": lr, "batch_size": batch_size, "epochs": epochs,
                        "order": order},
           "perturbation": pert}
    if clip is not None:
        doc["training"]["clip"] = clip
    return doc


def build(doc):
    inst = parse_instance(copy.deepcopy(doc))
    data = load_dataset(inst.data)
    return inst, data, build_run(inst, data)


def flip_labels(y, idx, loss, n_classes, rng):
    y = y.copy()
    for i in idx:
        if loss in ("hinge", "squared"):
            y[i] = -y[i]
        elif loss == "bce":
            y[i] = 1.0 - y[i]
        else:
            choices = [c for c in range(n_classes) if c != int(y[i])]
            y[i] = float(rng.choice(choices))
    return y


def choose_per_batch(run, k, rng, score=None):
    """Up to ``k`` samples in every batch of the first epoch (sequential order: the epochs
    repeat the same partition, so the per-batch budget holds in every step)."""
    chosen = []
    seen = set()
    for b in run.batches:
        key = tuple(sorted(b.tolist()))
        if key in seen:
            continue
        seen.add(key)
        m = int(rng.integers(0, k + 1)) if score is None else k
        if score is None:
            chosen += list(rng.choice(b, size=m, replace=False))
        else:
            chosen += list(b[np.argsort(-score[b])[:m]])
    return np.array(chosen, dtype=np.int64)


def inside(res, theta, tol=0.0):
    return bool(np.all(res.lower - tol <= theta) and np.all(theta <= res.upper + tol))
