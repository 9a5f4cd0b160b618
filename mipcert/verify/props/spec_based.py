"""Properties that are a :class:`~mipcert.spec.Specification` (CR, targeted, SR, and, over the
two-copy network, individual fairness): the verifier, bounds and PGD apply unchanged.

For these the margin is the specification's: ``mu(u) = min_k max_r (C_k y(u) - d_k)_r``
(``y(u)`` the outputs, of both copies for a twin), and a method's bound is the minimum of
its clause margin lower bounds over every region.

SR, standard robustness (FORMULATIONS 2): ``||z(x) - z(x0)||_inf <= delta`` on the ball,
one clause per output and side::

    z0_j + delta - z_j >= 0   and   z_j - z0_j + delta >= 0      =>  mu = delta - ||z - z0||_inf
"""
from __future__ import annotations

import math
import time

import numpy as np

from ...errors import InputError
from ...spec import Clause, Region, Specification, robustness_spec
from ..falsify import pgd
from .base import ATTACK_RESTARTS, ATTACK_STEPS, PosedProperty

#: a reference (onnxruntime, float32) margin may miss the float64 one by this much
REFERENCE_TOLERANCE = 1e-4


class SpecProperty(PosedProperty):
    """A property read as ``self.clauses`` over the boxes ``self.regions`` of ``self.net``."""

    strict = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clauses: list[Clause] = []

    @property
    def spec(self) -> Specification:
        regions = [Region(lo, hi, self.clauses) for lo, hi in self.regions]
        return Specification(regions, self.net.input_size, self.net.output_size,
                             name=f"{self.kind}(eps={self.eps})")

    def clause_margins(self, Y) -> np.ndarray:
        """``(B, K)``: every clause margin of outputs ``Y`` ``(B, m_net)``."""
        return np.stack([c.margin(Y) for c in self.clauses], axis=1)

    def from_clause_bounds(self, lows) -> float:
        """Lower bound of ``mu`` from lower bounds of every clause margin ``(K,)``."""
        return float(np.min(lows))

    def margins(self, U) -> np.ndarray:
        return self.clause_margins(self.outputs(U)).min(axis=1)

    def _reference_agrees(self, u) -> bool:
        y_ref = np.asarray(self._reference_outputs(u[None]), dtype=np.float64)
        mu = float(self.clause_margins(y_ref).min())
        return mu <= REFERENCE_TOLERANCE * (1 + np.abs(y_ref).max())

    def _reference_outputs(self, U):
        return self.reference(U)

    # ------------------------------------------------------------ attack
    def attack(self, rng, steps: int = ATTACK_STEPS, restarts: int = ATTACK_RESTARTS):
        best_u, best_m = None, math.inf
        for lo, hi in self.regions:
            region = Region(lo, hi, self.clauses)
            starts = np.vstack([(lo + hi) / 2, lo + (hi - lo) * rng.random((restarts, lo.size))])
            for clause in self.clauses:
                xs, _ = pgd(self.net, region, clause, starts, steps)
                mu = self.margins(xs)
                i = int(np.argmin(mu))
                if mu[i] < best_m:
                    best_u, best_m = xs[i], float(mu[i])
        return best_u, best_m

    # ------------------------------------------------------------ bounds
    def _clause_bounds(self, lo, hi, method, solver, threads, deadline):
        from ...bounds import clause_margin_bounds, compute_bounds

        region = Region(lo, hi, self.clauses)
        b = compute_bounds(self.net, lo, hi, "ibp" if method == "ibp" else "crown", device="cpu")
        lows, _ = clause_margin_bounds(self.net, b, region, "ibp")
        if method != "ibp":   # CROWN rows can be looser than intervals: both are sound
            lows = np.maximum(lows, clause_margin_bounds(self.net, b, region, "crown")[0])
        if method != "lp":
            return lows
        from ...encode import build_margin_model
        from ...relaxation import Relaxation
        from ...solve import PersistentSolver

        model, exprs = build_margin_model(self.net, b, region, Relaxation.LP)
        engine = PersistentSolver(model, solver, threads=threads)
        out = lows.copy()
        for k, expr in enumerate(exprs):
            left = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
            engine.set_objective(expr, sense="min")
            out[k] = max(out[k], engine.solve(time_limit=left).bound)  # both are sound
        return out

    def bound(self, method, *, solver="highs", threads=1, timeout=None) -> float:
        if method not in ("ibp", "crown", "lp"):
            raise InputError(f"unknown bound method {method!r}: choose ibp, crown or lp")
        deadline = None if timeout is None else time.perf_counter() + timeout
        return min(self.from_clause_bounds(self._clause_bounds(lo, hi, method, solver,
                                                               threads, deadline))
                   for lo, hi in self.regions)

    # ------------------------------------------------------------ the exact verifier
    def verify(self, *, solver="highs", timeout=None, seed=0, threads=1, attack=True):
        from ..verifier import verify

        start = time.perf_counter()
        ref = None if self.reference is None else self._reference_outputs
        res = verify(self.net, self.spec, solver=solver, relaxation="milp", bounds="crown",
                     timeout=timeout, reference=ref, attack=attack, seed=seed,
                     threads=threads, device="cpu")
        res.stats["property"] = self.kind
        return self._checked(res, start)


class ClassificationRobustness(SpecProperty):
    """CR (untargeted) or targeted robustness: ``mu = min_t z_y - z_t`` (t = target)."""

    def __init__(self, network, x0, label, eps, input_lo=0.0, input_hi=1.0, reference=None,
                 target: int | None = None):
        super().__init__(network, x0, label, eps, input_lo, input_hi, reference)
        self.kind = "cr" if target is None else "targeted"
        spec = robustness_spec(self.x0, self.label, eps, network.output_size, target=target,
                               input_lo=input_lo, input_hi=input_hi)
        self.clauses = spec.regions[0].clauses


class StandardRobustness(SpecProperty):
    """SR: ``mu = delta - ||z(x) - z(x0)||_inf`` (module docstring); violated iff ``mu < 0``."""

    kind = "sr"
    strict = True

    def __init__(self, network, x0, label, eps, input_lo=0.0, input_hi=1.0, reference=None,
                 delta: float = 1.0):
        super().__init__(network, x0, label, eps, input_lo, input_hi, reference)
        if not (np.isfinite(delta) and delta > 0):
            raise InputError(f"SR needs delta > 0, got {delta}")
        self.delta = float(delta)
        z0 = network.forward(self.x0)
        m = network.output_size
        for j in range(m):
            e = np.zeros((1, m))
            e[0, j] = 1.0
            self.clauses.append(Clause(-e, [-(z0[j] + delta)]))   # z0_j + delta - z_j
            self.clauses.append(Clause(e, [z0[j] - delta]))       # z_j - z0_j + delta
