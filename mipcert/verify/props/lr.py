"""LR, Lipschitz robustness (FORMULATIONS 2): ``||z(x) - z(x')||_inf <= L ||x - x'||_inf`` for
all ``x, x'`` in the ball, over two copies of the network in one model.

The ratio is nonconvex; with ``t >= ||x - x'||_inf`` (``2 n`` linear rows ``-t <= x_i - x'_i
<= t``, ``t in [0, max width]``) the property holds iff for every output ``j``

    max over x, x', t of  z_j(x) - z_j(x') - L t  <=  0

(the side ``z_j(x') - z_j(x)`` is the same problem with the copies swapped, and both copies
range over the same ball, so one maximisation per output suffices).

``mu(x, x') = L ||x - x'||_inf - ||z(x) - z(x')||_inf``; violated iff ``mu < 0``.

**Tolerance.** At ``x = x'`` the objective is exactly 0, so when the property holds the
optimum is 0 and no solver's dual bound (moved outward by the safety margin of
FORMULATIONS 1.5) can be below it. A proof therefore reads ``bound <= LR_TOLERANCE``: what
is certified is ``||z(x) - z(x')|| <= L ||x - x'|| + LR_TOLERANCE`` for all pairs of the ball.
"""
from __future__ import annotations

import time

import numpy as np

from ...errors import InputError
from ...network.twin import twin_network
from ...spec import Clause, Region
from .base import ATTACK_RESTARTS, ATTACK_STEPS, PosedProperty, box_pgd

#: absolute slack (output units) of an LR certificate: see the module docstring
LR_TOLERANCE = 1e-6


