"""Where the time of one region goes: input splitting and clause MILPs, by measured progress.

A region whose clauses CROWN could not prove is settled by input splitting (low-dimensional
inputs, :mod:`.branch`) or by one MILP per open clause (:func:`mipcert.encode.build_margin_model`
in a persistent solver). Neither is known in advance to be the faster: splitting proves ACAS Xu
properties in seconds that the MILP cannot in a minute, while on a network of ten ReLUs the
MILP proves in 0.02 s what splitting fails to in 15 s. So the two take turns in time slices:

* **splitting** measures its progress as the fraction ``f`` of the region's volume proved
  after ``T_s`` seconds; its projected time to finish is ``T_s (1 - f) / f``. While that is
  within :data:`SPLIT_PATIENCE` times the time it has had, it keeps the next turn;
* **the MILP** gets a turn otherwise, as long as it has had less than :data:`MILP_SHARE` of
  the splitting time, and right after splitting's first slice when the network has at
  most :data:`SMALL_NETWORK_RELUS` unstable ReLUs (then the MILP is cheap to try; splitting
  still goes first because it needs no Pyomo or solver import, about a second). A MILP turn
  gives every open clause one solve of ``slice`` seconds, round-robin, so one slow clause
  cannot starve the others; a clause is closed as soon as its proven bound passes 0.
  Slices double from turn to turn (a solve cannot be resumed, so doubling bounds the work
  repeated to the work done);
* without splitting (high-dimensional inputs, the LP relaxation) the MILP turns run alone.

Every turn stops at once on a confirmed witness. The seconds of each phase are added to the
caller's ``phases`` dictionary (``split``, ``milp_build``, ``milp``).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from .branch import MAX_SPLIT_DIM, input_split
from .falsify import pgd, polish

log = logging.getLogger(__name__)

# A solver's dual bound comes from LPs solved to a feasibility tolerance (~1e-7), so a
# clause counts as proved by a solver only when its bound clears this margin; bounds from
# CROWN / input splitting are rigorous (outward-rounded) and only need to be > 0.
SOLVER_PROOF_MARGIN = 1e-6
# First time slice (seconds) of each method; slices double from turn to turn.
FIRST_SLICE = 0.25
# Splitting keeps the turn while its projected time to finish is at most this many times
# the time it has had.
SPLIT_PATIENCE = 1.5
# When splitting is not projected to finish soon, the MILP gets turns until it has had this
# share of the splitting time.
MILP_SHARE = 0.5
# Networks with at most this many unstable ReLUs try the MILP first.
SMALL_NETWORK_RELUS = 64
# HiGHS's MIP presolve ignores the time limit and, on the dense Big-M models of 256-wide
# layers, runs 17-23 s before the first node (784-256x4 and 784-256x2 stand-ins, 0.25 s
# limit); without it the root LP starts at once (2 s) and the time slices mean something.
HIGHS_OPTIONS = {"presolve": "off"}


@dataclass
class RegionOutcome:
    status: str          # 'proved' | 'witness' | 'open' | 'timeout'
    bounds: list         # proven margin lower bounds (one per clause or one for the region)
    decided_by: str      # 'split' | 'milp' | 'lp' | ''


class _Milp:
    """The region's margin model in a persistent solver, built on first use."""

    def __init__(self, run, open_k):
        self.run = run
        self.open = list(open_k)        # clauses still to prove, most likely violated first
        self.stuck: set[int] = set()    # optimum <= 0 but no witness confirmed: give up on them
        self.proved: dict[int, float] = {}
        self.slice = FIRST_SLICE
        self.engine = None
        self.seconds = 0.0

    def _build(self):
        t = time.perf_counter()   # the first build imports pyomo and the solve stack: counted
        from ..encode import build_margin_model
        from ..solve import PersistentSolver

        r = self.run
        self.model, self.margins = build_margin_model(r.network, r.bounds, r.region, r.relaxation,
                                                      r.m_lo, r.m_hi)
        options = HIGHS_OPTIONS if r.solver == "highs" else None
        self.engine = PersistentSolver(self.model, r.solver, threads=r.threads, options=options)
        r.add_phase("milp_build", time.perf_counter() - t)

    def on_incumbent(self, get):
        r = self.run
        if not r.relaxation.integral:
            return False  # LP points are never witnesses
        x = get(self.model.net.inputs)
        if r.check(x):
            return True
        x2, m2 = polish(r.network, r.region, np.clip(x, r.region.lo, r.region.hi))
        return bool(m2 <= 0 and r.check(x2))

    def turn(self) -> str | None:
        """One solve of ``slice`` seconds per open clause; 'witness', 'timeout' or None."""
        if self.engine is None:
            self._build()
        r = self.run
        t0 = time.perf_counter()
        try:
            for k in list(self.open):
                left = r.left()
                if left is not None and left <= 0:
                    return "timeout"
                limit = self.slice if left is None else max(min(self.slice, left), 0.01)
                self.engine.set_objective(self.margins[k], sense="min")
                start = _start_point(r.network, r.region, k, self.model, self.margins[k]) \
                    if r.relaxation.integral else None
                out = self.engine.solve(time_limit=limit, stop_bound=SOLVER_PROOF_MARGIN,
                                        on_incumbent=self.on_incumbent, start=start)
                r.solves.append({"clause": k, "status": out.status, "bound": out.bound,
                                 "value": out.value, "seconds": round(out.seconds, 4),
                                 "slice": round(limit, 3)})
                if r.check.found is not None:
                    return "witness"
                if out.bound > SOLVER_PROOF_MARGIN:
                    self.proved[k] = max(out.bound, float(r.m_lo[k]))
                    self.open.remove(k)
                elif out.status != "time_limit" and out.status != "interrupted":
                    self._settle_without_proof(k, out)
            self.slice *= 2
            return None
        finally:
            self.seconds += time.perf_counter() - t0
            r.add_phase("milp", time.perf_counter() - t0)

    def _settle_without_proof(self, k, out):
        """The solve ended (optimal) with a bound <= 0 and no witness: polish its point once
        more; if that fails too, the clause stays unproven (``unknown``)."""
        r = self.run
        if r.relaxation.integral and out.has_solution:
            x2, m2 = polish(r.network, r.region, np.clip(out.values(self.model.net.inputs),
                                                         r.region.lo, r.region.hi), steps=100)
            if m2 <= 0 and r.check(x2):
                return
            log.warning("solver reports margin %.3g <= 0 on clause %d but no witness "
                        "confirmed in float64", out.value, k)
        self.open.remove(k)
        self.stuck.add(k)


