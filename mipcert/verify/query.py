"""VNN-LIB 2.0 queries on general ONNX graphs: the general graph path of ``mipcert verify``.

The fast chain path (:mod:`mipcert.verify.verifier`) decides queries over one chain network
with an input box. Everything else the standard allows and mipcert can encode exactly goes
here: several networks, several input and output tensors, hidden-node variables, linear
constraints over several inputs, and graphs with MaxPool, comparisons, ``Where``, ``Split``,
... (:mod:`mipcert.encode.graph`). For every conjunct of the query's disjunctive normal form
(:mod:`mipcert.io.vnnlib2_query`):

1. its one-variable rows on inputs give the input box (every input needs finite bounds);
2. falsification: the box's centre, its corners (up to 2^8) and uniform samples that meet
   the input rows are run through the float64 interpreter;
3. one model holds every network's encoding on that box and the conjunct's rows, each
   scaled to largest coefficient 1 and given a common slack ``t``
   (``r(v) + t <= 0``, both directions for ``==``), and the solver maximises ``t``.
   The model's feasible set contains every true point (strict comparisons in the graph and
   in the query are read as their closures), so a proven bound ``t < 0`` proves that no
   point satisfies the conjunct. Products of two continuous variables (``Mul``, ``Div`` by a
   variable) are kept exact (bilinear, solved by SCIP) when SCIP is installed, else relaxed
   by McCormick envelopes (still a superset).

Sound-answer rules. ``unsat`` needs every conjunct refuted by the solver's proven bound.
``sat`` needs a witness: the values of the input variables only, re-run through the float64
interpreter, where every row of one conjunct must hold exactly (strict rows strictly), AND
through onnxruntime, where they must hold up to :data:`REFERENCE_TOLERANCE` relative to the
values' magnitude. A solver point that fails either check is never reported (the answer
is then ``unknown``, or ``timed-out`` when the time ran out).
"""
from __future__ import annotations

import importlib.util
import itertools
import logging
import time
from pathlib import Path

import numpy as np

from ..errors import InputError, SpecificationError
from ..io.onnx_graph import load_graph, ort_outputs
from ..relaxation import Relaxation
from .result import VerificationResult
from .schedule import SOLVER_PROOF_MARGIN
from .verifier import REFERENCE_TOLERANCE, _check_solver

log = logging.getLogger(__name__)

#: uniform samples per conjunct, and the input dimension up to which every corner is tried
SAMPLES = 256
MAX_CORNER_DIM = 8


class _Net:
    """A declared network bound to its graph: which declared variable is which tensor."""

    def __init__(self, decl, graph, path):
        self.decl, self.graph, self.path = decl, graph, path
        names = [n for n, _ in graph.inputs]
        outs = [n for n, _ in graph.outputs]
        self.inputs = self._bind(decl.inputs, names, "input")
        self.outputs = self._bind(decl.outputs, outs, "output")
        env = graph.run({n: np.zeros(s) for n, s in graph.inputs})
        self.hidden = []
        for v in decl.hidden:
            if v.onnx_name not in env:
                raise SpecificationError(f"hidden variable {v.name} names ONNX tensor "
                                         f"{v.onnx_name!r}, which network {decl.name} lacks")
            self._check_size(v, env[v.onnx_name].size)
            self.hidden.append((v, v.onnx_name))
        for v, t in self.outputs:
            self._check_size(v, env[t].size)
        for v, t in self.inputs:
            self._check_size(v, int(np.prod(dict(graph.inputs)[t])))

    def _bind(self, decls, tensors, kind):
        if all(v.onnx_name for v in decls):
            missing = [v.onnx_name for v in decls if v.onnx_name not in tensors]
            if missing:
                raise SpecificationError(f"network {self.decl.name} has no {kind} "
                                         f"{missing[0]!r} (it has {tensors})")
            return [(v, v.onnx_name) for v in decls]
        if len(decls) != len(tensors):
            raise SpecificationError(
                f"network {self.decl.name} is declared with {len(decls)} {kind}s but the ONNX "
                f"graph {self.path} has {len(tensors)}")
        return list(zip(decls, tensors))

    def _check_size(self, v, size):
        if v.size != size:
            raise SpecificationError(f"{v.name} is declared with {v.size} entries but the "
                                     f"ONNX tensor has {size}")

    def feeds(self, x: dict) -> dict:
        return {t: x[v.name] for v, t in self.inputs}

    def values(self, x: dict) -> dict:
        env = self.graph.run(self.feeds(x))
        return {v.name: np.asarray(env[t], np.float64).reshape(-1)
                for v, t in self.outputs + self.hidden}

    def ort_values(self, x: dict) -> dict:
        got = ort_outputs(self.path, self.graph, self.feeds(x), [t for _, t in self.hidden])
        return {v.name: got[t].reshape(-1) for v, t in self.outputs + self.hidden}


