"""SCR, strong classification robustness (FORMULATIONS 2): ``softmax(z(x))_y >= eta`` on the ball.

With ``g_t = z_t - z_y`` (``t != y``), ``softmax_y = 1 / (1 + S)``, ``S = sum_t exp(g_t)``, so

    SCR holds  <=>  max_x S(x) <= tau = 1/eta - 1,      mu(x) = softmax_y(x) - eta.

Three decisions, cheapest first (``eta > 1/2``, ``m`` classes):

- *sufficient*: ``max_t g_t <= c_s = log(tau / (m - 1))`` for all x (then ``S <= (m-1) e^{c_s}
  = tau``): a specification with clauses ``z_y - z_t + c_s > 0``, decided by the verifier;
- *violated*: some x with ``g_t >= c_v = log(tau)`` has ``softmax_y <= eta``: the verifier's
  witness of the clauses ``z_y - z_t + c_v > 0`` (re-checked: ``softmax_y < eta``);
- between them, the *exact exponential form* with SCIP: ``max sum_t w_t`` subject to the
  network's MILP, ``g_t = z_t - z_y`` and ``w_t <= exp(g_t)`` (nonconvex; spatial branch and
  bound). Proven bound ``<= tau`` (less a margin for SCIP's nonlinear tolerances) proves it;
  an incumbent re-checked in float64 is a witness. Without SCIP the answer is ``unknown``.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from ...errors import InputError
from ...spec import Clause
from .base import ATTACK_RESTARTS, ATTACK_STEPS, PosedProperty
from .spec_based import ClassificationRobustness

log = logging.getLogger(__name__)

#: relative margin by which SCIP's bound on S must clear tau (nonlinear feasibility tolerance)
EXACT_MARGIN = 1e-6


def softmax_at(z, label) -> np.ndarray:
    """``softmax(z)_label`` for logits ``z`` ``(B, m)``, stably in float64."""
    z = np.atleast_2d(z)
    shift = z - z.max(axis=1, keepdims=True)
    return np.exp(shift[:, label]) / np.exp(shift).sum(axis=1)


class StrongClassificationRobustness(PosedProperty):
    kind = "scr"
    strict = True

    def __init__(self, network, x0, label, eps, input_lo=0.0, input_hi=1.0, reference=None,
                 eta: float = 0.9):
        super().__init__(network, x0, label, eps, input_lo, input_hi, reference)
        if not (0.5 < eta < 1):
            raise InputError(f"SCR needs 0.5 < eta < 1, got {eta}")
        m = network.output_size
        if m < 2:
            raise InputError("SCR needs a network with at least 2 outputs")
        self.eta = float(eta)
        self.tau = 1.0 / eta - 1.0
        self.c_s = math.log(self.tau / (m - 1))
        self.c_v = math.log(self.tau)
        self.cr = ClassificationRobustness(network, x0, label, eps, input_lo, input_hi, reference)

    def margins(self, U):
        return softmax_at(self.outputs(U), self.label) - self.eta

    def _reference_agrees(self, u) -> bool:
        z = np.asarray(self.reference(u[None]), dtype=np.float64)
        return bool(softmax_at(z, self.label)[0] < self.eta + 1e-4)

    def _shifted(self, c: float) -> ClassificationRobustness:
        """CR with clauses ``z_y - z_t + c > 0`` (``c = c_s``: sufficient; ``c_v``: violated)."""
        p = ClassificationRobustness(self.network, self.x0, self.label, self.eps, self.lo, self.hi)
        p.regions = self.regions
        p.clauses = [Clause(k.C, k.d - c) for k in self.cr.clauses]
        return p

    def softmax_lower(self, lows) -> float:
        """Lower bound of ``mu`` from lower bounds ``L_t`` of ``z_y - z_t``: ``g_t <= -L_t``."""
        return 1.0 / (1.0 + float(np.sum(np.exp(-np.asarray(lows))))) - self.eta

    def attack(self, rng, steps=ATTACK_STEPS, restarts=ATTACK_RESTARTS):
        u, _ = self.cr.attack(rng, steps, restarts)   # pushes some g_t up
        return u, float(self.margins(u[None])[0])

    def bound(self, method, *, solver="highs", threads=1, timeout=None) -> float:
        deadline = None if timeout is None else time.perf_counter() + timeout
        lo, hi = self.regions[0]
        return self.softmax_lower(self.cr._clause_bounds(lo, hi, method, solver, threads, deadline))

    def verify(self, *, solver="highs", timeout=None, seed=0, threads=1, attack=True):
        start = time.perf_counter()
        deadline = None if timeout is None else start + timeout
        stats: dict = {"tau": self.tau, "c_s": self.c_s, "c_v": self.c_v}

        def left():
            return None if deadline is None else max(deadline - time.perf_counter(), 0.01)

        if attack:
            u, _ = self.attack(np.random.default_rng(seed))
            found = self.confirm(u)
            if found is not None:
                return self._result("sat", start, witness=found, decided_by="attack", stats=stats)
        tests = [("sufficient", self.c_s)] + ([("violated", self.c_v)]
                                              if self.network.output_size > 2 else [])
        timed_out = False
        for name, c in tests:
            r = self._shifted(c).verify(solver=solver, timeout=left(), seed=seed,
                                        threads=threads, attack=attack)
            stats[name] = r.verdict
            if name == "sufficient" and r.verdict == "unsat":
                lows = np.full(len(self.cr.clauses), r.bound - c)   # z_y - z_t >= bound - c_s
                return self._result("unsat", start, bound=self.softmax_lower(lows),
                                    decided_by="sufficient", stats=stats)
            if r.verdict == "sat":
                found = self.confirm(r.counterexample[0])
                if found is not None:
                    return self._result("sat", start, witness=found, decided_by=name, stats=stats)
            timed_out = timed_out or r.verdict == "timed-out"
            if deadline is not None and time.perf_counter() >= deadline:
                return self._result("timed-out", start, stats=stats)
        from ...solve import available_solvers

        if "scip" not in available_solvers():
            stats["reason"] = "between the sufficient and violated tests; SCIP is not installed"
            return self._result("unknown", start, stats=stats)
        return self._exact(start, left(), stats)

    def _exact(self, start, time_limit, stats):
        """``max sum_t w_t``, ``w_t <= exp(z_t - z_y)`` over the MILP, with SCIP (module doc)."""
        import pyomo.environ as pyo
        from pyscipopt import exp as scip_exp

        from ...bounds import clause_margin_bounds, compute_bounds
        from ...encode import build_network_block
        from ...solve.backend import backend_class
        from ...solve.standard_form import compile_model
        from ...spec import Region

        lo, hi = self.regions[0]
        b = compute_bounds(self.network, lo, hi, "crown", device="cpu")
        region = Region(lo, hi, self.cr.clauses)
        lows, highs = clause_margin_bounds(self.network, b, region, "crown")
        targets = [t for t in range(self.network.output_size) if t != self.label]
        g_hi, g_lo = -lows, -highs                        # g_t = -(z_y - z_t)
        model = pyo.ConcreteModel(name="mipcert_scr")
        model.net = pyo.Block()
        build_network_block(model.net, self.network, b, "milp")
        K = range(len(targets))
        model.g = pyo.Var(K, bounds=lambda _, k: (float(g_lo[k]), float(g_hi[k])))
        y = model.net.outputs
        model.g_def = pyo.Constraint(
            K, rule=lambda _, k: model.g[k] - y[targets[k]] + y[self.label] == 0)
        backend = backend_class("scip")(compile_model(model, require_objective=False))
        g_cols = [backend.index._by_id[id(model.g[k])] for k in K]
        first = backend.n_cols
        backend.add_columns(np.zeros(len(K)), np.exp(g_hi), np.zeros(len(K), dtype=bool))
        for k in K:
            backend.m.addCons(backend.vars[first + k] - scip_exp(backend.vars[g_cols[k]]) <= 0,
                              name=f"w{k}_le_exp_g")
        c = np.zeros(backend.n_cols)
        c[first:] = 1.0
        backend.set_objective(c, 0.0, "max", None)
        witness = []

        def on_incumbent(get):
            found = self.confirm(get(model.net.inputs))
            if found is not None:
                witness.append(found)
            return found is not None

        threshold = self.tau - EXACT_MARGIN * (1 + self.tau)   # what a proof must reach
        out = backend.solve(time_limit=time_limit, stop_bound=threshold,
                            on_incumbent=on_incumbent)
        stats["exact"] = {"status": out.status, "bound": out.bound, "value": out.value,
                          "seconds": round(out.seconds, 4)}
        if witness:
            return self._result("sat", start, witness=witness[0], decided_by="scip-exp",
                                stats=stats)
        if out.bound <= threshold:
            return self._result("unsat", start, bound=1.0 / (1.0 + out.bound) - self.eta,
                                decided_by="scip-exp", stats=stats)
        if out.has_solution:
            found = self.confirm(out.values(model.net.inputs))
            if found is not None:
                return self._result("sat", start, witness=found, decided_by="scip-exp", stats=stats)
        return self._result("timed-out" if out.status == "time_limit" else "unknown", start,
                            stats=stats)
