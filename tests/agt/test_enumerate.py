"""The reachable-hull ground truth (mipcert.agt.enumerate) against brute force, and interval
AGT's soundness against it (every attacked run must lie in the certified box)."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from mipcert.agt import PerturbationConfig, certify_instance, interval_agt, load_instance
from mipcert.agt.attack import _tensors, unrolled_train
from mipcert.agt.batched import train_many
from mipcert.agt.data import load_dataset
from mipcert.agt.enumerate import attains, enumerate_hull, enumeration_count, sampled_hull
from mipcert.agt.perturb import replay
from mipcert.agt.run import build_run
from mipcert.errors import InputError

from .helpers import build

ROOT = Path(__file__).resolve().parents[2]

TINY_DATA = {
    "hinge": ({"source": "moons", "n_samples": 10, "noise": 0.2, "features": "poly2"}, "pm1"),
    "bce": ({"source": "moons", "n_samples": 10, "noise": 0.2}, "index"),
    "cross_entropy": ({"source": "blobs", "n_samples": 10, "centers": 3, "cluster_std": 2.0},
                      "index"),
    "squared": ({"source": "diabetes", "scale": "standard", "scale_y": True}, "value"),
}


def tiny(loss="hinge", kind="label_flip", k=1, hidden=(3,), clip=None, eps=0.0, nu=0.0,
         flips=False, batch_size=3, epochs=1, order="sequential"):
    """A real-data run of 8 training samples and 3 steps (diabetes: 8 of the 442)."""
    data, labels = TINY_DATA[loss]
    data = dict(data, labels=labels)
    data["n_test"] = 434 if loss == "squared" else 2
    pert = {"kind": kind, "k": k} if kind != "none" else {"kind": "none"}
    if kind == "bounded":
        pert.update(eps=eps, nu=nu, flips=flips)
    doc = {"data": data, "model": {"hidden": list(hidden), "init": "normal", "init_seed": 3},
           "training": {"loss": loss, "lr": 0.5, "batch_size": batch_size, "epochs": epochs,
                        "order": order},
           "perturbation": pert}
    if clip is not None:
        doc["training"]["clip"] = clip
    inst, _, run = build(doc)
    assert len(run.y) == 8 and len(run.batches) <= 3
    return run, inst.perturbation


def brute_force(run, kind, k, n_classes=2):
    """Every data set with <= k samples flipped / removed, trained by the reference SGD."""
    thetas = []
    for j in range(k + 1):
        for S in itertools.combinations(range(len(run.y)), j):
            if kind == "removal":
                thetas.append(run.train(batches=[b[~np.isin(b, S)] for b in run.batches]))
                continue
            if run.loss == "cross_entropy":
                choices = [[c for c in range(n_classes) if c != run.y[i]] for i in S]
            elif run.loss == "bce":
                choices = [[1.0 - run.y[i]] for i in S]
            else:
                choices = [[-run.y[i]] for i in S]
            for labels in itertools.product(*choices):
                y = run.y.copy()
                y[list(S)] = labels
                thetas.append(run.train(y=y))
    return np.array(thetas)


@pytest.mark.parametrize("loss,kind,k,hidden,clip,batch_size,epochs", [
    ("hinge", "label_flip", 2, (3,), None, 3, 1),
    ("hinge", "label_flip", 2, (), None, 8, 3),   # every sample in every step
    ("bce", "label_flip", 1, (), 0.2, 3, 1),
    ("cross_entropy", "label_flip", 2, (3,), None, 4, 1),
    ("hinge", "removal", 2, (), None, 8, 3),
    ("bce", "removal", 1, (3,), None, 3, 1),
])
def test_enumerate_hull_equals_brute_force(loss, kind, k, hidden, clip, batch_size, epochs):
    run, pert = tiny(loss, kind, k, hidden, clip, batch_size=batch_size, epochs=epochs)
    hull = enumerate_hull(run, pert)
    thetas = brute_force(run, kind, k, run.n_classes)
    assert hull.exact and hull.n_runs == len(thetas) == enumeration_count(run, pert)
    np.testing.assert_allclose(hull.lower, thetas.min(0), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(hull.upper, thetas.max(0), rtol=1e-13, atol=1e-15)
    assert hull.contains(run.train())
    for j in range(run.n_params):  # each bound is what the named data set gives
        assert replay(run, hull.argmin[j])[j] == hull.lower[j]
        assert replay(run, hull.argmax[j])[j] == hull.upper[j]
    assert hull.total_width > 0


def test_bounded_flips_only_enumerates_like_label_flip():
    run, _ = tiny("hinge", "label_flip", 2)
    a = enumerate_hull(run, PerturbationConfig("label_flip", 2, flips=True))
    b = enumerate_hull(run, PerturbationConfig("bounded", 2, flips=True))
    np.testing.assert_array_equal(a.lower, b.lower)
    np.testing.assert_array_equal(a.upper, b.upper)


def test_hull_grows_with_k():
    run, _ = tiny("cross_entropy", "label_flip", 1, hidden=())
    hulls = [enumerate_hull(run, PerturbationConfig("label_flip", k, flips=True))
             for k in range(4)]
    assert hulls[0].total_width == 0.0 and hulls[0].n_runs == 1
    for small, big in zip(hulls, hulls[1:]):
        assert np.all(big.lower <= small.lower) and np.all(small.upper <= big.upper)
        assert big.total_width >= small.total_width


SAMPLED = [
    ("hinge", PerturbationConfig("label_flip", 2, flips=True), None),
    ("cross_entropy", PerturbationConfig("label_flip", 1, flips=True), None),
    ("hinge", PerturbationConfig("bounded", 2, eps=0.1), None),
    ("bce", PerturbationConfig("bounded", 1, eps=0.1, flips=True), None),
    ("cross_entropy", PerturbationConfig("bounded", 2, eps=0.2, flips=True), 0.5),
    ("squared", PerturbationConfig("bounded", 2, eps=0.1, nu=0.2), None),
    ("bce", PerturbationConfig("removal", 2), None),
    ("hinge", PerturbationConfig("substitution", 1), 0.3),
    ("cross_entropy", PerturbationConfig("substitution", 2), 0.2),
]


@pytest.mark.parametrize("loss,pert,clip", SAMPLED, ids=lambda v: getattr(v, "kind", v))
def test_sampled_runs_lie_in_the_interval_agt_box(loss, pert, clip):
    run, _ = tiny(loss, "none", hidden=(2,), clip=clip, batch_size=8, epochs=3)
    hull = sampled_hull(run, pert, n_samples=150, seed=1)
    box = interval_agt(run, pert)
    assert not hull.exact and hull.n_runs > 150
    assert hull.total_width > 0
    assert hull.within(box.lower, box.upper).all()
    assert hull.contains(run.train())
    if pert.kind in ("label_flip", "removal"):  # an inner bound of the exact hull
        exact = enumerate_hull(run, pert)
        assert exact.contains(hull.lower, 1e-12) and exact.contains(hull.upper, 1e-12)


def test_attacks_reach_at_least_the_random_samples_on_bounded_svm():
    run, _ = tiny("hinge", hidden=())
    pert = PerturbationConfig("bounded", 2, eps=0.1)
    plain = sampled_hull(run, pert, n_samples=100, seed=0, attack=False)
    attacked = sampled_hull(run, pert, n_samples=100, seed=0)
    assert attacked.n_runs > plain.n_runs
    assert np.all(attacked.lower <= plain.lower) and np.all(plain.upper <= attacked.upper)


def test_greedy_attacks_find_the_exact_single_flip_hull():
    """With k = 1 the greedy attack trains every single flip for every direction."""
    run, pert = tiny("hinge", "label_flip", 1, hidden=(3,), batch_size=8, epochs=3)
    exact = enumerate_hull(run, pert)
    attacked = sampled_hull(run, pert, n_samples=0)
    np.testing.assert_array_equal(attacked.lower, exact.lower)
    np.testing.assert_array_equal(attacked.upper, exact.upper)
    assert not attacked.exact


def test_train_many_and_unrolled_torch_equal_the_reference():
    rng = np.random.default_rng(0)
    for loss, clip in (("hinge", None), ("cross_entropy", 0.3), ("squared", None)):
        run, _ = tiny(loss, "removal", 1, hidden=(3,), clip=clip)
        R = 4
        X = run.X[None] + 0.1 * rng.standard_normal((R,) + run.X.shape)
        Y = np.tile(run.y, (R, 1))
        Wt = np.ones((R, len(run.y)))
        Wt[np.arange(R), rng.integers(0, len(run.y), R)] = 0.0
        got = train_many(run, X=X, Y=Y, Wt=Wt)
        for r in range(R):
            want = run.train(X=X[r], y=Y[r], batches=[b[Wt[r, b] > 0] for b in run.batches])
            np.testing.assert_allclose(got[r], want, rtol=1e-10, atol=1e-12)
        Xt, T, w = _tensors(run, run.X, run.y, [])
        np.testing.assert_allclose(unrolled_train(run, Xt, T, w).detach().numpy(),
                                   run.train(), rtol=1e-10, atol=1e-12)


def test_moons_svm_single_flips_match_a_loop_of_reference_runs():
    inst = load_instance(ROOT / "instances/agt_moons_svm.toml")
    run = build_run(inst, load_dataset(inst.data))
    hull = enumerate_hull(run, inst.perturbation)
    thetas = [run.train()]
    for i in range(len(run.y)):
        y = run.y.copy()
        y[i] = -y[i]
        thetas.append(run.train(y=y))
    thetas = np.array(thetas)
    assert hull.n_runs == 129
    np.testing.assert_allclose(hull.lower, thetas.min(0), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(hull.upper, thetas.max(0), rtol=1e-13, atol=1e-15)


def test_attains():
    run, pert = tiny("hinge", "label_flip", 1)
    hull = enumerate_hull(run, pert)
    lo, hi = attains(hull, hull.lower, hull.upper)
    assert lo.all() and hi.all()
    lo, hi = attains(hull, hull.lower - 1.0, hull.upper)
    assert not lo.any() and hi.all()
    with pytest.raises(InputError, match="do not match"):
        attains(hull, hull.lower[:2], hull.upper)
    assert hull.within(hull.lower, hull.upper).all()
    inner = hull.upper.copy()
    inner[0] = hull.lower[0]
    assert not hull.within(hull.lower, inner)[0] or hull.upper[0] == hull.lower[0]


def test_bad_input_is_refused_with_the_fix():
    run, _ = tiny("hinge", "label_flip", 1)
    with pytest.raises(InputError, match="sampled_hull"):
        enumerate_hull(run, PerturbationConfig("bounded", 1, eps=0.1))
    with pytest.raises(InputError, match="sampled_hull"):
        enumerate_hull(run, PerturbationConfig("substitution", 1))
    with pytest.raises(InputError, match="clipped"):
        sampled_hull(run, PerturbationConfig("substitution", 1), n_samples=5)
    with pytest.raises(InputError, match="max_runs"):
        enumerate_hull(run, PerturbationConfig("label_flip", 3, flips=True), max_runs=50)
    with pytest.raises(InputError, match="empty a batch"):
        enumerate_hull(run, PerturbationConfig("removal", 3))
    with pytest.raises(InputError, match="n_samples"):
        sampled_hull(run, PerturbationConfig("label_flip", 1), n_samples=-1)
    reg, _ = tiny("squared", "bounded", 1, eps=0.1)
    with pytest.raises(InputError, match="real-valued"):
        enumerate_hull(reg, PerturbationConfig("label_flip", 1, flips=True))
    with pytest.raises(InputError, match="nu"):
        sampled_hull(run, PerturbationConfig("bounded", 1, nu=0.1), n_samples=5)


def test_zero_perturbation_is_the_nominal_run():
    run, _ = tiny("bce", "label_flip", 1)
    for hull in (enumerate_hull(run, PerturbationConfig("label_flip", 0)),
                 sampled_hull(run, PerturbationConfig("none"), 10)):
        assert hull.exact and hull.total_width == 0.0
        np.testing.assert_array_equal(hull.lower, run.train())
    doc = enumerate_hull(run, PerturbationConfig("label_flip", 1)).as_json()
    assert doc["exact"] and len(doc["lower"]) == run.n_params and doc["argmin"][0]


def test_issue9_instances_exact_mlp_and_sampled_poisoned_svm():
    o = certify_instance(ROOT / "instances/agt_moons_mlp_small.toml")
    assert len(o.run.y) <= 32 and len(o.run.batches) <= 4
    assert o.certificates["nominal_accuracy"] > 0.8
    hull = enumerate_hull(o.run, o.instance.perturbation)
    assert hull.exact and hull.n_runs == len(o.run.y) + 1
    assert np.all(o.result.lower <= hull.lower) and np.all(hull.upper <= o.result.upper)

    o = certify_instance(ROOT / "instances/agt_svm_poison.toml")
    with pytest.raises(InputError, match="sampled_hull"):
        enumerate_hull(o.run, o.instance.perturbation)
    hull = sampled_hull(o.run, o.instance.perturbation, n_samples=300, attack=False)
    assert not hull.exact and hull.total_width > 0
    assert np.all(o.result.lower <= hull.lower) and np.all(hull.upper <= o.result.upper)


@pytest.mark.parametrize("pert,clip", [
    (PerturbationConfig("bounded", 2, eps=0.1, flips=True), None),
    (PerturbationConfig("substitution", 2), 0.3),
    (PerturbationConfig("removal", 2), None),
])
def test_every_searched_data_set_is_admissible(pert, clip):
    """Random, attack and hill-climbing data sets all respect k, eps and the label rules."""
    from mipcert.agt.attack import attack_descs
    from mipcert.agt.enumerate import random_descs
    from mipcert.agt.localsearch import neighbours

    run, _ = tiny("cross_entropy", "none", hidden=(3,), clip=clip, batch_size=8, epochs=2)
    rng = np.random.default_rng(0)
    descs = list(random_descs(run, pert, 30, rng)) + attack_descs(run, pert)
    descs += [n for d in descs[:10] for n in neighbours(run, pert, d, rng)]
    lo, hi = run.X.min(0), run.X.max(0)
    for d in descs:
        idx = d["samples"]
        assert len(set(idx)) == len(idx) <= pert.k
        if pert.kind == "removal":
            continue
        y = np.asarray(d["labels"])
        assert np.all(np.isin(y, range(run.n_classes)))
        if pert.kind == "bounded":
            assert np.all(np.abs(np.asarray(d["x"]) - run.X[idx]) <= pert.eps * (1 + 1e-12))
        else:
            x = np.asarray(d["x"])
            assert np.all((lo <= x) & (x <= hi))
