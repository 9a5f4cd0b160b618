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
