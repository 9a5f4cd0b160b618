"""From a network and a specification to a verdict (FORMULATIONS 1.5 and 2).

For every region of the specification:

1. falsify (random points, PGD) — a confirmed witness decides ``sat`` at once;
2. bound (IBP / CROWN / LP) and read each clause's margin lower bound: ``> 0`` proves it;
3. for inputs of few dimensions (exact mode only), branch and bound on the input box with
   batched CROWN bounds (:mod:`mipcert.verify.branch`), which settles most of them;
4. encode the rest (Big-M MILP, or the triangle LP) once, and minimise each open clause's
   margin with the objective swapped in a persistent solver, stopping as soon as the dual
   bound passes 0 (proved) or an incumbent is confirmed as a witness (``sat``).

``unsat`` needs a proven bound > 0 for every clause of every region; ``sat`` needs a witness
re-run in float64 (and through onnxruntime when a reference is given). Anything else is
``unknown`` or, when the time ran out, ``timed-out``. An LP relaxation can prove ``unsat`` but
its points are never reported as witnesses.
"""
from __future__ import annotations

import logging
import time

import numpy as np
from pyomo.core.expr.numeric_expr import LinearExpression

from ..bounds import clause_margin_bounds, compute_bounds
from ..errors import InputError
from ..relaxation import Relaxation
from ..spec import Specification
from .branch import MAX_SPLIT_DIM, input_split
from .falsify import falsify, pgd, polish
from .result import VerificationResult

log = logging.getLogger(__name__)

# A solver's dual bound comes from LPs solved to a feasibility tolerance (~1e-7), so a
# clause counts as proved by a solver only when its bound clears this margin; bounds from
# CROWN / input splitting are rigorous (outward-rounded) and only need to be > 0.
SOLVER_PROOF_MARGIN = 1e-6
# Share of the remaining time that input splitting may use before the MILP takes over.
SPLIT_SHARE = 0.5
# A witness from onnxruntime (float32) may miss the float64 margin by this much.
REFERENCE_TOLERANCE = 1e-4


class Witness:
    """Confirms candidate counterexamples of one region in float64 (and with an optional
    reference forward pass); the first confirmed one is kept in ``found = (x, y, margin)``."""

    def __init__(self, network, region, reference=None):
        self.network, self.region, self.reference = network, region, reference
        self.found = None

    def __call__(self, x) -> bool:
        x = np.clip(np.asarray(x, dtype=np.float64).reshape(-1), self.region.lo, self.region.hi)
        y = self.network.forward(x)
        margin = float(self.region.margin(y)[0])
        if margin > 0:
            return False
        if self.reference is not None:
            y_ref = np.asarray(self.reference(x[None]), dtype=np.float64).reshape(-1)
            m_ref = float(self.region.margin(y_ref)[0])
            if m_ref > REFERENCE_TOLERANCE * (1 + np.abs(y_ref).max()):
                log.warning("witness rejected: float64 margin %.3g but reference margin %.3g",
                            margin, m_ref)
                return False
        self.found = (x, y, margin)
        return True


def _start_point(network, region, k, model, margin_var):
    """A MIP start: the input where a short PGD on clause ``k`` ends, with all its values."""
    from ..encode import point_values

    clause = region.clauses[k]
    centre = (region.lo + region.hi) / 2
    xs, ms = pgd(network, region, clause, np.vstack([centre, region.lo, region.hi]), steps=30)
    x = xs[int(np.argmin(ms))]
    pairs = point_values(model.net, network, x)
    if not isinstance(margin_var, LinearExpression):  # the epigraph variable of the clause
        pairs.append((margin_var, float(clause.margin(network.forward(x))[0])))
    return pairs


