"""Where the time of one region goes: branch and bound and clause MILPs, by measured progress.

A region whose clauses CROWN could not prove is settled by branch and bound -- on the input
box for low-dimensional inputs (:mod:`.branch`), on ReLU phases with beta-CROWN bounds for
the others (:mod:`.relu_branch`, one search per open clause) -- or by one MILP per open clause
(:func:`mipcert.encode.build_margin_model` in a persistent solver). Neither is known in
advance to be the faster: splitting proves ACAS Xu properties in seconds that the MILP cannot
in a minute, and ReLU splitting proved a clause of the trained mnist 256x2 stand-in in 0.24 s
that the MILP needed 38 s for, while on a network of ten ReLUs the MILP proves in 0.02 s what
splitting fails to in 15 s. So the two take turns in time slices:

* **branching** measures its progress as the fraction ``f`` proved (of the region's volume for
  input splitting; of the open clauses' sub-domain trees, a leaf of depth ``d`` counting
  ``2^-d``, for ReLU splitting) after ``T_s`` seconds; its projected time to finish is
  ``T_s (1 - f) / f``. While that is within :data:`SPLIT_PATIENCE` times the time it has had,
  it keeps the next turn;
* **the MILP** gets a turn otherwise, as long as it has had less than :data:`MILP_SHARE` of
  the branching time, and right after branching's first slice when the network has at
  most :data:`SMALL_NETWORK_RELUS` unstable ReLUs (then the MILP is cheap to try; branching
  still goes first because it needs no Pyomo or solver import, about a second). A MILP turn
  gives every open clause one solve of ``slice`` seconds, round-robin, so one slow clause
  cannot starve the others; a clause is closed as soon as its proven bound passes 0.
  Slices double from turn to turn (a solve cannot be resumed, so doubling bounds the work
  repeated to the work done; a branch-and-bound search is resumed where it stopped);
* a clause proved by either is closed for both; when branching has given up (its budget of
  sub-domains, or a leaf it cannot split further) or is switched off (``--no-split``, the LP
  relaxation) the MILP turns run alone.

Every turn stops at once on a confirmed witness. The seconds of each phase are added to the
caller's ``phases`` dictionary (``split``, ``relu_split``, ``milp_build``, ``milp``).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from .branch import MAX_SPLIT_DIM, SplitState, input_split
from .relu_branch import relu_split
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
# Seconds per clause of the exact MILP of one input-split box (:class:`_LeafMilp`); on the
# stalled perturbed ACAS Xu boxes (10-40 unstable ReLUs) they took 0.05-0.8 s, and without
# presolve (HIGHS_OPTIONS) 0.09 s against 0.11 s on average (5_5, 5 %, seed 3: 331 boxes
# against 266 in 30 s of leaf time).
LEAF_TIME_LIMIT = 1.0


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
        return _confirm(r.network, r.region, r.check, get(self.model.net.inputs))

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


class _LeafMilp:
    """The exact solve of one input-split box (see :func:`.branch.input_split`): the margin
    MILP of the sub-box, its Big-M constants from the box's own (alpha-CROWN) bounds, one
    solve per clause of at most :data:`LEAF_TIME_LIMIT` seconds. Proved when every clause's
    proven bound clears :data:`SOLVER_PROOF_MARGIN`; a MIP incumbent with margin <= 0 is
    confirmed by the region's ``check`` (float64) as a witness.

    Calling it builds the model (Pyomo, in the calling thread) and returns the solve, a
    function of no arguments that touches only the solver and numpy, so that input
    splitting can run it on its worker thread while it goes on bounding boxes."""

    def __init__(self, network, region, check, relaxation, solver, threads=None, options=None):
        self.network, self.region, self.check = network, region, check
        self.relaxation, self.solver, self.threads = relaxation, solver, threads
        self.options = options

    def __call__(self, lo, hi, pre, stop):
        """``stop``: a ``threading.Event``; once set, the solve ends at its next incumbent
        (without checking it) or clause."""
        from ..bounds.result import Bounds
        from ..encode import build_margin_model
        from ..solve import PersistentSolver
        from ..spec import Region

        stack = self.network.affine_relu_stack()
        box = Region(lo, hi, self.region.clauses)
        bounds = Bounds(lo, hi, list(pre), "alpha", relu_layers=[b.relu for b in stack])
        model, margins = build_margin_model(self.network, bounds, box, self.relaxation)
        engine = PersistentSolver(model, self.solver, threads=self.threads, options=self.options)
        objectives = [engine.compile_objective(e, "min") for e in margins]
        inputs = list(model.net.inputs)
        network, check = self.network, self.check

        def on_incumbent(get):
            return stop.is_set() or _confirm(network, box, check, get(inputs))

        def solve():
            worst = np.inf
            for objective in objectives:
                if stop.is_set():
                    return "open", -np.inf
                engine.use_objective(objective)
                out = engine.solve(time_limit=LEAF_TIME_LIMIT, stop_bound=SOLVER_PROOF_MARGIN,
                                   on_incumbent=on_incumbent)
                if check.found is not None:
                    return "witness", -np.inf
                if not out.bound > SOLVER_PROOF_MARGIN:
                    return "open", -np.inf
                worst = min(worst, out.bound)
            return "proved", worst

        return solve


def _confirm(network, region, check, x) -> bool:
    """A MIP incumbent's input ``x``, clipped to the region's box, as a witness: confirmed by
    ``check`` as it is, or after a short polish (PGD) inside the box."""
    x = np.clip(x, region.lo, region.hi)
    if check(x):
        return True
    x2, m2 = polish(network, region, x)
    return bool(m2 <= 0 and check(x2))


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


class _ReluSplit:
    """ReLU branch and bound (:mod:`.relu_branch`) of the clauses the MILP still has open;
    one resumable search per clause, built on first use."""

    def __init__(self, run, milp):
        self.run, self.milp = run, milp
        self.start = list(milp.open)   # the clauses its progress is measured on
        self.states: dict = {}
        self.problems: dict = {}
        self.given_up: set[int] = set()
        self.proved: set[int] = set()
        self.seconds = 0.0

    @property
    def proved_fraction(self) -> float:
        """Mean over the clauses it started with: 1 for a closed clause (by either method),
        else the share of its sub-domain tree proved."""
        if not self.start:
            return 1.0
        f = [1.0 if k not in self.milp.open else
             (self.states[k].proved_fraction if k in self.states else 0.0) for k in self.start]
        return float(np.mean(f))

    def _problem(self, k):
        if k not in self.problems:
            from ..bounds.beta import SplitProblem

            r = self.run
            clause = r.region.clauses[k]
            self.problems[k] = SplitProblem(r.network.affine_relu_stack(), r.region.lo,
                                            r.region.hi, r.bounds.pre, clause.C, clause.d,
                                            device=_torch_device(r.device))
        return self.problems[k]

    def turn(self, seconds) -> str | None:
        """``seconds`` shared by the clauses it can still work on, most likely violated
        first; 'witness', 'timeout', 'budget' (nothing left for it) or None."""
        r, milp = self.run, self.milp
        t0 = time.perf_counter()
        try:
            todo = [k for k in milp.open if k not in self.given_up]
            if not todo:
                return "budget"
            for k in todo:
                left = r.left()
                if left is not None and left <= 0:
                    return "timeout"
                share = seconds / len(todo) if left is None else min(seconds / len(todo), left)
                res = relu_split(self._problem(k), check=r.check,
                                 deadline=time.perf_counter() + share, state=self.states.get(k))
                self.states[k] = res.state
                if res.status == "witness":
                    return "witness"
                if res.status == "proved":
                    milp.proved[k] = max(res.bound, float(r.m_lo[k]))
                    milp.open.remove(k)
                    self.proved.add(k)
                elif res.status == "budget":
                    self.given_up.add(k)
            return None
        finally:
            self.seconds += time.perf_counter() - t0
            r.add_phase("relu_split", time.perf_counter() - t0)

    def stats(self) -> dict:
        return {"clauses": {int(k): {"domains": st.domains, "open": st.open,
                                     "proved_fraction": round(st.proved_fraction, 6),
                                     "root_bound": round(st.root_bound, 6),
                                     "seconds": round(st.seconds, 4)}
                            for k, st in self.states.items()},
                "proved": sorted(int(k) for k in self.proved),
                "given_up": sorted(int(k) for k in self.given_up),
                "seconds": round(self.seconds, 4)}


def _torch_device(device):
    """ReLU splitting runs in torch: the CPU unless a device was asked for."""
    return None if device in (None, "numpy", "torch", "cpu") else device


def _relu_splittable(network) -> bool:
    """ReLU splitting needs the network as affine + ReLU blocks with an affine output."""
    stack = getattr(network, "affine_relu_stack", None)
    if stack is None:
        return False
    blocks = stack()
    return bool(blocks) and not blocks[-1].relu and any(b.relu for b in blocks)


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
        exact = self.relaxation.integral and self.split
        can_split = exact and self.network.input_size <= MAX_SPLIT_DIM
        milp = _Milp(self, self.open_k)
        relu = _ReluSplit(self, milp) if (exact and not can_split
                                          and _relu_splittable(self.network)) else None
        branching = can_split or relu is not None
        leaf = _LeafMilp(self.network, self.region, self.check, self.relaxation, self.solver,
                         self.threads, HIGHS_OPTIONS if self.solver == "highs" else None) \
            if can_split else None
        self.rstats["solves"] = self.solves
        state = None
        split_status = None
        split_slice = FIRST_SLICE
        small = self.bounds.num_unstable <= SMALL_NETWORK_RELUS
        milp_turn = not branching

        def ended(status, by):
            """The region's outcome when a turn of the MILP or of ReLU splitting (they share
            the open clauses) ends it, else None."""
            if status == "witness":
                return RegionOutcome("witness", [], by)
            if not milp.open:
                if milp.stuck:
                    return RegionOutcome("open", list(milp.proved.values()), "")
                by = "relu_split" if relu is not None and relu.proved == set(milp.proved) \
                    else ("milp" if self.relaxation.integral else "lp")
                return RegionOutcome("proved", list(milp.proved.values()), by)
            if status == "timeout":
                return RegionOutcome("timeout", [], "")
            return None

        try:
            while True:
                left = self.left()
                if left is not None and left <= 0:
                    return RegionOutcome("timeout", [], "")
                if milp_turn:
                    if out := ended(milp.turn(), "milp"):
                        return out
                elif relu is not None:
                    status = relu.turn(split_slice)
                    self.rstats["relu_split"] = relu.stats()
                    if out := ended(status, "relu_split"):
                        return out
                    state, split_status = relu, status
                    split_slice *= 2
                else:
                    t = time.perf_counter()
                    slice_end = t + split_slice if left is None else t + min(split_slice, left)
                    res = input_split(self.network, self.region, check=self.check,
                                      deadline=slice_end, device=self.device, state=state,
                                      leaf=leaf)
                    self.add_phase("split", time.perf_counter() - t)
                    state, split_status = res.state, res.status
                    self.rstats["split"] = {"status": res.status, "boxes": res.boxes,
                                            "proved_fraction": round(state.proved_fraction, 6),
                                            "seconds": round(state.seconds, 4),
                                            "alpha_boxes": state.alpha_boxes,
                                            "alpha_proved": state.alpha_proved,
                                            "alpha_seconds": round(state.alpha_seconds, 4),
                                            "milp_boxes": state.leaf_boxes,
                                            "milp_proved": state.leaf_proved,
                                            "milp_seconds": round(state.leaf_seconds, 4)}
                    if res.status == "witness":
                        return RegionOutcome("witness", [], "split")
                    if res.status == "proved":
                        return RegionOutcome("proved", [max(res.bound, float(self.m_lo.min()))],
                                             "split")
                    split_slice *= 2
                milp_turn = self._next_is_milp(branching, split_status, state, milp, small)
        finally:
            if isinstance(state, SplitState):
                state.close()   # the leaf worker's solves are of no use any more

    def _next_is_milp(self, can_split, split_status, state, milp, small) -> bool:
        """The turn rule of the module docstring."""
        if not can_split or split_status == "budget":
            return True   # the MILP is all that is left (it has open clauses: see schedule)
        if state is None:
            return False  # branching has not had its first slice yet
        if small and milp.engine is None:
            return True   # a small network's MILP is cheap: try it after the first slice
        f, ts = state.proved_fraction, state.seconds
        eta = math.inf if f <= 0 else ts * (1 - f) / f
        if eta <= SPLIT_PATIENCE * max(ts, FIRST_SLICE):
            return False
        return milp.seconds < MILP_SHARE * ts
