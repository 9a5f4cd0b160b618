"""MILP bounds of a block (``bounds.obbt.tighten_block_milp``) and the verifier step that uses
them (``verify.refine.refine_milp``), against truths they did not compute: the exact bounds
from enumerating activation patterns, sampled inputs, and the verdicts of enumeration."""
import numpy as np
import pytest

from mipcert.bounds import compute_bounds
from mipcert.bounds.obbt import tighten_block_milp
from mipcert.network import mlp

from .oracle import min_clause_margins
from .test_relu_branch import verify_against_enumeration

pytest.importorskip("highspy")


def random_net(seed, n0=3, hidden=(6, 6, 6)):
    rng = np.random.default_rng(seed)
    sizes = [n0, *hidden, 2]
    weights = [rng.normal(size=(o, i)) / np.sqrt(i) * 1.5 for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(size=o) * 0.3 for o in sizes[1:]]
    centre = rng.uniform(-1, 1, n0)
    r = rng.uniform(0.3, 0.8)
    return weights, biases, mlp(weights, biases), centre - r, centre + r


@pytest.mark.parametrize("seed", range(8))
def test_milp_block_bounds_equal_the_exact_bounds(seed):
    """With time to finish (to HiGHS's 0.1 % MIP gap), every unstable neuron's MILP upper bound (and its lower bound,
    when it is computed: the upper one stays > 0) is the exact extreme over the box, found
    by enumerating activation patterns of the truncated network; never inside it."""
    weights, biases, net, lo, hi = random_net(seed)
    stack = net.affine_relu_stack()
    pre = list(compute_bounds(net, lo, hi, "crown").pre)
    checked = 0
    for k in (1, 2):
        l0, u0 = pre[k]
        unstable = np.flatnonzero((l0 < 0) & (u0 > 0))
        l, u, solves = tighten_block_milp(stack, pre, k, lo, hi, neuron_limit=30)
        n = weights[k].shape[0]
        eye = np.eye(n)
        exact = min_clause_margins(weights[:k + 1], biases[:k + 1], lo, hi,
                                   [(eye[i:i + 1], np.zeros(1)) for i in range(n)]
                                   + [(-eye[i:i + 1], np.zeros(1)) for i in range(n)])[0]
        lo_ex, hi_ex = exact[:n], -exact[n:]
        assert np.all(l <= lo_ex + 1e-9) and np.all(u >= hi_ex - 1e-9)   # sound
        for i in unstable:
            assert u[i] == pytest.approx(hi_ex[i], rel=3e-3, abs=1e-4)
            if u[i] > 0:
                assert l[i] == pytest.approx(lo_ex[i], rel=3e-3, abs=1e-4)
            checked += 1
        assert solves >= len(unstable)
        pre[k] = (l, u)
    assert checked >= 1


@pytest.mark.parametrize("seed", range(4))
def test_time_limited_milp_bounds_hold_on_sampled_inputs(seed):
    """Solves cut short at a tiny time limit still give sound bounds (the dual bound)."""
    weights, biases, net, lo, hi = random_net(seed, n0=20, hidden=(16, 16, 16))
    stack = net.affine_relu_stack()
    pre = list(compute_bounds(net, lo, hi, "crown").pre)
    xs = np.random.default_rng(seed).uniform(lo, hi, size=(20000, lo.size))
    acts = net.activations(xs)
    for k in (1, 2, 3):
        for limit in (1e-3, 0.02):
            l, u, _ = tighten_block_milp(stack, pre, k, lo, hi, neuron_limit=limit)
            pre_k = acts[k]
            assert np.all(pre_k >= l - 1e-9) and np.all(pre_k <= u + 1e-9)
            assert np.all(l >= pre[k][0]) and np.all(u <= pre[k][1])
        pre[k] = (l, u)


@pytest.mark.slow
def test_verifier_with_milp_bounds_matches_enumeration(monkeypatch):
    """17 inputs (no input splitting), with no time for the first search (so that every
    region open after alpha-CROWN goes through the MILP bounds): the verdicts agree with
    enumeration, and the step is reported in the region's stats."""
    monkeypatch.setattr("mipcert.verify.refine.FIRST_SEARCH_SHARE", 0.0)
    refined = 0
    for seed in range(6):
        out = verify_against_enumeration(seed)
        if out is not None:
            refined += "milp_refine" in out[0].stats["regions"][0]
    assert refined >= 1


