"""From a network and a specification to a verdict (FORMULATIONS 1.5 and 2).

For every region of the specification:

1. bound (IBP / CROWN / alpha-CROWN / LP) and read each clause's margin lower bound: ``> 0``
   proves it;
2. falsify the regions left open (random points, PGD) — a confirmed witness decides
   ``sat`` at once (with LP bounds, which cost more, the attack comes first);
2b. refine the CROWN bounds of regions still open that input splitting will not search
   (many inputs) by alpha-CROWN (:mod:`mipcert.verify.refine`): this proves more clauses
   outright and gives the search fewer unstable ReLUs and smaller Big-M constants;
3. settle the open clauses by branch and bound -- on the input box with batched CROWN
   bounds for inputs of few dimensions (:mod:`mipcert.verify.branch`), on the phases of
   unstable ReLUs with beta-CROWN bounds for the others (:mod:`mipcert.verify.relu_branch`);
   exact mode only -- and by minimising each open clause's margin over the encoding (Big-M
   MILP, or the triangle LP) in a persistent solver, stopping as soon as the dual bound
   passes 0 (proved) or an incumbent is confirmed as a witness (``sat``). The two take turns
   in time slices chosen by their measured progress (:mod:`mipcert.verify.schedule`).
   A region of many inputs whose first blocks have few unstable ReLUs gets a first search
   of limited time; if that does not settle it, the bounds of its first blocks are
   tightened by MILP and the search starts again with them (:mod:`mipcert.verify.refine`).

``result.stats['phases']`` gives the seconds spent in each phase (attack, bounds, alpha,
milp_refine, split, relu_split, milp_build, milp).

``unsat`` needs a proven bound > 0 for every clause of every region; ``sat`` needs a witness
re-run in float64 (and through onnxruntime when a reference is given). Anything else is
``unknown`` or, when the time ran out, ``timed-out``. An LP relaxation can prove ``unsat`` but
its points are never reported as witnesses.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import time

import numpy as np

from ..bounds import clause_margin_bounds, compute_bounds
from ..errors import InputError, SolverUnavailableError
from ..relaxation import Relaxation
from ..spec import Specification
from .branch import MAX_SPLIT_DIM
from .falsify import falsify
from .refine import first_search, refinable, refine_alpha, refine_milp
from .result import VerificationResult
from .schedule import SOLVER_PROOF_MARGIN, RegionOutcome, RegionRun  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

# A witness from onnxruntime (float32) may miss the float64 margin by this much.
REFERENCE_TOLERANCE = 1e-4
# The attack before input splitting: 20 000 sampled forward passes, 4 PGD runs of 30 steps.
QUICK_ATTACK = {"budget": 20_000, "restarts": 4, "steps": 30}
# The attack may use at most this share of the time left.
ATTACK_SHARE = 0.4


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


def verify(network, spec: Specification, *, solver: str = "highs", relaxation="milp",
           bounds: str = "crown", timeout: float | None = None, reference=None,
           attack: bool = True, split: bool = True, seed: int = 0,
           threads: int | None = None, device=None) -> VerificationResult:
    """Decide ``spec`` on ``network``; see the module docstring for the procedure.

    ``reference(x (B, n)) -> y (B, m)``: an independent forward pass (onnxruntime) that a
    witness must also fail. ``timeout`` in seconds covers the whole run. ``attack`` and
    ``split`` switch falsification and input splitting off (to exercise the MILP alone).

    numpy's BLAS runs on one thread meanwhile: the products here are small and many, and
    OpenBLAS threads spinning on a busy machine made the attack 10x slower (31 s instead
    of 3 s on mnist 256x2 with other jobs running); the solver keeps its own threads.
    """
    with _one_blas_thread():
        return _verify(network, spec, solver=solver, relaxation=relaxation, bounds=bounds,
                       timeout=timeout, reference=reference, attack=attack, split=split,
                       seed=seed, threads=threads, device=device)


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _verify(network, spec, *, solver, relaxation, bounds, timeout, reference, attack, split,
            seed, threads, device) -> VerificationResult:
    _check_solver(solver)  # a missing or unknown solver is an error before any work
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

    phases: dict = {}
    stats["phases"] = phases

    def add_phase(name, seconds):
        phases[name] = round(phases.get(name, 0.0) + seconds, 4)

    decided: set[str] = set()
    checks = [Witness(network, region, reference) for region in spec.regions]

    def attack_all(regions, quick=False):
        t = time.perf_counter()
        kw = QUICK_ATTACK if quick else {}
        # the attack may use ATTACK_SHARE of the time left: on a busy machine its PGD runs
        # took 55 s of a 60 s budget on mnist 256x4 (9 clauses, 784 inputs)
        end = deadline if deadline is None else t + ATTACK_SHARE * (deadline - t)
        try:
            for region, check in regions:
                if falsify(network, region, rng=rng, check=check, deadline=end,
                           **kw) is not None:
                    return check.found
        finally:
            add_phase("attack", time.perf_counter() - t)
        return None

    # 1. IBP / CROWN bounds are cheaper than the attack: bound every region first, and
    #    attack only the regions they leave open (LP bounds cost more: attack first then)
    cheap_bounds = bounds != "lp"
    if attack and not cheap_bounds and (found := attack_all(zip(spec.regions, checks))):
        return done("sat", "attack", found)
    pending = []
    for region, check in zip(spec.regions, checks):
        rstats: dict = {"clauses": len(region.clauses)}
        stats["regions"].append(rstats)
        if left() is not None and left() <= 0:
            return done("timed-out", "")
        t = time.perf_counter()
        b = compute_bounds(network, region.lo, region.hi, bounds, device=device,
                           time_limit=left())
        rstats.update(bounds=bounds, unstable=b.num_unstable, stable=b.num_stable,
                      bounds_seconds=round(b.seconds, 4))
        m_lo, m_hi = clause_margin_bounds(network, b, region, bounds)
        add_phase("bounds", time.perf_counter() - t)
        # open clauses, the most likely to be violated (lowest bound) first
        open_k = sorted((k for k in range(len(region.clauses)) if m_lo[k] <= 0),
                        key=lambda k: m_lo[k])
        proven.extend(m_lo[k] for k in range(len(region.clauses)) if m_lo[k] > 0)
        rstats["proved_by_bounds"] = len(region.clauses) - len(open_k)
        if open_k:
            pending.append((region, check, b, m_lo, m_hi, open_k, rstats))
    # 2. falsification of the open regions: cheap next to a MILP, and often decisive. A
    #    region that input splitting will search (it tries box centres and PGD in the worst
    #    boxes as it goes) gets a quick attack only: the full one cost 1.9 s on ACAS Xu
    #    properties that splitting then proved in 0.07 s
    if attack and cheap_bounds and pending:
        splittable = relaxation.integral and split and network.input_size <= MAX_SPLIT_DIM
        # only the open clauses: a clause proved by the bounds has no violation to find
        if (found := attack_all(((_open_part(p[0], p[5]), p[1]) for p in pending),
                                quick=splittable)):
            return done("sat", "attack", found)
    # 2b. alpha-CROWN for the open regions that splitting will not search
    if bounds == "crown" and pending:
        t = time.perf_counter()
        pending = [refine_alpha(network, p, left, device, proven) for p in pending]
        pending = [p for p in pending if p[5]]
        add_phase("alpha", time.perf_counter() - t)

    # 3. input splitting and clause MILPs, scheduled by measured progress
    #    (3b. for a region the first search leaves open, MILP bounds of the first blocks,
    #    then the search again: see mipcert.verify.refine)
    def search(item, left_fn):
        region, check, b, m_lo, m_hi, open_k, rstats = item
        return RegionRun(network, region, b, m_lo, m_hi, open_k, check, relaxation, solver,
                         threads, split, device, left_fn, add_phase, rstats).schedule()

    for item in pending:
        if left() is not None and left() <= 0:
            timed_out = incomplete = True
            break
        refine = bounds == "crown" and relaxation.integral and split \
            and refinable(network, item[2])
        out = search(item, first_search(left) if refine else left)
        if refine and out.status in ("timeout", "open") \
                and (left() is None or left() > 0):
            t = time.perf_counter()
            item = refine_milp(network, item, left, device, proven)
            add_phase("milp_refine", time.perf_counter() - t)
            out = search(item, left) if item[5] else RegionOutcome("proved", [], "milp_refine")
        if out.status == "witness":
            return done("sat", out.decided_by, item[1].found)
        if out.status == "proved":
            proven.extend(out.bounds)
            decided.add(out.decided_by)
            continue
        incomplete = True
        if out.status == "timeout":
            timed_out = True
            break
    if not incomplete:
        order = ("milp", "lp", "relu_split", "split", "milp_refine")
        return done("unsat", next((m for m in order if m in decided), "bounds"))
    return done("timed-out" if timed_out else "unknown", "")


def _open_part(region, open_k):
    """``region`` with only its clauses ``open_k`` (same box)."""
    return type(region)(region.lo, region.hi, [region.clauses[k] for k in open_k])


def _check_solver(solver: str) -> None:
    """An unknown solver, one that is not installed or (Gurobi) has no licence is an error.

    The default, HiGHS (a hard dependency), is checked without importing it or the solve
    stack (pyomo, scipy): most short runs never reach the MILP.
    """
    if str(solver).lower() == "highs":
        if importlib.util.find_spec("highspy") is None:
            raise SolverUnavailableError("highspy is not installed: pip install highspy")
        return
    from ..solve.backend import backend_class

    backend_class(solver)
