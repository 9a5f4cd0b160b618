"""Adversary correction (mipcert.repair) against oracles: finite differences for the cuts,
scipy for the QP/LP of one exact round, float64 and onnxruntime for the corrected network."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linprog, minimize

from mipcert.errors import InputError
from mipcert.network import Dense, Network, Parameters, ReLU
from mipcert.repair import CorrectionFunctions, correct
from mipcert.repair.correct import CUT_SLACK


def _net(rng, n_in=4, hidden=5, m=3):
    return Network([Dense(rng.normal(size=(hidden, n_in)), rng.normal(size=hidden)), ReLU(),
                    Dense(rng.normal(size=(m, hidden)), rng.normal(size=m))], (n_in,))


def _misclassified(net, rng, n):
    X = rng.uniform(0, 1, size=(200, net.input_size))
    pred = net.forward(X).argmax(1)
    y = (pred + 1) % net.output_size        # labels the network gets wrong
    return X[:n], y[:n], X[n:], pred[n:]     # clean data: the network's own labels


@pytest.mark.parametrize("layers", ["last", "all"])
def test_cuts_are_valid_linearisations(rng, layers):
    net = _net(rng)
    Xa, ya, Xc, yc = _misclassified(net, rng, 3)
    p = Parameters(net, layers)
    fns = CorrectionFunctions(p, Xa, ya, Xc, yc, delta=0.5, rho=0.1)
    v = p.w0 + 0.05 * rng.normal(size=p.size)
    d = v - p.w0
    cuts = fns.margin_cuts(v)
    # at its own point the cut's left side minus its right side is m(v) - delta
    np.testing.assert_allclose(cuts.A @ d - cuts.lo, fns.margins(v).ravel() - 0.5, atol=1e-10)
    lc = fns.loss_cut(v)
    np.testing.assert_allclose(lc.hi - lc.A @ d, fns.loss_bound - fns.loss(v), atol=1e-12)
    # gradients: central finite differences of the true functions
    h = 1e-6
    for j in range(0, p.size, max(1, p.size // 12)):
        e = np.zeros(p.size)
        e[j] = h
        fd = (fns.margins(v + e) - fns.margins(v - e)).ravel() / (2 * h)
        np.testing.assert_allclose(cuts.A[:, j], fd, rtol=1e-5, atol=1e-7)
        fd_loss = (fns.loss(v + e) - fns.loss(v - e)) / (2 * h)
        assert lc.A[0, j] == pytest.approx(fd_loss, rel=1e-5, abs=1e-8)


def _projection_oracle(G, b, x0):
    """min ||d||^2 s.t. G d >= b, by scipy (SLSQP), from a start of zero."""
    res = minimize(lambda d: d @ d, np.zeros(G.shape[1]), jac=lambda d: 2 * d,
                   constraints=[{"type": "ineq", "fun": lambda d: G @ d - b, "jac": lambda d: G}],
                   method="SLSQP", options={"ftol": 1e-14, "maxiter": 1000})
    assert res.success
    return res.x


def test_last_layer_round_is_the_projection_onto_half_spaces(rng):
    net = _net(rng)
    Xa, ya, Xc, yc = _misclassified(net, rng, 4)
    delta = 0.3
    res = correct(net, Xa, ya, Xc, yc, delta=delta, rho=1e6, rounds=3)
    assert res.status == "corrected" and len(res.pool) == 1   # exact cuts: one round
    p = res.params
    fns = CorrectionFunctions(p, Xa, ya, Xc, yc, delta=delta, rho=1e6)
    cuts = fns.margin_cuts(p.w0, slack=CUT_SLACK)
    d_oracle = _projection_oracle(cuts.A, cuts.lo, p.w0)
    np.testing.assert_allclose(res.pool[0].w - p.w0, d_oracle, atol=2e-5)
    assert res.pool[0].change_l2 == pytest.approx(np.linalg.norm(d_oracle), rel=1e-5)


def test_linf_l1_round_matches_linprog(rng):
    net = _net(rng)
    Xa, ya, Xc, yc = _misclassified(net, rng, 4)
    res = correct(net, Xa, ya, Xc, yc, delta=0.3, rho=1e6, rounds=1, norm="linf_l1")
    p = res.params
    P = p.size
    cuts = CorrectionFunctions(p, Xa, ya, Xc, yc, delta=0.3, rho=1e6).margin_cuts(
        p.w0, slack=CUT_SLACK)
    # variables (d, t, s): min t + sum(s)/P, G d >= b, |d| <= t, |d| <= s
    c = np.r_[np.zeros(P), 1.0, np.full(P, 1.0 / P)]
    eye, zero, one = np.eye(P), np.zeros((P, 1)), np.ones((P, 1))
    A_ub = np.vstack([np.hstack([-cuts.A, np.zeros((len(cuts.lo), 1 + P))]),
                      np.hstack([eye, -one, np.zeros((P, P))]),
                      np.hstack([-eye, -one, np.zeros((P, P))]),
                      np.hstack([eye, zero, -eye]), np.hstack([-eye, zero, -eye])])
    b_ub = np.r_[-cuts.lo, np.zeros(4 * P)]
    lp = linprog(c, A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * P + [(0, None)] * (1 + P),
                 method="highs")
    assert lp.status == 0
    d = res.pool[0].w - p.w0
    assert np.abs(d).max() + np.abs(d).sum() / P == pytest.approx(lp.fun, rel=1e-6, abs=1e-9)
    assert np.all(cuts.A @ d >= cuts.lo - 1e-7)


def test_zero_violation_means_every_margin_holds_in_float64_and_onnxruntime(
        digits_mlp, digits_split, tmp_path):
    from mipcert.attacks import fgsm
    from mipcert.io import onnx_forward, save_onnx

    Xtr, _, ytr, _ = digits_split
    adv = fgsm(digits_mlp, Xtr[:300], ytr[:300], 0.1)
    wrong = np.flatnonzero(digits_mlp.forward(adv).argmax(1) != ytr[:300])[:6]
    delta = 0.5
    res = correct(digits_mlp, adv[wrong], ytr[wrong], Xtr, ytr, delta=delta, rho=1.0, rounds=6)
    assert res.pool and res.status in ("corrected", "rounds")
    fns = CorrectionFunctions(res.params, adv[wrong], ytr[wrong], Xtr, ytr, delta=delta, rho=1.0)
    for member in res.pool:   # the pool holds true values
        assert member.violation == pytest.approx(fns.violation(member.w), abs=1e-12)
        assert member.loss == pytest.approx(fns.loss(member.w), rel=1e-12)
    zero = [m for m in res.pool if m.violated == 0]
    assert zero
    net = res.network(zero[-1])
    z = net.forward(adv[wrong])
    rows = np.arange(len(wrong))
    others = np.where(np.eye(10)[ytr[wrong]] > 0, np.inf, z)
    assert np.all(z[rows, ytr[wrong]] - others.min(axis=1) >= delta - 1e-6)
    path = save_onnx(net, tmp_path / "corrected.onnx")
    z32 = onnx_forward(path, adv[wrong])
    others32 = np.where(np.eye(10)[ytr[wrong]] > 0, np.inf, z32)
    assert np.all(z32[rows, ytr[wrong]] - others32.min(axis=1) >= delta - 1e-4)
    # omega = 0: the pick is the member of lowest clean loss; omega = 1: of lowest violation
    assert res.pick_index(0.0) == int(np.argmin([m.loss for m in res.pool]))
    assert res.pool[res.pick_index(1.0)].violation == min(m.violation for m in res.pool)


@pytest.mark.parametrize("solver", ["highs", "nnls"])
def test_contradictory_points_are_infeasible(rng, solver):
    net = _net(rng)
    x = rng.uniform(0, 1, size=(1, 4))
    res = correct(net, np.vstack([x, x]), np.array([0, 1]), x, np.array([0]), delta=0.1,
                  rho=1.0, solver=solver)
    assert res.status == "infeasible" and not res.pool and res.network() is None
    assert "infeasible" in res.message


@pytest.mark.parametrize("kwargs, match", [
    ({"layers": ["nope"]}, "unknown layer"), ({"delta": -1.0}, "delta"),
    ({"rho": -0.5}, "rho"), ({"rounds": 0}, "rounds"), ({"omega": 1.5}, "omega"),
    ({"norm": "l3"}, "norm"), ({"time_limit": 0.0}, "time_limit")])
def test_bad_arguments(rng, kwargs, match):
    net = _net(rng)
    Xa, ya, Xc, yc = _misclassified(net, rng, 2)
    with pytest.raises(InputError, match=match):
        correct(net, Xa, ya, Xc, yc, **kwargs)


def test_trust_region_bounds_every_change(rng):
    net = _net(rng)
    Xa, ya, Xc, yc = _misclassified(net, rng, 4)
    free = correct(net, Xa, ya, Xc, yc, delta=0.3, rho=1e6, rounds=1)
    box = 0.5 * free.pool[0].change_linf
    res = correct(net, Xa, ya, Xc, yc, delta=0.3, rho=1e6, rounds=1, max_change=box)
    if res.pool:   # the box cuts the free optimum off: a feasible answer respects it
        assert res.pool[0].change_linf <= box + 1e-7
        assert res.pool[0].change_l2 >= free.pool[0].change_l2 - 1e-7
    else:
        assert res.status == "infeasible"
    assert res.max_change == box and free.max_change is None


def test_correcting_a_convolution_keeps_it_one_and_meets_the_margins(digits_split, tmp_path):
    """The digits CNN corrected in its kernel (weight sharing kept): every pool member's V and
    L are the true ones, a V = 0 member meets every margin in float64 and in onnxruntime, and
    its file holds a Conv whose kernel is the corrected one."""
    import onnx

    from mipcert.attacks import fgsm
    from mipcert.io import load_network, onnx_forward, save_onnx

    from .conftest import MODELS

    net = load_network(MODELS / "digits_cnn.onnx")
    Xtr, _, ytr, _ = digits_split
    adv = fgsm(net, Xtr[:300], ytr[:300], 0.1)
    wrong = np.flatnonzero(net.forward(adv).argmax(1) != ytr[:300])[:5]
    delta = 0.5
    res = correct(net, adv[wrong], ytr[wrong], Xtr, ytr, layers=["conv", "dense"], delta=delta,
                  rho=1.0, rounds=6, solver="nnls")
    assert res.params.size == 40 + 1450
    fns = CorrectionFunctions(res.params, adv[wrong], ytr[wrong], Xtr, ytr, delta=delta, rho=1.0)
    for member in res.pool:
        assert member.violation == pytest.approx(fns.violation(member.w), abs=1e-12)
        assert member.loss == pytest.approx(fns.loss(member.w), rel=1e-12)
    zero = [m for m in res.pool if m.violated == 0]
    assert zero
    fixed = res.network(zero[-1])
    assert fixed.layers[0].conv is not None
    rows = np.arange(len(wrong))
    for z, tol in ((fixed.forward(adv[wrong]), 1e-6),
                   (onnx_forward(save_onnx(fixed, tmp_path / "c.onnx"), adv[wrong]), 1e-4)):
        others = np.where(np.eye(10)[ytr[wrong]] > 0, np.inf, z)
        assert np.all(z[rows, ytr[wrong]] - others.min(axis=1) >= delta - tol)
    conv = next(n for n in onnx.load(tmp_path / "c.onnx").graph.node if n.op_type == "Conv")
    kernel = next(i for i in onnx.load(tmp_path / "c.onnx").graph.initializer
                  if i.name == conv.input[1])
    np.testing.assert_allclose(onnx.numpy_helper.to_array(kernel).ravel(), zero[-1].w[:36],
                               rtol=1e-6, atol=1e-7)
