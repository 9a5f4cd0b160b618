"""Soundness by sampling: every perturbed run within the model ends inside the box."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mipcert.agt.interval_agt import interval_agt
from mipcert.network import training as ref

from .helpers import build, choose_per_batch, flip_labels, inside, small_doc

LOSSES = ["hinge", "bce", "cross_entropy", "squared"]
KINDS = ["bounded", "label_flip", "removal", "substitution"]
N_RANDOM = 25


def _doc(loss, kind, hidden):
    kw = dict(loss=loss, kind=kind, k=2, hidden=hidden, lr=0.3 if loss == "squared" else 0.5)
    if kind == "bounded":
        kw.update(eps=0.05, nu=0.1 if loss == "squared" else 0.0, flips=loss != "squared")
    if kind == "substitution":
        kw.update(clip=0.5)
    return small_doc(**kw)


def _perturbed_final(inst, data, run, rng, worst: str | None = None):
    p = inst.perturbation
    X, y, batches = run.X.copy(), run.y.copy(), run.batches
    score = None
    if worst == "boundary":  # points closest to the nominal decision boundary
        z = ref.logits(run.train(), run.layers, X)
        score = -np.abs(z[:, 0] if z.shape[1] == 1 else np.sort(z, 1)[:, -1] - np.sort(z, 1)[:, -2])
    elif worst == "gradient":  # largest per-sample gradients at theta_0
        score = np.linalg.norm(ref.per_sample_grads(run.theta0, run.layers, X, y, run.loss), axis=1)
    idx = choose_per_batch(run, p.k, rng, score)
    if p.kind in ("bounded", "label_flip"):
        if p.eps > 0:
            X[idx] += p.eps * rng.choice([-1.0, 1.0], size=X[idx].shape)
        if p.nu > 0:
            y[idx] += p.nu * rng.choice([-1.0, 1.0], size=len(idx))
        if p.flips:
            flip = idx[rng.random(len(idx)) < (1.0 if worst else 0.7)]
            y = flip_labels(y, flip, run.loss, run.n_classes, rng)
    elif p.kind == "removal":
        batches = [b[~np.isin(b, idx)] for b in run.batches]
    elif p.kind == "substitution":
        X[idx] = rng.normal(0, 5.0, size=X[idx].shape)
        if run.loss == "squared":
            y[idx] = rng.normal(0, 5.0, size=len(idx))
        else:
            y = flip_labels(y, idx, run.loss, run.n_classes, rng)
    return ref.train(run.theta0, run.layers, X, y, batches, run.lrs, run.loss, run.clip)


@pytest.mark.parametrize("hidden", [(), (5,)], ids=["linear", "mlp"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loss", LOSSES)
def test_sampled_runs_stay_in_box(loss, kind, hidden):
    if loss == "squared" and kind == "label_flip":
        pytest.skip("label flips are for classification (regression uses bounded nu)")
    inst, data, run = build(_doc(loss, kind, hidden))
    res = interval_agt(run, inst.perturbation)
    assert inside(res, run.train())
    rng = np.random.default_rng(0)
    violations = 0
    for r in range(N_RANDOM + 2):
        worst = {N_RANDOM: "boundary", N_RANDOM + 1: "gradient"}.get(r)
        theta = _perturbed_final(inst, data, run, rng, worst)
        violations += not inside(res, theta)
    assert violations == 0


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10_000), k=st.integers(1, 2), loss=st.sampled_from(["hinge", "bce"]),
       lr=st.floats(0.1, 2.0))
def test_all_label_flips_small(seed, k, loss, lr):
    """Every set of up to k flipped labels (whole data set) on a tiny run lands in the box."""
    doc = small_doc(loss=loss, kind="label_flip", k=k, batch_size=4, epochs=2, lr=lr)
    doc["data"].update(n_samples=8 + 4, n_test=4, random_state=seed)
    inst, data, run = build(doc)
    res = interval_agt(run, inst.perturbation)
    n = len(run.X)
    rng = np.random.default_rng(seed)
    for j in range(k + 1):
        for S in itertools.combinations(range(n), j):
            y = flip_labels(run.y, list(S), run.loss, run.n_classes, rng)
            assert inside(res, run.train(y=y)), S


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 10_000), k=st.integers(1, 2))
def test_all_removals_small(seed, k):
    doc = small_doc(loss="bce", kind="removal", k=k, batch_size=4, epochs=2, hidden=(3,))
    doc["data"].update(n_samples=12, n_test=4, random_state=seed)
    inst, data, run = build(doc)
    res = interval_agt(run, inst.perturbation)
    for j in range(k + 1):
        for S in itertools.combinations(range(len(run.X)), j):
            batches = [b[~np.isin(b, S)] for b in run.batches]
            if any(len(b) == 0 for b in batches) or any(
                    np.isin(b, S).sum() > k for b in run.batches):
                continue
            assert inside(res, run.train(batches=batches)), S
