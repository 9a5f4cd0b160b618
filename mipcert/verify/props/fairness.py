"""Individual fairness (FORMULATIONS 2, ``papers/000_*``) over two copies of the network.

Two inputs ``x, x'`` share their non-sensitive features, which range over the ball around
``x0``; their sensitive features ``S`` range independently over the sensitive domain (a set
of values per feature, or an interval). The property holds when every such pair gets the
same class. On the twin network (:mod:`mipcert.network.twin`, shared = the non-sensitive
inputs) a violation is a pair where copy A has class ``t`` and copy B class ``j != t``:
one clause per ``t < j`` (swapping the copies maps ``(t, j)`` onto ``(j, t)`` and leaves the
input set unchanged), with rows::

    z_k(x)  - z_t(x)  <= 0   for k != t        (t is an argmax of copy A)
    z_k(x') - z_j(x') <= 0   for k != j        (j is an argmax of copy B)

The margin of one pair ``u`` needs every ordered pair, ``mu(u) = min_{t != j} max(rows)``
(the swapped pair is another point of the input set, not this one); violated iff ``mu <= 0``
(a tie counts, as for CR). The verifier and the bounds, which range over the whole
(swap-symmetric) input set, need only ``t < j``. With
discrete domains every ordered pair of distinct sensitive assignments is one region whose
sensitive entries are fixed, so a witness always takes values of the domain.
"""
from __future__ import annotations

import itertools

import numpy as np

from ...errors import InputError
from ...network.twin import split_twin_input, twin_network
from ...spec import Clause
from .spec_based import SpecProperty

#: most regions (ordered pairs of sensitive assignments) a discrete domain may create
MAX_REGIONS = 256


def fairness_clauses(m: int, ordered: bool = False) -> list[Clause]:
    """The ``m (m - 1) / 2`` clauses ``t < j`` of the module docstring over twin outputs
    ``(2 m,)``; ``ordered``: all ``m (m - 1)`` pairs ``t != j``."""
    clauses = []
    for t in range(m):
        for j in range(m) if ordered else range(t + 1, m):
            if j == t:
                continue
            rows = []
            for k in range(m):
                if k != t:
                    r = np.zeros(2 * m)
                    r[k], r[t] = 1.0, -1.0
                    rows.append(r)
            for k in range(m):
                if k != j:
                    r = np.zeros(2 * m)
                    r[m + k], r[m + j] = 1.0, -1.0
                    rows.append(r)
            clauses.append(Clause(np.vstack(rows), np.zeros(len(rows))))
    return clauses


class IndividualFairness(SpecProperty):
    """``sensitive``: input indices; ``values``: per sensitive feature the list of its values,
    or ``interval``: per sensitive feature ``[a, b]`` (exactly one of the two)."""

    kind = "fairness"

    def __init__(self, network, x0, label, eps, input_lo=0.0, input_hi=1.0, reference=None,
                 sensitive=(), values=None, interval=None):
        super().__init__(network, x0, label, eps, input_lo, input_hi, reference)
        n, m = network.input_size, network.output_size
        given = np.asarray([int(i) for i in sensitive], dtype=np.int64)
        if given.size == 0 or given.min() < 0 or given.max() >= n:
            raise InputError(f"fairness needs sensitive input indices in [0, {n}), "
                             f"got {list(sensitive)}")
        if len(set(given.tolist())) != given.size:
            raise InputError(f"fairness sensitive indices must be distinct, got {list(sensitive)}")
        # the domains are given in the order of `sensitive`; everything below is in index order
        order = np.argsort(given, kind="stable")
        S = given[order]
        if m < 2:
            raise InputError("fairness compares classes: the network needs >= 2 outputs")
        if (values is None) == (interval is None):
            raise InputError("fairness needs exactly one sensitive domain: 'values' (a list "
                             "of values per sensitive feature) or 'interval' ([a, b] per feature)")
        self.sensitive = S
        self.shared = np.ones(n, dtype=bool)
        self.shared[S] = False
        self.net = twin_network(network, self.shared)
        self.clauses = fairness_clauses(m)                  # verifier, bounds, attack
        self.pair_clauses = fairness_clauses(m, ordered=True)  # the margin of one pair
        self.regions = []
        if interval is not None:
            iv = np.asarray(interval, dtype=np.float64).reshape(-1, 2)
            if len(iv) != S.size or np.any(iv[:, 0] > iv[:, 1]):
                raise InputError(f"fairness interval needs one [a, b] with a <= b per sensitive "
                                 f"feature ({S.size}), got {interval}")
            iv = iv[order]
            self.regions.append(self._box(iv[:, 0], iv[:, 1], iv[:, 0], iv[:, 1]))
        else:
            if len(values) != S.size or any(len(v) < 2 for v in values):
                raise InputError(f"fairness values need a list of at least two values per "
                                 f"sensitive feature ({S.size}), got {values}")
            values = [values[i] for i in order]
            combos = [np.asarray(c, dtype=np.float64) for c in itertools.product(*values)]
            pairs = [(a, b) for a, b in itertools.product(combos, combos) if np.any(a != b)]
            if len(pairs) > MAX_REGIONS:
                raise InputError(f"the sensitive domain gives {len(pairs)} ordered pairs of "
                                 f"assignments (at most {MAX_REGIONS}); use 'interval' instead")
            self.regions = [self._box(a, a, b, b) for a, b in pairs]

    def clause_margins(self, Y):
        return np.stack([c.margin(Y) for c in self.pair_clauses], axis=1)

    def _box(self, a_lo, a_hi, b_lo, b_hi):
        lo, hi = self.lo.copy(), self.hi.copy()
        lo[self.sensitive], hi[self.sensitive] = a_lo, a_hi
        return np.concatenate([lo, b_lo]), np.concatenate([hi, b_hi])

    def _pair_outputs(self, U, forward):
        x, x2 = split_twin_input(U, self.network.input_size, self.shared)
        return np.hstack([np.asarray(forward(x), np.float64), np.asarray(forward(x2), np.float64)])

    def outputs(self, U):
        return self._pair_outputs(U, self.network.forward)

    def _reference_outputs(self, U):
        return self._pair_outputs(U, self.reference)