def test_milp_bounds_after_a_solve_on_another_thread_pool():
    """HiGHS shares one thread pool per process; an instance asking for another size does
    not run (status "Not Set", dual bound 0). After a solve on an explicit pool the MILP
    bounds must be sound (they once came back 0: every neuron 'stable'), and a later solve
    of another size must still run."""
    import highspy

    from mipcert.quiet import new_highs, run_highs

    h = new_highs()
    h.addVars(1, np.zeros(1), np.ones(1))
    h.changeColsCost(1, np.array([0], dtype=np.int32), np.ones(1))
    run_highs(h, threads=2)   # as a clause MILP with --threads 2 would
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    weights, biases, net, lo, hi = random_net(5, n0=20, hidden=(16, 16))
    stack = net.affine_relu_stack()
    pre = list(compute_bounds(net, lo, hi, "crown").pre)
    l, u, solves = tighten_block_milp(stack, pre, 1, lo, hi, neuron_limit=0.2)
    xs = np.random.default_rng(0).uniform(lo, hi, size=(20000, lo.size))
    h1 = net.activations(xs)[1]
    assert solves > 0
    assert np.all(h1 >= l - 1e-9) and np.all(h1 <= u + 1e-9)
    assert np.any(l > pre[1][0]) or np.any(u < pre[1][1])   # and it did tighten
    run_highs(h, threads=1)   # and a solve asking for another size still runs
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal


def test_milp_bounds_with_nothing_unstable_below():
    """Block 0 stably active (a large bias), block 1 unstable: no binaries, so the bounds
    come from the LP (exact: the network below is linear), never from an undefined MILP
    dual bound; they contain every sampled pre-activation and are attained by some."""
    rng = np.random.default_rng(3)
    W0, W1, W2 = rng.normal(size=(5, 20)), rng.normal(size=(6, 5)), rng.normal(size=(2, 6))
    net = mlp([W0, W1, W2], [np.full(5, 50.0), np.zeros(6), np.zeros(2)])
    lo, hi = -np.ones(20), np.ones(20)
    stack = net.affine_relu_stack()
    pre = list(compute_bounds(net, lo, hi, "crown").pre)
    assert np.all(pre[0][0] > 0)
    l, u, _ = tighten_block_milp(stack, pre, 1, lo, hi)
    # h_1 = W1 (W0 x + 50) is linear on the box: its exact range is W1 W0's row norms
    M, c = W1 @ W0, W1 @ np.full(5, 50.0)
    assert np.allclose(u, c + np.abs(M).sum(1), atol=1e-6)
    assert np.allclose(l, c - np.abs(M).sum(1), atol=1e-6)


def test_which_regions_get_milp_bounds_and_the_first_search_cap():
    """Only wide inputs with few unstable ReLUs in block 0 are refined, and the first search
    gets a quarter of the time left (30 s without a limit)."""
    import time

    from mipcert.verify.refine import FIRST_SEARCH_SECONDS, first_search, refinable

    _, _, narrow, lo, hi = random_net(0, n0=3)
    assert not refinable(narrow, compute_bounds(narrow, lo, hi, "crown"))
    _, _, wide, lo, hi = random_net(1, n0=20, hidden=(8, 8))
    b = compute_bounds(wide, lo, hi, "crown")
    assert refinable(wide, b)
    b.pre[0] = (np.full(8, -1.0), np.full(8, 1.0))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("mipcert.verify.refine.MILP_REFINE_BINARIES", 7)
        assert not refinable(wide, b)      # 8 unstable in block 0 > 7
    end = time.perf_counter() + 40
    capped = first_search(lambda: end - time.perf_counter())
    assert 9 < capped() <= 10
    assert FIRST_SEARCH_SECONDS - 1 < first_search(lambda: None)() <= FIRST_SEARCH_SECONDS