class LipschitzRobustness(PosedProperty):
    kind = "lr"
    strict = True
    certify_threshold = -LR_TOLERANCE

    def __init__(self, network, x0, label, eps, input_lo=0.0, input_hi=1.0, reference=None,
                 L: float = 1.0):
        super().__init__(network, x0, label, eps, input_lo, input_hi, reference)
        if not (np.isfinite(L) and L >= 0):
            raise InputError(f"LR needs a Lipschitz constant L >= 0, got {L}")
        self.L = float(L)
        self.net = twin_network(network, None)
        self.regions = [(np.concatenate([self.lo, self.lo]), np.concatenate([self.hi, self.hi]))]
        self.n = network.input_size

    def _pairs(self, U):
        U = np.atleast_2d(U)
        return U[:, : self.n], U[:, self.n:]

    def outputs(self, U):
        x, x2 = self._pairs(U)
        return np.hstack([self.network.forward(x), self.network.forward(x2)])

    def margins(self, U):
        x, x2 = self._pairs(U)
        dz = np.abs(self.network.forward(x) - self.network.forward(x2)).max(axis=1)
        return self.L * np.abs(x - x2).max(axis=1) - dz

    def _reference_agrees(self, u) -> bool:
        x, x2 = self._pairs(u)
        dz = np.abs(np.asarray(self.reference(x), np.float64)
                    - np.asarray(self.reference(x2), np.float64)).max()
        return bool(self.L * np.abs(x - x2).max() - dz < 1e-4 * (1 + dz))

    # ------------------------------------------------------------ attack
    def _value_and_grad(self, U):
        x, x2 = self._pairs(U)
        B, n, m = len(U), self.n, self.network.output_size
        dz = self.network.forward(x) - self.network.forward(x2)
        j = np.argmax(np.abs(dz), axis=1)
        sigma = np.sign(dz[np.arange(B), j])
        c = np.zeros((B, 2 * m))
        c[np.arange(B), j], c[np.arange(B), m + j] = sigma, -sigma
        val, g = self.net.input_gradient(U, c)          # |dz_j| and its gradient
        dx = x - x2
        i = np.argmax(np.abs(dx), axis=1)
        s = np.sign(dx[np.arange(B), i])
        g = -g
        g[np.arange(B), i] += self.L * s
        g[np.arange(B), n + i] -= self.L * s
        return self.L * np.abs(dx).max(axis=1) - val, g

    def attack(self, rng, steps=ATTACK_STEPS, restarts=ATTACK_RESTARTS):
        lo, hi = self.regions[0]
        k = 4 * max(restarts, 1)
        x = self.lo + (self.hi - self.lo) * rng.random((k, self.n))
        near = np.clip(x + (self.hi - self.lo) * 0.01 * rng.standard_normal(x.shape),
                       self.lo, self.hi)
        far = self.lo + (self.hi - self.lo) * rng.random((k, self.n))
        starts = np.vstack([np.hstack([x, near]), np.hstack([x, far])])
        xs, _ = box_pgd(self._value_and_grad, lo, hi, starts, steps)
        mu = self.margins(xs)
        i = int(np.argmin(mu))
        return xs[i], float(mu[i])

    # ------------------------------------------------------------ proofs
    def _output_gaps(self, method, b):
        """Upper bounds of ``z_j(x) - z_j(x')`` over the pair box, ``(m,)``, from bounds ``b``."""
        from ...bounds import clause_margin_bounds

        m = self.network.output_size
        lo, hi = self.regions[0]
        clauses = []
        for j in range(m):
            C = np.zeros((1, 2 * m))
            C[0, j], C[0, m + j] = -1.0, 1.0   # margin z_j(x') - z_j(x)
            clauses.append(Clause(C, [0.0]))
        lows, _ = clause_margin_bounds(self.net, b, Region(lo, hi, clauses),
                                       "ibp" if method == "ibp" else "crown")
        return -lows

    def _model(self, b, relaxation):
        import pyomo.environ as pyo

        from ...encode.twin import build_twin_block

        model = pyo.ConcreteModel(name="mipcert_lr")
        model.net = pyo.Block()
        blk = build_twin_block(model.net, self.network, self.net, b, None, relaxation)
        width = float(np.max(self.hi - self.lo))
        model.t = pyo.Var(bounds=(0.0, width))
        idx = range(self.n)
        xa, xb = blk.inputs_a, blk.inputs_b
        model.gap_up = pyo.Constraint(idx, rule=lambda _, i: xa[i] - xb[i] - model.t <= 0)
        model.gap_down = pyo.Constraint(idx, rule=lambda _, i: xb[i] - xa[i] - model.t <= 0)
        return model, blk

    def _maximise(self, relaxation, solver, threads, deadline, on_witness=None):
        """Per output the proven upper bound of ``z_j(x) - z_j(x') - L t`` (``(m,)``) and the
        last outcome's status; stops early when ``on_witness`` confirms an incumbent."""
        from ...bounds import compute_bounds
        from ...solve import PersistentSolver

        lo, hi = self.regions[0]
        b = compute_bounds(self.net, lo, hi, "crown", device="cpu")
        ub = self._output_gaps("crown", b)            # t >= 0: a bound with no solve
        open_j = [j for j in np.argsort(-ub) if ub[j] > LR_TOLERANCE]
        if not open_j:
            return ub, "bounds", []
        model, blk = self._model(b, relaxation)
        engine = PersistentSolver(model, solver, threads=threads)
        x_vars = blk.inputs_a + [v for v in blk.inputs_b]
        solves, status = [], "optimal"

        def on_incumbent(get):
            return bool(on_witness is not None and on_witness(get(x_vars)))

        for j in open_j:
            engine.set_objective(blk.outputs_a[j] - blk.outputs_b[j] - self.L * model.t, "max")
            left = None if deadline is None else max(deadline - time.perf_counter(), 0.01)
            out = engine.solve(time_limit=left, stop_bound=LR_TOLERANCE,
                               on_incumbent=on_incumbent if relaxation == "milp" else None)
            ub[j] = min(ub[j], out.bound)
            if on_witness is not None and out.has_solution and out.value is not None \
                    and out.value > LR_TOLERANCE and on_witness(out.values(x_vars)):
                out.status = "interrupted"
            solves.append({"output": int(j), "status": out.status, "bound": out.bound,
                           "value": out.value, "seconds": round(out.seconds, 4)})
            status = out.status
            if out.status == "interrupted" and out.bound > LR_TOLERANCE:
                break                                 # stopped by a confirmed witness
            if out.status == "time_limit":
                break
        return ub, status, solves

    def bound(self, method, *, solver="highs", threads=1, timeout=None) -> float:
        from ...bounds import compute_bounds

        if method == "lp":
            deadline = None if timeout is None else time.perf_counter() + timeout
            ub, _, _ = self._maximise("lp", solver, threads, deadline)
        else:
            lo, hi = self.regions[0]
            ub = self._output_gaps(method, compute_bounds(self.net, lo, hi, method, device="cpu"))
        return -float(np.max(ub))       # mu >= L t - ||dz|| >= -max_j ub_j  (t >= 0)

    def verify(self, *, solver="highs", timeout=None, seed=0, threads=1, attack=True):
        start = time.perf_counter()
        deadline = None if timeout is None else start + timeout
        if attack:
            u, _ = self.attack(np.random.default_rng(seed))
            found = self.confirm(u)
            if found is not None:
                return self._result("sat", start, witness=found, decided_by="attack")
        witness = []

        def on_witness(u):
            found = self.confirm(u)
            if found is not None:
                witness.append(found)
            return found is not None

        ub, status, solves = self._maximise("milp", solver, threads, deadline, on_witness)
        stats = {"solves": solves, "tolerance": LR_TOLERANCE}
        if witness:
            return self._result("sat", start, witness=witness[0], decided_by="milp", stats=stats)
        if np.all(ub <= LR_TOLERANCE):
            return self._result("unsat", start, bound=-float(np.max(ub)),
                                decided_by="bounds" if status == "bounds" else "milp",
                                stats=stats)
        return self._result("timed-out" if status == "time_limit" else "unknown", start,
                            stats=stats)
