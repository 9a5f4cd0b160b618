"""The l2 correction QP through its dual (mipcert.repair.ldp) against independent oracles:
scipy's SLSQP on the primal projection, the KKT conditions, HiGHS on the same cut QP, and
hand-made inconsistent rows."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from mipcert.errors import InputError
from mipcert.network import Dense, Network, ReLU
from mipcert.repair import correct
from mipcert.repair.cuts import CutRows
from mipcert.repair.ldp import LeastDistanceQP
from mipcert.repair.qp import CorrectionQP, make_qp


def _slsqp(G, g):
    res = minimize(lambda d: d @ d, np.zeros(G.shape[1]), jac=lambda d: 2 * d,
                   constraints=[{"type": "ineq", "fun": lambda d: G @ d - g, "jac": lambda d: G}],
                   method="SLSQP", options={"ftol": 1e-14, "maxiter": 1000})
    assert res.success
    return res.x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projection_matches_slsqp_and_kkt(seed):
    rng = np.random.default_rng(seed)
    P, K = 25, 12
    G = rng.normal(size=(K, P)) * rng.uniform(0.1, 10, size=(K, 1))   # badly scaled rows
    g = rng.normal(size=K) + 1.0
    qp = LeastDistanceQP(P)
    qp.add(CutRows(G[:8], g[:8], np.full(8, np.inf)))
    qp.add(CutRows(-G[8:], np.full(4, -np.inf), -g[8:]))    # the same rows written as <=
    out, d = qp.solve()
    assert out.status == "optimal" and qp.rows == K
    np.testing.assert_allclose(d, _slsqp(G, g), atol=1e-6)
    # KKT: d = G^T lam / 2 with lam >= 0 on the active rows only
    active = G @ d - g <= 1e-8
    assert np.all(G @ d >= g - 1e-8)
    lam, *_ = np.linalg.lstsq(G[active].T, 2 * d, rcond=None)
    assert np.all(lam >= -1e-8)
    np.testing.assert_allclose(G[active].T @ lam, 2 * d, atol=1e-8)


def test_same_answer_as_highs_on_a_cut_qp():
    rng = np.random.default_rng(3)
    P = 40
    cuts = CutRows(rng.normal(size=(15, P)), rng.normal(size=15), np.full(15, np.inf))
    loss = CutRows(rng.normal(size=(1, P)), np.array([-np.inf]), np.array([0.5]))
    answers = []
    for qp in (LeastDistanceQP(P), CorrectionQP(P, solver="highs")):
        qp.add(cuts)
        qp.add(loss)
        out, d = qp.solve()
        assert out.status == "optimal"
        answers.append(d)
    np.testing.assert_allclose(answers[0], answers[1], atol=1e-5)


def test_inconsistent_rows_are_infeasible():
    qp = LeastDistanceQP(3)
    qp.add(CutRows(np.array([[1.0, 0, 0], [-1.0, 0, 0]]), np.array([1.0, 0.0]),
                   np.full(2, np.inf)))              # d_0 >= 1 and d_0 <= 0
    out, d = qp.solve()
    assert out.status == "infeasible" and d is None
    zero = LeastDistanceQP(3)
    zero.add(CutRows(np.zeros((1, 3)), np.array([0.5]), np.array([np.inf])))   # 0 >= 0.5
    assert zero.solve()[0].status == "infeasible"
    slack = LeastDistanceQP(3)
    slack.add(CutRows(np.ones((1, 3)), np.array([-1.0]), np.array([np.inf])))  # d = 0 meets it
    out, d = slack.solve()
    assert out.status == "optimal" and np.all(d == 0)


def test_nnls_takes_l2_without_a_box_and_leaves_the_lp_to_highs():
    assert isinstance(make_qp(5, norm="l2", solver="nnls"), LeastDistanceQP)
    lp = make_qp(5, norm="linf_l1", solver="nnls")
    assert isinstance(lp, CorrectionQP) and lp.norm == "linf_l1"
    with pytest.raises(InputError, match="l2 QP only"):
        LeastDistanceQP(5, norm="linf_l1")
    with pytest.raises(InputError, match="max_change"):
        make_qp(5, solver="nnls", max_change=1.0)
    with pytest.raises(InputError, match="choose one of"):
        make_qp(5, solver="cplex")


def test_correction_with_nnls_equals_highs_over_all_layers():
    rng = np.random.default_rng(0)
    net = Network([Dense(rng.normal(size=(6, 4)), rng.normal(size=6)), ReLU(),
                   Dense(rng.normal(size=(3, 6)), rng.normal(size=3))], (4,))
    X = rng.uniform(0, 1, size=(200, 4))
    pred = net.forward(X).argmax(1)
    Xa, ya = X[:3], (pred[:3] + 1) % 3
    runs = [correct(net, Xa, ya, X[3:], pred[3:], layers="all", delta=0.2, rho=1.0, rounds=3,
                    solver=s) for s in ("nnls", "highs")]
    assert all(r.pool for r in runs)
    # round 1 solves the same QP (cuts at w0): the same projection
    np.testing.assert_allclose(runs[0].pool[0].w, runs[1].pool[0].w, atol=1e-5)
    assert runs[0].pool[0].violation == pytest.approx(runs[1].pool[0].violation, abs=1e-4)


def test_instance_takes_nnls_and_rejects_an_unknown_solver():
    from mipcert.repair.instance import parse_instance

    from .conftest import MODELS

    doc = {"model": {"path": str(MODELS / "digits_mlp.onnx")},
           "correction": {"solver": "nnls", "norm": ["l2", "linf_l1"]}}
    assert parse_instance(doc).solver == "nnls"
    doc["correction"]["solver"] = "cplex"
    with pytest.raises(InputError, match="solver = 'cplex'"):
        parse_instance(doc)
