"""SR, LR, SCR and fairness against brute force on tiny random networks.

Truth comes from activation-pattern enumeration (tests/verify/oracle.py) or dense sampling,
computed with this file's own numpy forward pass and its own two-copy weights; every ``sat``
witness is re-run here in float64.
"""
import itertools

import numpy as np
import pytest
from scipy.linalg import block_diag
from scipy.optimize import linprog

from mipcert.network import mlp
from mipcert.network.twin import join_twin_input, split_twin_input, twin_network
from mipcert.solve import available_solvers
from mipcert.verify.props import LR_TOLERANCE, PropertyConfig

from .oracle import linear_pieces, min_clause_margins

TIE = 1e-5


def fwd(weights, biases, x):
    a = np.atleast_2d(x)
    for l, (W, b) in enumerate(zip(weights, biases)):
        a = a @ W.T + b
        if l < len(weights) - 1:
            a = np.maximum(a, 0)
    return a


def tiny(seed, n0=2, m=3):
    rng = np.random.default_rng(seed)
    hidden = [[4], [3, 3], [5], [4, 3]][seed % 4]
    sizes = [n0, *hidden, m]
    weights = [rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(size=o) * 0.5 for o in sizes[1:]]
    x0 = rng.uniform(0.25, 0.75, n0)
    eps = float(rng.uniform(0.05, 0.25))
    return rng, weights, biases, x0, eps


def check_bounds(p, truth):
    for method in ("ibp", "crown", "lp"):
        assert p.bound(method) <= truth + 1e-6, (method, p.bound(method), truth)


def test_twin_network_is_two_forward_passes():
    rng, W, b, _, _ = tiny(3, n0=3)
    net = mlp(W, b)
    for shared in (None, [1], [0, 2]):
        twin = twin_network(net, shared)
        x, x2 = rng.random((5, 3)), rng.random((5, 3))
        u = join_twin_input(x, x2, shared)
        xa, xb = split_twin_input(u, 3, shared)
        out = twin.forward(u)
        assert np.allclose(out[:, :3], fwd(W, b, xa), atol=1e-12)
        assert np.allclose(out[:, 3:], fwd(W, b, xb), atol=1e-12)
        assert np.array_equal(xb[:, shared or []], x[:, shared or []])


@pytest.mark.slow
def test_sr_matches_enumeration():
    seen = {"sat": 0, "unsat": 0}
    for seed in range(12):
        rng, W, b, x0, eps = tiny(seed)
        z0 = fwd(W, b, x0)[0]
        lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
        # max |z_j - z0_j| exactly: min of -(z_j - z0_j) and (z_j - z0_j) per j
        clauses = [(s * np.eye(3)[[j]], s * z0[[j]]) for j in range(3) for s in (1.0, -1.0)]
        best, _ = min_clause_margins(W, b, lo, hi, clauses)
        dev = -best.min()                          # max_x ||z(x) - z0||_inf
        delta = float(dev * rng.choice([0.7, 1.3]))
        truth = delta - dev
        if abs(truth) < TIE:
            continue
        p = PropertyConfig("sr", delta=delta).pose(mlp(W, b), x0, 0, eps)
        r = p.verify(seed=seed)
        expected = "sat" if truth < 0 else "unsat"
        assert r.verdict == expected, (seed, truth, r)
        seen[expected] += 1
        if expected == "sat":
            x = r.counterexample[0]
            assert np.all((x >= lo) & (x <= hi))
            assert np.abs(fwd(W, b, x)[0] - z0).max() > delta
        else:
            assert 0 < r.bound <= truth + 1e-6
        check_bounds(p, truth)
    assert seen["sat"] and seen["unsat"], seen