def bind_networks(query, paths: dict) -> list[_Net]:
    """Load (and check against onnxruntime) the graph of every network the query declares;
    a network ``equal-to`` another may omit its own path (an ``isomorphic-to`` one may not:
    it has its own weights)."""
    graphs, nets = {}, []
    for decl in query.networks:
        path = paths.get(decl.name) or (paths.get(decl.equal_to) if decl.equal_to else None)
        if path is None:
            raise InputError(f"the query declares network {decl.name!r} but no "
                             f"--network {decl.name}=NET.onnx was given")
        path = str(Path(path))
        if path not in graphs:
            graphs[path] = load_graph(path)
        nets.append(_Net(decl, graphs[path], path))
    return nets


def holds(rows, values: dict, tol: float = 0.0) -> bool:
    """Every row at ``values`` (strict rows strictly when ``tol == 0``)."""
    for r in rows:
        v = r.value(values)
        if r.sense == "==" and abs(v) > tol:
            return False
        if r.sense == "<=" and v > tol:
            return False
        if r.sense == "<" and (v >= 0 if tol == 0 else v > tol):
            return False
    return True


class _Checker:
    """Confirms candidate witnesses of one conjunct (see the module docstring)."""

    def __init__(self, nets, rows):
        self.nets, self.rows = nets, rows
        self.found = None

    def __call__(self, x: dict) -> bool:
        vals = dict(x)
        for net in self.nets:
            vals.update(net.values(x))
        if not holds(self.rows, vals):
            return False
        ref = dict(x)
        for net in self.nets:
            ref.update(net.ort_values(x))
        scale = max([1.0] + [float(np.max(np.abs(v))) for v in ref.values() if np.size(v)])
        if not holds(self.rows, ref, REFERENCE_TOLERANCE * scale):
            log.warning("witness rejected: it holds in float64 but not in onnxruntime")
            return False
        self.found = vals
        return True


def _box(query, rows):
    """``(lo, hi, other_rows)``: bounds of every input from its one-entry rows; None when a
    bound contradicts another."""
    inputs = [v for n in query.networks for v in n.inputs]
    lo = {v.name: np.full(v.size, -np.inf) for v in inputs}
    hi = {v.name: np.full(v.size, np.inf) for v in inputs}
    other = []
    for r in rows:
        nz = {v: np.flatnonzero(c) for v, c in r.coefs.items()}
        nz = {v: i for v, i in nz.items() if i.size}
        if not nz:   # a comparison of constants
            if not holds([r], {}):
                return None
            continue
        if len(nz) == 1 and (v := next(iter(nz))) in lo and nz[v].size == 1:
            i = int(nz[v][0])
            a = float(r.coefs[v][i])
            b = -r.const / a
            if r.sense == "==" or a > 0:
                hi[v][i] = min(hi[v][i], b)
            if r.sense == "==" or a < 0:
                lo[v][i] = max(lo[v][i], b)
            if r.sense != "<":
                continue
        other.append(r)
    for v in lo:
        if np.any(lo[v] > hi[v]):
            return None
    return lo, hi, other


def _require_finite(query, lo, hi) -> None:
    for v in lo:
        bad = np.flatnonzero(~(np.isfinite(lo[v]) & np.isfinite(hi[v])))
        if bad.size:
            raise SpecificationError(f"{query.name}: input {v} entry {int(bad[0])} has no finite "
                                     "lower and upper bound in some case of the query, and no "
                                     "witness was found; mipcert needs bounds on every input "
                                     "to prove a query")


