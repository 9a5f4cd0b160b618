"""ReLU branch and bound with beta-CROWN bounds against truths it did not compute:
sampled points of each sub-domain, brute-force enumeration of activation patterns, and
CROWN itself at the root."""
import numpy as np
import pytest

from mipcert.bounds import compute_bounds
from mipcert.bounds.propagate import clause_bounds
from mipcert.network import mlp
from mipcert.spec import Clause, Region, Specification
from mipcert.verify import verify
from mipcert.verify.relu_branch import relu_split

from .oracle import min_clause_margin

torch = pytest.importorskip("torch")


def tiny(seed, n0=3, hidden=(6, 6), m=3, radius=None):
    rng = np.random.default_rng(seed)
    sizes = [n0, *hidden, m]
    weights = [rng.normal(size=(o, i)) / np.sqrt(i) * 1.5 for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(size=o) * 0.3 for o in sizes[1:]]
    net = mlp(weights, biases)
    centre = rng.uniform(-1, 1, n0)
    r = rng.uniform(0.2, 0.8) if radius is None else radius
    lo, hi = centre - r, centre + r
    y0 = net.forward(centre)
    C = rng.normal(size=(int(rng.integers(1, 3)), m))
    d = C @ y0 + rng.normal(size=C.shape[0]) * 0.8
    return weights, biases, net, lo, hi, Clause(C, d)


def problem(net, lo, hi, clause):
    from mipcert.bounds.beta import SplitProblem

    b = compute_bounds(net, lo, hi, "crown")
    return SplitProblem(net.affine_relu_stack(), lo, hi, b.pre, clause.C, clause.d), b