def fairness_truth(W, b, regions, m):
    """Twin weights built here (copy B reads input 0 from the extra input 3), ordered class
    pairs (t, j), t != j: min over regions and pairs of the 'A argmax t, B argmax j' margin."""
    W0 = W[0]
    WB = np.hstack([np.zeros((W0.shape[0], 1)), W0[:, 1:], W0[:, :1]])
    tw = [np.vstack([np.hstack([W0, np.zeros((W0.shape[0], 1))]), WB])]
    tw += [block_diag(Wl, Wl) for Wl in W[1:]]
    tb = [np.concatenate([bl, bl]) for bl in b]
    clauses = []
    for t, j in itertools.permutations(range(m), 2):
        rows = [np.eye(2 * m)[k] - np.eye(2 * m)[t] for k in range(m) if k != t]
        rows += [np.eye(2 * m)[m + k] - np.eye(2 * m)[m + j] for k in range(m) if k != j]
        clauses.append((np.vstack(rows), np.zeros(len(rows))))
    return min(min_clause_margins(tw, tb, lo, hi, clauses)[0].min() for lo, hi in regions)


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["values", "interval"])
def test_fairness_matches_enumeration(domain):
    seen = {"sat": 0, "unsat": 0}
    for seed in range(6):
        rng, W, b, x0, eps = tiny(seed, n0=3)
        W[0][:, 0] *= rng.choice([0.05, 1.0])      # a weakly and a strongly sensitive input
        three = [0.0, 0.5, 1.0] if seed < 2 else [0.0, 1.0]
        kw = {"values": [three]} if domain == "values" else {"interval": [[0.0, 1.0]]}
        p = PropertyConfig("fairness", sensitive=[0], **kw).pose(mlp(W, b), x0, 0, eps)
        truth = fairness_truth(W, b, p.regions, 3)
        if abs(truth) < TIE:
            continue
        r = p.verify(seed=seed)
        expected = "sat" if truth < 0 else "unsat"
        assert r.verdict == expected, (seed, truth, r)
        seen[expected] += 1
        if expected == "sat":
            u = r.counterexample[0]
            x, x2 = u[:3], np.r_[u[3], u[1:3]]
            assert np.array_equal(x[1:], x2[1:])
            assert np.all(np.abs(x[1:] - x0[1:]) <= eps + 1e-12)
            if domain == "values":
                assert x[0] in three and x2[0] in three and x[0] != x2[0]
            za, zb = fwd(W, b, x)[0], fwd(W, b, x2)[0]
            # a different class, or a tie (which CR and fairness count as a violation)
            assert za.argmax() != zb.argmax() or np.sort(za)[-2] == za.max() \
                or np.sort(zb)[-2] == zb.max()
        else:
            assert 0 < r.bound <= truth + 1e-6
        check_bounds(p, truth)
    assert seen["sat"] and seen["unsat"], seen


def test_fairness_margin_is_symmetric_in_the_two_copies():
    rng, W, b, x0, eps = tiny(2, n0=3)
    p = PropertyConfig("fairness", sensitive=[0], interval=[[0.0, 1.0]]).pose(
        mlp(W, b), x0, 0, eps)
    U = p.sample(rng, 500)
    swapped = U.copy()
    swapped[:, 0], swapped[:, 3] = U[:, 3], U[:, 0]
    assert np.array_equal(p.margins(U), p.margins(swapped))
    za, zb = fwd(W, b, U[:, :3]), fwd(W, b, np.c_[U[:, 3], U[:, 1:3]])
    assert np.array_equal(p.violated(p.margins(U)), za.argmax(1) != zb.argmax(1))


def lr_truth(W, b, lo, hi, L):
    """``max over x, x' in the box of ||f(x) - f(x')||_inf - L ||x - x'||_inf`` exactly: one
    LP per pair of linear pieces and output (the side f(x') - f(x) is the swapped pair)."""
    pieces = linear_pieces(W, b, lo, hi)
    n = lo.size
    best = 0.0
    eye = np.eye(n)
    for (A, bA, YA, cA), (B, bB, YB, cB) in itertools.product(pieces, pieces):
        rows = [np.r_[a, np.zeros(n), 0.0] for a in A] + [np.r_[np.zeros(n), a, 0.0] for a in B]
        rows += [np.r_[eye[i], -eye[i], -1.0] for i in range(n)]
        rows += [np.r_[-eye[i], eye[i], -1.0] for i in range(n)]
        rhs = list(bA) + list(bB) + [0.0] * (2 * n)
        for j in range(YA.shape[0]):
            c = -np.r_[YA[j], -YB[j], -L]
            res = linprog(c, A_ub=np.vstack(rows), b_ub=rhs,
                          bounds=list(zip(lo, hi)) * 2 + [(0, None)], method="highs")
            if res.status == 0:
                best = max(best, -res.fun + cA[j] - cB[j])
    return best


