"""Every training encoder with its inputs fixed to a point reproduces the numpy reference
(mipcert.network.training): forward, loss gradient, backward, clipping, the SGD step and
each perturbation model. The window model of steps 1..T-1 gets theta_1 fixed to the
reference value and the adversary's variables fixed to one perturbation; then the minimum
and the maximum of every final parameter must both equal the reference run's value."""
from __future__ import annotations

import numpy as np
import pytest

from mipcert.agt.instance import PerturbationConfig
from mipcert.agt.interval_agt import interval_boxes
from mipcert.agt.trajectory import build_window
from mipcert.network import training as ref
from mipcert.solve import PersistentSolver

from .helpers import perturbed, tiny_run


def _fix_window(w, run, theta1, pert, chosen, shifts=None):
    m = w.model
    for j, v in enumerate(theta1):
        var = m.component("theta1")[j] if m.component("theta1") is not None else None
        if var is not None:
            var.fix(float(v))
    samples = used_samples_in(run, w.start, w.stop)
    name = {"label_flip": "flip", "removal": "removed", "bounded": "poison",
            "substitution": "substituted"}[pert.kind]
    ind = m.component(name)
    for t, i in enumerate(samples):
        ind[t].fix(1.0 if i in chosen else 0.0)
    if shifts is not None:
        xs, ys = m.component("x_shift"), m.component("y_shift")
        for t, i in enumerate(samples):
            if xs is not None:
                for j in range(run.X.shape[1]):
                    xs[t, j].fix(float(shifts[0][i, j]))
            if ys is not None:
                ys[t].fix(float(shifts[1][i]))
        fl = m.component("flip")
        if fl is not None:
            for t, i in enumerate(samples):
                fl[t].fix(1.0 if i in shifts[2] else 0.0)


def used_samples_in(run, start, stop):
    return sorted({int(i) for t in range(start, stop) for i in run.batches[t]})


def _min_max(w, solver, j):
    ps = PersistentSolver(w.model, solver, threads=1)
    item = w.theta_end.items[j]
    if isinstance(item, float):
        return item, item
    out = []
    for sense in ("min", "max"):
        ps.set_objective(item, sense)
        o = ps.solve(time_limit=60)
        assert o.status == "optimal", o
        out.append(o.value)
    return tuple(out)


def _assert_reproduces(w, run, solver, theta_end):
    """min and max of every final parameter both equal the reference value."""
    for j in range(run.n_params):
        lo, hi = _min_max(w, solver, j)
        assert lo == pytest.approx(theta_end[j], abs=1e-6)
        assert hi == pytest.approx(theta_end[j], abs=1e-6)


def _reference(run, X, y, batches, steps):
    return ref.train(run.theta0, run.layers, X, y, batches[:steps], run.lrs[:steps], run.loss,
                     run.clip, trajectory=True)


CASES = [
    ("hinge", (), "label_flip", "milp"),
    ("hinge", (3,), "label_flip", "miqcp"),
    ("squared", (3,), "label_flip", "miqcp"),
    ("squared", (), "removal", "milp"),
    ("hinge", (2,), "removal", "miqcp"),
]


@pytest.mark.parametrize("loss,hidden,kind,method", CASES)
def test_window_reproduces_reference(loss, hidden, kind, method):
    run = tiny_run(loss, hidden, n=6, steps=3, batch=3, seed=3, pm1=kind == "label_flip")
    pert = PerturbationConfig(kind=kind, k=1, flips=kind == "label_flip")
    boxes = interval_boxes(run, pert)
    solver = "highs" if method == "milp" else "scip"
    samples = used_samples_in(run, 1, 3)
    for chosen in [(), (samples[0],), (samples[-1],)]:
        X, y, batches = perturbed(run, pert, chosen)
        # theta_1 comes from the perturbed data as well (the adversary acts once)
        traj = _reference(run, X, y, batches, 3)
        w = build_window(run, pert, method, 1, 3, boxes)
        _fix_window(w, run, traj[1], pert, chosen)
        _assert_reproduces(w, run, solver, traj[3])


def test_clipped_substitution_point():
    """Clipping (exact with gates) and substitution with its budget off: the reference."""
    run = tiny_run("hinge", (2,), n=6, steps=2, batch=3, seed=5, clip=0.3)
    pert = PerturbationConfig(kind="substitution", k=1)
    boxes = interval_boxes(run, pert)
    traj = _reference(run, run.X, run.y, run.batches, 2)
    w = build_window(run, pert, "miqcp", 1, 2, boxes)
    _fix_window(w, run, traj[1], pert, ())
    _assert_reproduces(w, run, "scip", traj[2])


def test_bounded_poisoning_point():
    """Feature and label shifts fixed to a point inside the budget: the reference."""
    run = tiny_run("squared", (2,), n=6, steps=2, batch=3, seed=7)
    pert = PerturbationConfig(kind="bounded", k=1, eps=0.2, nu=0.3)
    boxes = interval_boxes(run, pert)
    i0 = used_samples_in(run, 1, 2)[0]
    dx, dy = np.zeros_like(run.X), np.zeros_like(run.y)
    dx[i0] = [0.2, -0.13]
    dy[i0] = -0.3
    X, y = run.X + dx, run.y + dy
    traj = _reference(run, X, y, run.batches, 2)
    # theta_1 is the reference's on the *clean* first step when i0 is not in batch 0
    w = build_window(run, pert, "miqcp", 1, 2, boxes)
    _fix_window(w, run, traj[1], pert, (i0,), shifts=(dx, dy, ()))
    _assert_reproduces(w, run, "scip", traj[2])


@pytest.mark.parametrize("loss", ["bce", "cross_entropy"])
def test_relaxed_losses_contain_reference(loss):
    """BCE and cross-entropy gradients are boxes (relaxed even in MIQCP): the reference run
    lies inside [min, max] of every parameter."""
    run = tiny_run(loss, (2,), n=6, steps=2, batch=3, seed=11, lr=0.3)
    pert = PerturbationConfig(kind="label_flip", k=1, flips=True)
    boxes = interval_boxes(run, pert)
    traj = _reference(run, run.X, run.y, run.batches, 2)
    w = build_window(run, pert, "milp", 1, 2, boxes)
    _fix_window(w, run, traj[1], pert, ())
    for j in range(run.n_params):
        lo, hi = _min_max(w, "highs", j)
        assert lo - 1e-6 <= traj[2][j] <= hi + 1e-6
