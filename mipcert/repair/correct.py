"""Adversary correction by cutting planes (FORMULATIONS 5, Zhao & Kronqvist).

Given a network with parameters ``w0`` (the chosen layers, :class:`Parameters`), adversarial
points with their true labels and clean data, approximately solve

    min ||w - w0||   s.t.   m_{i,t}(w) >= delta  (every adversarial point i, class t != y_i),
                            L(w) <= (1 + rho) L(w0)

by cutting planes: ``W_cut = {w0}``; each round adds, for the newest point ``v`` of
``W_cut``, the gradient cuts of every margin and of the loss at ``v`` to one persistent
convex QP (:class:`CorrectionQP`), solves it, evaluates the solution's *true* violation
``V(w)`` and clean loss ``L(w)`` (pool), and adds it to ``W_cut``. It stops after ``rounds``
rounds, when the solution solves the true problem (``V(w) = 0``: every margin >= delta
within :data:`MARGIN_TOL`, and ``L(w)`` within its bound: with the last layer alone the
margin cuts are exact, so ``V = 0`` already in round 1, while the loss cuts only close in on
the loss bound round by round), when the QP is infeasible, or at the time limit. The pick is the pool member minimising
``omega V / V(w0) + (1 - omega) L / L(w0)``; the whole pool (the Pareto front) is returned.

When only the last layer changes the margins are linear in ``w``, so their cuts are exact;
the loss is convex in the last layer, so its cuts are Kelley's outer approximation.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..network import Parameters
from .cuts import CorrectionFunctions, CutRows
from .qp import make_qp

log = logging.getLogger(__name__)

#: a margin counts as satisfied when m >= delta - MARGIN_TOL (solver feasibility tolerance)
MARGIN_TOL = 1e-6
#: a margin cut repeats an earlier one of the same margin when coefficients and right-hand
#: side agree to this relative tolerance (with the last layer alone every margin cut repeats)
REPEAT_TOL = 1e-9
#: fallback box when the QP solver fails: |w_j - w0_j| <= TRUST_FACTOR * max(1, max |w0|)
TRUST_FACTOR = 10.0
#: the clean loss meets its bound when L <= bound * (1 + LOSS_TOL)
LOSS_TOL = 1e-3
#: the cuts ask for delta + CUT_SLACK, so that a solver's 1e-7-feasible point meets delta
CUT_SLACK = 1e-6


@dataclass
class PoolMember:
    """One QP solution: its round, parameters ``w`` ``(P,)`` and true ``V`` and ``L``."""

    round: int
    w: np.ndarray = field(repr=False)
    violation: float
    loss: float
    violated: int          # margins below delta - MARGIN_TOL
    change_l2: float       # ||w - w0||_2
    change_linf: float     # max |w - w0|
    seconds: float         # since the start of the correction

    def as_json(self) -> dict:
        return {k: getattr(self, k) for k in ("round", "violation", "loss", "violated",
                                              "change_l2", "change_linf", "seconds")}


@dataclass
class CorrectionResult:
    """The pool, the pick and what stopped the run.

    ``status``: ``"corrected"`` (the last member has ``V = 0`` and meets the loss bound),
    ``"rounds"`` (round limit
    reached with violations left), ``"time_limit"``, or ``"infeasible"`` (the cut QP has no
    solution: no change of the chosen parameters meets the linearised constraints; when that
    happens in round 1 with exact cuts, the problem itself is infeasible).
    """

    status: str
    params: Parameters = field(repr=False)
    pool: list[PoolMember]
    violation0: float
    loss0: float
    loss_bound: float
    omega: float
    norm: str
    seconds: float
    qp_rows: int
    max_change: float | None = None   # the box on |w_j - w0_j| the QP had at the end
    message: str = ""

    def score(self, member: PoolMember, omega: float | None = None) -> float:
        """``omega V / V(w0) + (1 - omega) L / L(w0)``."""
        omega = self.omega if omega is None else omega
        return (omega * member.violation / max(self.violation0, 1e-300)
                + (1 - omega) * member.loss / max(self.loss0, 1e-300))

    def pick_index(self, omega: float | None = None) -> int | None:
        """Index of the pool member of lowest score (the first among equals), or None."""
        if not self.pool:
            return None
        return int(np.argmin([self.score(p, omega) for p in self.pool]))

    @property
    def pick(self) -> PoolMember | None:
        i = self.pick_index()
        return None if i is None else self.pool[i]

    def network(self, member: PoolMember | None = None):
        """The corrected network of ``member`` (default: the pick); None when the pool is empty."""
        member = self.pick if member is None else member
        return None if member is None else self.params.network_with(member.w)

    def as_json(self) -> dict:
        i = self.pick_index()
        return {"status": self.status, "message": self.message, "norm": self.norm,
                "omega": self.omega, "layers": self.params.layer_names,
                "parameters": self.params.size, "violation0": self.violation0,
                "loss0": self.loss0, "loss_bound": self.loss_bound,
                "seconds": round(self.seconds, 4), "qp_rows": self.qp_rows,
                "max_change": self.max_change, "pick": i,
                "pool": [p.as_json() for p in self.pool]}


def _drop_repeats(cuts: CutRows, seen: list[CutRows]) -> CutRows:
    """The rows of ``cuts`` that no earlier cut of the same margin (same row index in
    ``seen``) repeats; ``cuts`` joins ``seen``. Repeated rows describe the same half-space
    and only make the QP degenerate."""
    keep = np.ones(len(cuts.lo), bool)
    scale = 1.0 + np.abs(cuts.A).max(axis=1)
    for old in seen:
        same = (np.abs(cuts.A - old.A).max(axis=1) <= REPEAT_TOL * scale) & \
            (np.abs(cuts.lo - old.lo) <= REPEAT_TOL * (1.0 + np.abs(cuts.lo)))
        keep &= ~same
    seen.append(cuts)
    return CutRows(cuts.A[keep], cuts.lo[keep], cuts.hi[keep])


def correct(network, X_adv, y_adv, X_clean, y_clean, *, layers="last", delta: float = 1.0,
            rho: float = 0.2, rounds: int = 10, omega: float = 0.2, norm: str = "l2",
            solver: str = "highs", time_limit: float | None = None,
            max_change: float | None = None, threads: int | None = None) -> CorrectionResult:
    """Run the cutting-plane correction (see the module doc) and return its pool and pick.

    ``X_adv`` ``(n, d)``/``y_adv`` ``(n,)``: adversarial points and true labels; ``X_clean``/
    ``y_clean``: clean data of the loss constraint; ``layers``: ``"last"``, ``"all"`` or
    Dense layer names; ``time_limit``: seconds for the whole run (checked between rounds
    and passed to each QP solve); ``max_change``: bound on every ``|w_j - w0_j|`` (default
    none; ``TRUST_FACTOR * max(1, max |w0|)`` is added only if the QP solver fails without
    it, see :mod:`mipcert.repair.qp`); ``norm``: ``"l2"`` or ``"linf_l1"``; ``solver``: ``"highs"``, ``"scip"``, ``"gurobi"``
    (the QP in Pyomo) or ``"nnls"`` (l2 only: its dual by NNLS, :mod:`mipcert.repair.ldp`,
    the fast choice when many parameters change).
    """
    if rounds < 1:
        raise InputError(f"rounds = {rounds} must be >= 1")
    if not 0.0 <= omega <= 1.0:
        raise InputError(f"omega = {omega} must lie in [0, 1]")
    if time_limit is not None and time_limit <= 0:
        raise InputError(f"time_limit = {time_limit} must be positive")
    start = time.perf_counter()
    params = Parameters(network, layers)
    fns = CorrectionFunctions(params, X_adv, y_adv, X_clean, y_clean, delta=delta, rho=rho)
    fallback = TRUST_FACTOR * max(1.0, float(np.abs(params.w0).max(initial=0.0)))
    qp = make_qp(params.size, norm=norm, solver=solver, max_change=max_change,
                 fallback_change=fallback, threads=threads)
    w0 = params.w0
    result = CorrectionResult("rounds", params, [], fns.violation(w0), fns.loss0,
                              fns.loss_bound, omega, norm, 0.0, 0)
    v = w0
    seen: list[CutRows] = []
    for r in range(1, rounds + 1):
        left = None if time_limit is None else time_limit - (time.perf_counter() - start)
        if left is not None and left <= 0:
            result.status, result.message = "time_limit", f"time limit before round {r}"
            break
        qp.add(_drop_repeats(fns.margin_cuts(v, slack=CUT_SLACK), seen))
        qp.add(fns.loss_cut(v))
        out, d = qp.solve(time_limit=left)
        if d is None:
            if out.status == "infeasible":
                result.status = "infeasible"
                result.message = (f"round {r}: the cut QP is infeasible: no change of "
                                  f"{params.layer_names} meets every margin >= {delta} and "
                                  f"the loss bound {fns.loss_bound:.4g} (linearised)")
            else:
                result.status = "time_limit" if out.status == "time_limit" else "error"
                result.message = (f"round {r}: the QP solve ended with status {out.status} "
                                  f"({out.message})")
            break
        w = w0 + d
        margins = fns.margins(w)
        member = PoolMember(r, w, float(np.maximum(delta - margins, 0).sum()), fns.loss(w),
                            int((margins < delta - MARGIN_TOL).sum()),
                            float(np.linalg.norm(d)), float(np.abs(d).max(initial=0.0)),
                            time.perf_counter() - start)
        result.pool.append(member)
        log.info("round %d: V = %.4g (%d margins < delta), L = %.4g (bound %.4g), "
                 "|dw| = %.4g, %d QP rows, %.2fs", r, member.violation, member.violated,
                 member.loss, fns.loss_bound, member.change_l2, qp.rows, member.seconds)
        v = w
        if member.violated == 0 and member.loss <= fns.loss_bound * (1 + LOSS_TOL):
            result.status = "corrected"
            break
    result.seconds = time.perf_counter() - start
    result.qp_rows, result.max_change = qp.rows, qp.box
    return result