@pytest.mark.parametrize("seed", range(6))
def test_root_bound_without_optimisation_is_crowns(seed):
    _, _, net, lo, hi, clause = tiny(seed)
    p, b = problem(net, lo, hi, clause)
    S, alpha, beta = p.root()
    lb, *_ = p.bound(S, alpha, beta, iters=0)
    pre = [(l[None], u[None]) for l, u in b.pre]
    crown = clause_bounds(net.affine_relu_stack(), pre, lo[None], hi[None], [clause])[0, 0]
    assert float(lb.max()) == pytest.approx(float(crown), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_subdomain_bounds_hold_on_sampled_points_of_the_subdomain(seed):
    """Random splits, random ``α ∈ [0,1]``, random ``β >= 0`` (before and after Adam):
    every row's bound is below the row's value at every sampled input of the sub-domain."""
    _, _, net, lo, hi, clause = tiny(seed, radius=0.7)
    p, _ = problem(net, lo, hi, clause)
    rng = np.random.default_rng(100 + seed)
    D = 6
    S, alpha, beta = [], [], []
    for j, k in enumerate(p.sizes):
        if p.idx[j] is None:
            S.append(None)
            alpha.append(None)
            beta.append(None)
            continue
        S.append(torch.as_tensor(rng.integers(-1, 2, size=(D, k)), dtype=torch.float64))
        alpha.append(torch.as_tensor(rng.uniform(0, 1, (D, p.R, k))))
        beta.append(torch.as_tensor(rng.exponential(1.0, (D, p.R, k))))
    xs = rng.uniform(lo, hi, size=(20000, lo.size))
    hs = net.activations(xs)
    rows = net.forward(xs) @ clause.C.T - clause.d          # (N, R)
    LU, empty = p.refine(S, p.root_bounds(D))
    for iters, lu in ((0, None), (15, None), (0, LU), (15, LU)):
        lb, xstar, *_ = p.bound(S, alpha, beta, iters=iters, LU=lu)
        lb = lb.numpy()
        for dom in range(D):
            inside = np.ones(len(xs), bool)
            for j, idx in enumerate(p.idx):
                if idx is None:
                    continue
                s = S[j][dom].numpy()
                h = hs[j][:, idx.numpy()]
                inside &= np.all((s == 0) | (s * h >= 0), axis=1)
            if not inside.any():
                continue
            assert not empty[dom], (seed, dom)   # sampled points: the sub-domain is not empty
            assert (rows[inside] >= lb[dom] - 1e-9).all(), (seed, iters, dom)
            for j, idx in enumerate(p.idx):      # refined bounds hold on the sub-domain
                if idx is not None:
                    h = hs[j][inside][:, idx.numpy()]
                    assert (h >= LU[j][0][dom].numpy() - 1e-9).all()
                    assert (h <= LU[j][1][dom].numpy() + 1e-9).all()
        # the input minimisers lie in the box
        x = xstar.numpy().reshape(-1, lo.size)
        assert (x >= lo - 1e-12).all() and (x <= hi + 1e-12).all()


@pytest.mark.parametrize("refine,candidates", [(False, 1), (True, 1), (False, 4)])
@pytest.mark.parametrize("seed", range(24))
def test_search_agrees_with_enumeration(seed, refine, candidates):
    """Run to the end, the search proves exactly the clauses whose true minimum is > 0 (with
    a bound below it) and finds a float64 witness for the others; with each child's bounds
    refined, and with filtered smart branching, too."""
    weights, biases, net, lo, hi, clause = tiny(seed, n0=2 + seed % 3,
                                                hidden=[(6, 6), (8,), (4, 4, 4)][seed % 3])
    best, _ = min_clause_margin(weights, biases, lo, hi, clause.C, clause.d)
    if abs(best) < 1e-6:
        pytest.skip("tie: the true minimum is 0")
    p, _ = problem(net, lo, hi, clause)
    found = []

    def check(x):
        m = float((clause.C @ net.forward(x) - clause.d).max())
        if m <= 0 and (x >= lo).all() and (x <= hi).all():
            found.append(x)
            return True
        return False

    res = relu_split(p, check=check, batch=4, refine=refine, candidates=candidates)
    if best > 0:
        assert res.status in ("proved", "budget"), (seed, best, res.status)
        if res.status == "proved":
            assert res.bound <= best + 1e-7
            assert res.state.proved_fraction == 1.0
    else:
        assert res.status in ("witness", "budget"), (seed, best, res.status)
        if res.status == "witness":
            assert found
    assert res.status != "budget" or p.num_unstable > 0


@pytest.mark.parametrize("seed", range(4))
def test_search_resumes_where_it_stopped(seed):
    """A search stopped after every round and resumed reaches the verdict, bound and tree of
    one uninterrupted call."""
    weights, biases, net, lo, hi, clause = tiny(seed, n0=2, hidden=(6, 6))

    def check(x):
        return float((clause.C @ net.forward(x) - clause.d).max()) <= 0

    p, _ = problem(net, lo, hi, clause)
    whole = relu_split(p, check=check, batch=2)
    res = relu_split(p, check=check, batch=2, deadline=0.0)
    calls = 1
    while res.status == "timeout":
        res = relu_split(p, check=check, batch=2, deadline=0.0, state=res.state)
        calls += 1
    assert res.status == whole.status
    assert res.state.domains == whole.state.domains
    assert res.bound == pytest.approx(whole.bound, rel=1e-9)
    assert calls >= 1


def high_dim_instance(seed, n0=17):
    """An input of 17 dimensions (input splitting is off: the ReLU search runs)."""
    rng = np.random.default_rng(seed)
    sizes = [n0, 7, 7, 3]
    weights = [rng.normal(size=(o, i)) / np.sqrt(i) * 1.5 for i, o in zip(sizes[:-1], sizes[1:])]
    biases = [rng.normal(size=o) * 0.3 for o in sizes[1:]]
    net = mlp(weights, biases)
    centre = rng.uniform(-1, 1, n0)
    lo, hi = centre - 0.25, centre + 0.25
    y0 = net.forward(centre)
    label = int(np.argmax(y0))
    clauses = []
    for t in range(3):
        if t != label:
            C = np.zeros((1, 3))
            C[0, label], C[0, t] = 1.0, -1.0
            clauses.append(Clause(C, np.array([rng.uniform(-0.8, 0.3)])))
    return weights, biases, net, Specification([Region(lo, hi, clauses)], n0, 3)


def verify_against_enumeration(seed):
    """``verify`` on ``high_dim_instance(seed)``, its verdict, bound and counterexample
    checked against enumeration; ``(result, verdict)``, or None when the true minimum
    margin is 0 (then either verdict is right)."""
    weights, biases, net, spec = high_dim_instance(seed)
    region = spec.regions[0]
    best = min(min_clause_margin(weights, biases, region.lo, region.hi, c.C, c.d)[0]
               for c in region.clauses)
    if abs(best) < 1e-5:
        return None
    res = verify(net, spec, attack=False, timeout=60)
    expected = "sat" if best < 0 else "unsat"
    assert res.verdict == expected, (seed, best, res.verdict, res.stats)
    if expected == "unsat":
        assert 0 < res.bound <= best + 1e-6
    else:
        x, y = res.counterexample
        assert region.contains(x)[0] and region.margin(net.forward(x))[0] <= 0
    return res, expected


@pytest.mark.slow
def test_verifier_verdicts_with_relu_split_match_enumeration(monkeypatch):
    # no MILP bounds of the first blocks: on these small networks they settle most
    # clauses before the search starts (tests/verify/test_milp_refine.py tests them)
    monkeypatch.setattr("mipcert.verify.refine.MILP_REFINE_BINARIES", -1)
    counts = {"sat": 0, "unsat": 0, "relu_split": 0}
    for seed in range(10):
        out = verify_against_enumeration(seed)
        if out is None:
            continue
        res, expected = out
        counts[expected] += 1
        if expected == "unsat":
            counts["relu_split"] += "relu_split" in res.stats["regions"][0]
    assert counts["sat"] >= 2 and counts["unsat"] >= 2, counts
    assert counts["relu_split"] >= 1, counts