def _candidates(lo, hi, rng):
    """Centre, corners (small inputs) and uniform samples of the box, as dicts. A missing
    bound is replaced by one at distance max(1, |other bound|) (both missing: [-1, 1]): any
    point may be tried, since a witness is checked on the query's own rows."""
    names = list(lo)
    L = np.concatenate([lo[v] for v in names])
    H = np.concatenate([hi[v] for v in names])
    with np.errstate(invalid="ignore"):
        L, H = (np.where(np.isfinite(L), L,
                         np.where(np.isfinite(H), H - np.maximum(1, np.abs(H)), -1.0)),
                np.where(np.isfinite(H), H,
                         np.where(np.isfinite(L), L + np.maximum(1, np.abs(L)), 1.0)))
    pts = [(L + H) / 2]
    if L.size <= MAX_CORNER_DIM:
        pts += [np.where(np.array(c, bool), H, L) for c in itertools.product((0, 1), repeat=L.size)]
    pts += list(rng.uniform(L, H, size=(SAMPLES, L.size)))
    cuts = np.cumsum([lo[v].size for v in names])[:-1]
    for p in pts:
        yield dict(zip(names, np.split(p, cuts)))


def verify_query(query, paths: dict, *, solver: str = "highs", timeout: float | None = None,
                 attack: bool = True, seed: int = 0, threads: int | None = None,
                 relaxation="milp") -> VerificationResult:
    """Decide ``query`` (a :class:`~mipcert.io.vnnlib2_query.Query`) with the ONNX files
    ``paths`` (network name → path); see the module docstring."""
    from .query_model import solve_conjunct

    _check_solver(solver)
    relaxation = Relaxation.parse(relaxation)
    start = time.perf_counter()
    deadline = None if timeout is None else start + timeout
    nets = bind_networks(query, paths)
    rng = np.random.default_rng(seed)
    stats = {"path": "graph", "conjuncts": len(query.conjuncts), "phases": {}}
    phases = stats["phases"]
    inputs = [v for n in query.networks for v in n.inputs]
    outputs = [v for n in query.networks for v in n.outputs]

    def done(verdict, by, found=None):
        res = VerificationResult(verdict, time.perf_counter() - start, None, None, None, by, stats)
        if found is not None:
            res.counterexample = (np.concatenate([found[v.name] for v in inputs]),
                                  np.concatenate([found[v.name] for v in outputs]))
        return res

    cases = []
    for rows in query.conjuncts:
        box = _box(query, rows)
        if box is not None:
            cases.append((rows, box))
    t = time.perf_counter()
    if attack:
        for rows, (lo, hi, _) in cases:
            check = _Checker(nets, rows)
            for x in _candidates(lo, hi, rng):
                if check(x):
                    phases["attack"] = round(time.perf_counter() - t, 4)
                    return done("sat", "attack", check.found)
                if deadline is not None and time.perf_counter() > deadline:
                    return done("timed-out", "")
        phases["attack"] = round(time.perf_counter() - t, 4)
    open_cases = 0
    for k, (rows, (lo, hi, other)) in enumerate(cases):
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            return done("timed-out", "")
        _require_finite(query, lo, hi)
        check = _Checker(nets, rows)
        t = time.perf_counter()
        out = solve_conjunct(nets, lo, hi, other, check, solver=solver, relaxation=relaxation,
                             time_limit=left, threads=threads, label=f"case{k}")
        phases["milp"] = round(phases.get("milp", 0.0) + time.perf_counter() - t, 4)
        stats.setdefault("solves", []).append(out["stats"])
        if check.found is not None:
            return done("sat", "milp", check.found)
        if out["bound"] >= -SOLVER_PROOF_MARGIN:
            open_cases += 1
            if out["status"] == "time_limit":
                return done("timed-out", "")
    if open_cases:
        return done("unknown", "")
    return done("unsat", "milp" if cases else "bounds")


def has_scip() -> bool:
    return importlib.util.find_spec("pyscipopt") is not None