@pytest.mark.slow
def test_lr_matches_enumeration():
    seen = {"sat": 0, "unsat": 0}
    for seed in range(8):
        rng, W, b, x0, eps = tiny(seed)
        lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
        # the largest local gain (an upper estimate), scaled to give both outcomes
        K = max(np.abs(YA).sum(axis=1).max() for _, _, YA, _ in linear_pieces(W, b, lo, hi))
        L = float(K * rng.choice([0.6, 1.5]))
        truth = lr_truth(W, b, lo, hi, L)
        if TIE * 1e-3 < truth < TIE:
            continue
        p = PropertyConfig("lr", L=L).pose(mlp(W, b), x0, 0, eps)
        r = p.verify(seed=seed)
        expected = "sat" if truth >= TIE else "unsat"
        assert r.verdict == expected, (seed, truth, r)
        seen[expected] += 1
        if expected == "sat":
            u = r.counterexample[0]
            x, x2 = u[:2], u[2:]
            assert np.all((u >= np.r_[lo, lo]) & (u <= np.r_[hi, hi]))
            assert np.abs(fwd(W, b, x) - fwd(W, b, x2)).max() > L * np.abs(x - x2).max()
        else:
            assert -LR_TOLERANCE <= r.bound and p.certifies(r.bound)
        check_bounds(p, -truth)
    assert seen["sat"] and seen["unsat"], seen


def softmax_min_sampled(W, b, lo, hi, label, rng, count=40000):
    X = lo + (hi - lo) * rng.random((count, lo.size))
    X = np.vstack([X, np.array(list(itertools.product(*zip(lo, hi))))])  # and the corners
    z = fwd(W, b, X)
    s = np.exp(z - z.max(axis=1, keepdims=True))
    return float((s[:, label] / s.sum(axis=1)).min())


@pytest.mark.slow
def test_scr_sufficient_and_exact_agree_with_sampling():
    seen = {"sat": 0, "unsat": 0}
    exact = "scip" in available_solvers()
    deciders = set()
    for seed in range(12):
        rng, W, b, x0, eps = tiny(seed)
        label = int(fwd(W, b, x0)[0].argmax())
        lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
        smin = softmax_min_sampled(W, b, lo, hi, label, rng)
        eta = float(np.clip(smin + rng.choice([-0.05, 0.05]), 0.51, 0.99))
        p = PropertyConfig("scr", eta=eta).pose(mlp(W, b), x0, label, eps)
        suff = p._shifted(p.c_s).verify(seed=seed)
        if suff.verdict == "unsat":     # never a proof where a sample is below eta
            assert smin >= eta, (seed, smin, eta)
        r = p.verify(seed=seed)
        if smin < eta - 1e-9:
            assert r.verdict != "unsat", (seed, smin, eta, r)
        if r.verdict == "sat":
            x = r.counterexample[0]
            assert np.all((x >= lo) & (x <= hi))
            z = fwd(W, b, x)[0]
            assert np.exp(z[label] - z.max()) / np.exp(z - z.max()).sum() < eta
        elif r.verdict == "unsat":
            assert smin >= eta and 0 < r.bound <= smin - eta + 1e-9
        else:
            assert not exact, (seed, r)   # with SCIP the exact form decides these tiny cases
        if r.verdict in seen:
            seen[r.verdict] += 1
        deciders.add(r.decided_by)
        check_bounds(p, smin - eta)
    assert seen["sat"] and seen["unsat"], seen
    if exact:   # eta near the sampled minimum: the exact exponential form has work to do
        assert "scip-exp" in deciders, deciders


def test_bad_parameters_are_clear_errors():
    from mipcert.errors import InputError

    _, W, b, x0, eps = tiny(0)
    net = mlp(W, b)
    for cfg, msg in [(dict(kind="sr"), "delta"), (dict(kind="scr", eta=0.3), "eta"),
                     (dict(kind="nope"), "unknown property kind"),
                     (dict(kind="fairness", sensitive=[0]), "exactly one"),
                     (dict(kind="fairness", sensitive=[5], values=[[0, 1]]), "sensitive")]:
        with pytest.raises(InputError, match=msg):
            PropertyConfig(**cfg).pose(net, x0, 0, eps)
