"""Regressions found while building the verifier."""
import numpy as np

from mipcert.network import mlp
from mipcert.verify import verify_robustness


def test_clause_after_an_early_stop_is_still_solved():
    """HiGHS kept the interrupt flag of a clause proved by stop_bound and stopped the next
    clause's MILP at once (bound -inf): the verdict was 'unknown' for robust points."""
    rng = np.random.default_rng(3)
    sizes = [4, 12, 12, 3]
    net = mlp([rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])],
              [rng.normal(size=o) * 0.3 for o in sizes[1:]])
    verdicts = []
    for _ in range(20):
        x0 = rng.uniform(0.2, 0.8, 4)
        label = int(np.argmax(net.forward(x0)))
        r = verify_robustness(net, x0, label, 0.3, attack=False, split=False)
        verdicts.append(r.verdict)
        assert r.verdict in ("sat", "unsat"), r.stats
    assert verdicts.count("unsat") >= 10


def test_sat_never_carries_a_positive_bound():
    """A witness found after some clauses were proved reported their bound beside 'sat'."""
    from mipcert.io import load_network

    from pathlib import Path
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    net = load_network(Path(__file__).resolve().parents[2] / "models" / "digits_mlp.npz")
    X, y = load_digits(return_X_y=True)
    _, X_test, _, y_test = train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y)
    r = verify_robustness(net, X_test[0], int(y_test[0]), 0.08, attack=False)
    assert r.verdict == "sat"
    assert r.bound is None and r.margin <= 0


def test_many_inputs_and_no_unstable_relu_goes_to_the_milp():
    """A region of > 16 inputs left open by the bounds with every ReLU stable crashed ReLU
    splitting (``topk`` of an empty score row). Here both ReLUs are always active and the one
    clause {y0 <= -0.5 and y0 >= 0.5} is empty: the answer is unsat (found by fuzzing)."""
    from mipcert.spec import Clause, Region, Specification
    from mipcert.verify import verify

    n0 = 20
    W1 = np.zeros((2, n0))
    W1[0, 0] = W1[1, 1] = 1.0
    net = mlp([W1, np.eye(2)], [np.array([10.0, 10.0]), np.array([-10.0, -10.0])])
    clause = Clause(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([-0.5, -0.5]))
    spec = Specification([Region(-np.ones(n0), np.ones(n0), [clause])], n0, 2)
    for kw in ({}, {"attack": False}, {"bounds": "ibp"}):
        r = verify(net, spec, timeout=20, **kw)
        assert r.verdict == "unsat", (kw, r.stats)



# A 2-4-3-3 network on which HiGHS 1.16's presolve declares the two-copy Lipschitz LP
# infeasible (found by fuzzing); x = x' is always feasible there.
_LR_W = [np.array([[0.007743169655363807, 0.08979019072876751], [0.285800069429302, -0.2838483456420058], [-0.22560070932648418, -0.3857947327593861], [0.16142487207446019, -0.33059138436041646]]), np.array([[0.09153188759426918, 0.1275964079174442, 0.16258272247094202, 0.20202398509921898], [0.3645208949087167, 0.13989101807781157, -0.37093629400925027, -0.3211772146364647], [0.2646271132981727, 0.12141258998314593, -0.05624809418520546, -0.4519003332124429]]), np.array([[-0.15830564294519503, -0.15301246715998007, -0.04441107300134163], [-0.046491153980048, -0.06715768141432384, 0.3890999922764591], [-0.33404392243149356, 0.37042621606285026, 0.003784828418322069]])]
_LR_B = [np.array([0.24501476795894628, -0.11887595559590934, -0.06721618772198719, -0.23448914802598078]), np.array([-0.05395045555949365, 0.15466205616874795, 0.01130000008096934]), np.array([-0.06721758396161337, 0.035400670711675804, 0.22419616043181562])]
_LR_X0 = np.array([0.12745439746679854, 0.8926014485090912])


def test_a_presolve_infeasible_claim_is_not_a_proof():
    """LR with L = 0 was certified (bound +inf) because HiGHS's presolve called a feasible
    model infeasible; the solver layer now re-solves without presolve before believing an
    'infeasible'. Truth: two corners of the ball have outputs 1.3e-3 apart (L = 0)."""
    from mipcert.verify.props import PropertyConfig

    net = mlp(_LR_W, _LR_B)
    p = PropertyConfig("lr", L=0.0).pose(net, _LR_X0, 0, 0.05)
    x, x2 = p.lo, p.hi
    gap = float(np.abs(net.forward(x) - net.forward(x2)).max())
    assert gap > 1e-3
    r = p.verify(timeout=20, attack=False)
    assert r.verdict == "sat", r.stats
    assert p.bound("lp") <= -gap + 1e-6      # mu <= L |x - x'| - |dz| = -gap at that pair


def test_fairness_domains_follow_the_order_of_sensitive():
    """``sensitive = [2, 0]`` was sorted but its domains were not, so feature 0 got feature
    2's domain: a false 'holds' and witnesses outside the domain (found by fuzzing)."""
    import pytest

    from mipcert.errors import InputError
    from mipcert.verify.props import PropertyConfig

    net = mlp([np.eye(3), np.array([[1.0, 0, 0], [-1.0, 0, 0]])],
              [np.zeros(3), np.array([-0.5, 0.5])])       # class 0 iff x0 > 0.5
    x0 = np.array([0.5, 0.5, 0.5])
    for kw, truth in ((dict(interval=[[0.6, 0.7], [0.0, 1.0]]), "sat"),   # feature 0 free
                      (dict(interval=[[0.0, 1.0], [0.6, 0.7]]), "unsat"),  # feature 0 > 0.5
                      (dict(values=[[0.6, 0.7], [0.0, 1.0]]), "sat")):
        given = PropertyConfig("fairness", sensitive=[2, 0], **kw).pose(net, x0, 0, 0.1)
        flipped = {k: v[::-1] for k, v in kw.items()}
        ordered = PropertyConfig("fairness", sensitive=[0, 2], **flipped).pose(net, x0, 0, 0.1)
        for p in (given, ordered):
            for attack in (True, False):
                r = p.verify(timeout=20, attack=attack)
                assert r.verdict == truth, (kw, attack, r.stats)
    with pytest.raises(InputError, match="distinct"):
        PropertyConfig("fairness", sensitive=[0, 0], values=[[0, 1], [0, 1]]).pose(net, x0, 0, 0.1)


def test_a_tie_at_the_first_witness_does_not_end_a_strict_property():
    """SR is violated only strictly (``||z - z0|| > delta``). The generic verifier stops at
    a box centre with ``||z - z0|| = delta`` exactly (a tie) and SR answered unknown although
    the corner (1, 0.75) deviates by 0.5 (found by fuzzing). Every value here is exact in
    binary floating point."""
    from mipcert.verify.props import PropertyConfig

    net = mlp([np.eye(2), np.eye(2)], [np.full(2, 8.0), np.full(2, -8.0)])   # z = x
    p = PropertyConfig("sr", delta=0.25).pose(net, np.array([0.5, 1.0]), 0, 0.5)
    r = p.verify(timeout=20, attack=False)
    assert r.verdict == "sat", r.stats
    x = r.counterexample[0]
    assert np.abs(net.forward(x) - net.forward(np.array([0.5, 1.0]))).max() > 0.25
