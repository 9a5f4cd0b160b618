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