def verify(network, spec: Specification, *, solver: str = "highs", relaxation="milp",
           bounds: str = "crown", timeout: float | None = None, reference=None,
           attack: bool = True, split: bool = True, seed: int = 0,
           threads: int | None = None, device=None) -> VerificationResult:
    """Decide ``spec`` on ``network``; see the module docstring for the procedure.

    ``reference(x (B, n)) -> y (B, m)``: an independent forward pass (onnxruntime) that a
    witness must also fail. ``timeout`` in seconds covers the whole run. ``attack`` and
    ``split`` switch falsification and input splitting off (to exercise the MILP alone).
    """
    from ..encode import build_margin_model
    from ..solve import PersistentSolver
    from ..solve.backend import backend_class

    backend_class(solver)  # a missing or unknown solver is an error before any work
    relaxation = Relaxation.parse(relaxation)
    if relaxation.exact_products:
        raise InputError("inference-time verification has no products of variables: "
                         "use --relaxation milp or lp")
    if timeout is not None and timeout <= 0:
        raise InputError(f"timeout must be positive, got {timeout}")
    spec.check_network(network)
    start = time.perf_counter()
    deadline = None if timeout is None else start + timeout
    rng = np.random.default_rng(seed)
    proven: list[float] = []
    stats: dict = {"regions": []}
    incomplete = False
    timed_out = False

    def left():
        return None if deadline is None else deadline - time.perf_counter()

    def done(verdict, decided_by, witness=None):
        # a bound covers the whole specification only when every clause was proved
        bound = min(proven) if proven and not incomplete and verdict == "unsat" else None
        res = VerificationResult(verdict, time.perf_counter() - start, bound, None, None,
                                 decided_by, stats)
        if witness is not None:
            x, y, margin = witness
            res.counterexample, res.margin = (x, y), margin
        return res

    checks = [Witness(network, region, reference) for region in spec.regions]
    # 1. falsification over every region first: it is cheap and often decisive
    if attack:
        for region, check in zip(spec.regions, checks):
            if falsify(network, region, rng=rng, check=check, deadline=deadline) is not None:
                return done("sat", "attack", check.found)

    for region, check in zip(spec.regions, checks):
        rstats: dict = {"clauses": len(region.clauses)}
        stats["regions"].append(rstats)
        b = compute_bounds(network, region.lo, region.hi, bounds, device=device,
                           time_limit=left())
        rstats.update(bounds=bounds, unstable=b.num_unstable, stable=b.num_stable,
                      bounds_seconds=round(b.seconds, 4))
        m_lo, m_hi = clause_margin_bounds(network, b, region, bounds)
        # open clauses, the most likely to be violated (lowest bound) first
        open_k = sorted((k for k in range(len(region.clauses)) if m_lo[k] <= 0),
                        key=lambda k: m_lo[k])
        proven.extend(m_lo[k] for k in range(len(region.clauses)) if m_lo[k] > 0)
        rstats["proved_by_bounds"] = len(region.clauses) - len(open_k)
        if not open_k:
            continue
        if left() is not None and left() <= 0:
            timed_out = incomplete = True
            break
        if relaxation.integral and split and network.input_size <= MAX_SPLIT_DIM:
            share = None if left() is None else time.perf_counter() + SPLIT_SHARE * left()
            res = input_split(network, region, check=check, deadline=share, device=device)
            rstats["split"] = {"status": res.status, "boxes": res.boxes}
            if res.status == "witness":
                return done("sat", "split", check.found)
            if res.status == "proved":
                proven.append(max(res.bound, float(m_lo.min())))
                continue
        model, margins = build_margin_model(network, b, region, relaxation, m_lo, m_hi)
        x_vars = model.net.inputs

        def on_incumbent(get, check=check, region=region, x_vars=x_vars):
            if not relaxation.integral:
                return False  # LP points are never witnesses
            x = get(x_vars)
            if check(x):
                return True
            x2, m2 = polish(network, region, np.clip(x, region.lo, region.hi))
            return bool(m2 <= 0 and check(x2))

        engine = PersistentSolver(model, solver, threads=threads)
        rstats["solves"] = []
        for k in open_k:
            engine.set_objective(margins[k], sense="min")
            mip_start = _start_point(network, region, k, model, margins[k]) \
                if relaxation.integral else None
            out = engine.solve(time_limit=None if left() is None else max(left(), 0.01),
                               stop_bound=SOLVER_PROOF_MARGIN,
                               on_incumbent=on_incumbent, start=mip_start)
            rstats["solves"].append({"clause": k, "status": out.status, "bound": out.bound,
                                     "value": out.value, "seconds": round(out.seconds, 4)})
            if check.found is not None:
                return done("sat", "milp", check.found)
            if out.bound > SOLVER_PROOF_MARGIN:
                proven.append(max(out.bound, m_lo[k]))
                continue
            incomplete = True
            if out.status == "time_limit" or (left() is not None and left() <= 0):
                timed_out = True
                break
            if relaxation.integral and out.has_solution:
                # optimum <= 0 but the incumbent did not confirm: try harder from it
                x2, m2 = polish(network, region, np.clip(out.values(x_vars), region.lo, region.hi),
                                steps=100)
                if m2 <= 0 and check(x2):
                    return done("sat", "milp", check.found)
                log.warning("solver reports margin %.3g <= 0 on clause %d but no witness "
                            "confirmed in float64", out.value, k)
        if timed_out:
            break
    if not incomplete:
        used = {k for r in stats["regions"] for k in ("solves", "split") if k in r}
        return done("unsat", "milp" if "solves" in used and relaxation.integral else
                    "lp" if "solves" in used else "split" if "split" in used else "bounds")
    return done("timed-out" if timed_out else "unknown", "")