def _start_point(network, region, k, model, margin_var):
    """A MIP start: the input where a short PGD on clause ``k`` ends, with all its values."""
    from pyomo.core.expr.numeric_expr import LinearExpression

    from ..encode import point_values

    clause = region.clauses[k]
    centre = (region.lo + region.hi) / 2
    xs, ms = pgd(network, region, clause, np.vstack([centre, region.lo, region.hi]), steps=30)
    x = xs[int(np.argmin(ms))]
    pairs = point_values(model.net, network, x)
    if not isinstance(margin_var, LinearExpression):  # the epigraph variable of the clause
        pairs.append((margin_var, float(clause.margin(network.forward(x))[0])))
    return pairs


@dataclass
class RegionRun:
    """Everything one region's schedule needs; ``left()`` gives the seconds left (or None)."""
    network: object
    region: object
    bounds: object
    m_lo: np.ndarray
    m_hi: np.ndarray
    open_k: list
    check: object
    relaxation: object
    solver: str
    threads: int | None
    split: bool
    device: object
    left: object
    add_phase: object
    rstats: dict

    def __post_init__(self):
        self.solves: list = []

    def schedule(self) -> RegionOutcome:
        can_split = (self.relaxation.integral and self.split
                     and self.network.input_size <= MAX_SPLIT_DIM)
        milp = _Milp(self, self.open_k)
        self.rstats["solves"] = self.solves
        state = None
        split_status = None
        split_slice = FIRST_SLICE
        small = self.bounds.num_unstable <= SMALL_NETWORK_RELUS
        milp_turn = not can_split
        while True:
            left = self.left()
            if left is not None and left <= 0:
                return RegionOutcome("timeout", [], "")
            if milp_turn:
                status = milp.turn()
                if status == "witness":
                    return RegionOutcome("witness", [], "milp")
                if not milp.open:
                    if milp.stuck:
                        return RegionOutcome("open", list(milp.proved.values()), "")
                    return RegionOutcome("proved", list(milp.proved.values()),
                                         "milp" if self.relaxation.integral else "lp")
                if status == "timeout":
                    return RegionOutcome("timeout", [], "")
            else:
                t = time.perf_counter()
                slice_end = t + split_slice if left is None else t + min(split_slice, left)
                res = input_split(self.network, self.region, check=self.check,
                                  deadline=slice_end, device=self.device, state=state)
                self.add_phase("split", time.perf_counter() - t)
                state, split_status = res.state, res.status
                self.rstats["split"] = {"status": res.status, "boxes": res.boxes,
                                        "proved_fraction": round(state.proved_fraction, 6),
                                        "seconds": round(state.seconds, 4)}
                if res.status == "witness":
                    return RegionOutcome("witness", [], "split")
                if res.status == "proved":
                    return RegionOutcome("proved", [max(res.bound, float(self.m_lo.min()))],
                                         "split")
                split_slice *= 2
            milp_turn = self._next_is_milp(can_split, split_status, state, milp, small)

    def _next_is_milp(self, can_split, split_status, state, milp, small) -> bool:
        """The turn rule of the module docstring."""
        if not can_split or split_status == "budget":
            return True   # the MILP is all that is left (it has open clauses: see schedule)
        if state is None:
            return False  # splitting has not had its first slice yet
        if small and milp.engine is None:
            return True   # a small network's MILP is cheap: try it after the first slice
        f, ts = state.proved_fraction, state.seconds
        eta = math.inf if f <= 0 else ts * (1 - f) / f
        if eta <= SPLIT_PATIENCE * max(ts, FIRST_SLICE):
            return False
        return milp.seconds < MILP_SHARE * ts
