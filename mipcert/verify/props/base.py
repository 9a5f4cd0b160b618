"""A property posed at one test point: its sample space, margin, bounds, attack and verifier.

Every property of FORMULATIONS 2 is read through one number, its **margin** ``mu(u)`` at a
point ``u`` of its *sample space* (the network's input for single-input properties, the
twin input ``(x, x')`` of :mod:`mipcert.network.twin` for relational ones), computed in
float64 through the original network:

    the property holds on the ball  <=>  no u in the sample space is *violated*

(CR / targeted / fairness: violated iff ``mu <= 0``, a tie counts, as for CR; SR / SCR / LR:
violated iff ``mu < 0``). A method's *bound* is a proven lower bound of ``min_u mu(u)``;
``certifies(bound)`` says whether it proves the property. ``verify`` gives a
:class:`~mipcert.verify.result.VerificationResult` whose ``sat`` witness has been re-run
in float64 through the original network (``confirm``) and really violates the property.
"""
from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod

import numpy as np

from ..result import VerificationResult

log = logging.getLogger(__name__)

#: PGD settings of the shared attack: steps and random restarts per region and clause
ATTACK_STEPS, ATTACK_RESTARTS = 40, 2


class PosedProperty(ABC):
    """Base class. Subclasses set ``kind``, ``net`` (the sample-space network), ``regions``
    (list of ``(lo, hi)`` boxes of the sample space) and implement ``margins``."""

    kind = "?"
    strict = True            # violated iff margin < 0 (False: iff margin <= 0)
    certify_threshold = 0.0  # a lower bound certifies when it is > this

    def __init__(self, network, x0, label: int, eps: float, input_lo=0.0, input_hi=1.0,
                 reference=None):
        self.network = network
        self.x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
        self.label, self.eps = int(label), float(eps)
        self.lo = np.maximum(self.x0 - eps, input_lo)
        self.hi = np.minimum(self.x0 + eps, input_hi)
        self.reference = reference
        self.net = network
        self.regions: list[tuple[np.ndarray, np.ndarray]] = [(self.lo, self.hi)]

    # ------------------------------------------------------------ float64 semantics
    def outputs(self, U) -> np.ndarray:
        """Outputs of the sample points ``U`` ``(B, d)`` through the *original* network."""
        return self.network.forward(np.atleast_2d(U))

    @abstractmethod
    def margins(self, U) -> np.ndarray:
        """The property margin ``mu`` of every sample point, ``(B,)`` (module docstring)."""
        ...

    def violated(self, margins) -> np.ndarray:
        margins = np.asarray(margins)
        return margins < 0 if self.strict else margins <= 0

    def certifies(self, bound) -> bool:
        return bound is not None and bool(bound > self.certify_threshold)

    def nominal(self) -> float:
        """The margin at the centre of every region (the test point itself), min over regions."""
        return float(self.margins(np.vstack([(lo + hi) / 2 for lo, hi in self.regions])).min())

    def confirm(self, u) -> tuple[np.ndarray, np.ndarray, float] | None:
        """``(u, outputs, margin)`` when ``u`` (clipped to its region) violates the property in
        float64 (and through the reference forward pass when one is given), else ``None``."""
        u = np.asarray(u, dtype=np.float64).reshape(-1)
        inside = [np.clip(u, lo, hi) for lo, hi in self.regions]
        u = min(inside, key=lambda v: float(np.abs(v - u).max()))
        mu = float(self.margins(u[None])[0])
        if not self.violated(mu):
            return None
        if self.reference is not None and not self._reference_agrees(u):
            return None
        return u, self.outputs(u[None])[0], mu

    def _reference_agrees(self, u) -> bool:
        return True

    # ------------------------------------------------------------ sampling and attack
    def sample(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` points uniform in the sample space (equal shares per region),
        ``(count, d)``."""
        k = len(self.regions)
        per = np.full(k, count // k)
        per[: count % k] += 1
        parts = [lo + (hi - lo) * rng.random((c, lo.size))
                 for (lo, hi), c in zip(self.regions, per) if c]
        return np.vstack(parts) if parts else np.zeros((0, self.regions[0][0].size))

    @abstractmethod
    def attack(self, rng: np.random.Generator, steps: int = ATTACK_STEPS,
               restarts: int = ATTACK_RESTARTS) -> tuple[np.ndarray, float]:
        """PGD for a violation; returns the point of smallest float64 margin and that margin."""
        ...

    # ------------------------------------------------------------ proofs
    @abstractmethod
    def bound(self, method: str, *, solver: str = "highs", threads: int | None = 1,
              timeout: float | None = None) -> float:
        """Proven lower bound of ``min mu`` by ``ibp``, ``crown`` or ``lp`` (``-inf``: none)."""
        ...

    @abstractmethod
    def verify(self, *, solver: str = "highs", timeout: float | None = None, seed: int = 0,
               threads: int | None = 1, attack: bool = True) -> VerificationResult:
        """The exact verifier (MILP; SCIP's exponential form for SCR)."""
        ...

    # ------------------------------------------------------------ helpers for subclasses
    def _result(self, verdict, start, *, bound=None, witness=None, decided_by="", stats=None):
        res = VerificationResult(verdict, time.perf_counter() - start, bound, None, None,
                                 decided_by, dict(stats or {}, property=self.kind))
        if witness is not None:
            u, y, mu = witness
            res.counterexample, res.margin = (u, y), float(mu)
        return res

    def _checked(self, res: VerificationResult, start) -> VerificationResult:
        """Re-run a ``sat`` witness of the generic verifier through the original network in
        float64 with this property's own (strict) reading; downgrade it if it fails."""
        if res.verdict != "sat":
            return res
        found = self.confirm(res.counterexample[0])
        if found is None:
            # a tie (margin exactly 0) is a violation of the generic verifier's reading, not
            # of this strict one; the strict violation is often a step away: one attack
            # (the verifier stopped at the tie and searched no further)
            u, _ = self.attack(np.random.default_rng(0))
            found = self.confirm(u)
            if found is not None:
                return self._result("sat", start, witness=found, decided_by="attack",
                                    stats=res.stats)
            log.warning("%s: the verifier's witness does not violate the property in float64 "
                        "(a tie); answering unknown", self.kind)
            return self._result("unknown", start, decided_by="", stats=res.stats)
        res.counterexample, res.margin = (found[0], found[1]), found[2]
        return res


def box_pgd(value_and_grad, lo, hi, starts, steps: int):
    """Signed-gradient descent on ``value_and_grad(U) -> (v (B,), g (B, d))`` in the box
    ``[lo, hi]`` from ``starts`` ``(B, d)``; returns the best points and values."""
    width = hi - lo
    x = np.clip(starts, lo, hi)
    best_x, best_v = x.copy(), np.full(len(x), np.inf)
    for it in range(steps + 1):
        v, g = value_and_grad(x)
        better = v < best_v
        best_x[better], best_v[better] = x[better], v[better]
        if it == steps:
            break
        alpha = 0.25 * width * (1.0 - it / steps) + 1e-3 * width
        x = np.clip(x - alpha * np.sign(g), lo, hi)
    return best_x, best_v
