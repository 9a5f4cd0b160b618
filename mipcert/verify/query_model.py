"""The model of one conjunct of a VNN-LIB 2.0 query (FORMULATIONS 1.5, general graphs).

Every network's graph is encoded on the conjunct's input box (:class:`GraphEncoder`); each
remaining row ``r(v) = c . v + c0 (sense) 0`` is scaled to ``max |c| = 1`` and shares one
slack ``t``::

    maximise t   s.t.   r(v) + t <= 0            (<=, <)
                        r(v) + t <= 0, -r(v) + t <= 0   (==)
                        -T <= t <= 1

with ``T`` from the rows' interval bounds, so the model is always feasible and its proven
upper bound on ``t`` is meaningful: ``< 0`` refutes the conjunct. Maximising the slack
drives incumbents into the interior of strict rows, where a float64 re-run confirms them.
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from ..encode.graph import GraphEncoder, _varray
from ..encode.varray import add_rows, linear, new_vars
from ..relaxation import Relaxation
from .schedule import SOLVER_PROOF_MARGIN


def build(nets, lo, hi, rows, relaxation):
    """``(model, t, inputs, bilinear)``; ``inputs``: variable name → VArray of its entries."""
    m = pyo.ConcreteModel()
    items, inputs, bilinear = {}, {}, 0
    for k, net in enumerate(nets):
        block = pyo.Block()
        m.add_component(f"net{k}_{net.decl.name}", block)
        feeds = {}
        for v, tensor in net.inputs:
            x = new_vars(block, f"in_{v.name}", lo[v.name], hi[v.name])
            feeds[tensor] = inputs[v.name] = items[v.name] = x
        enc = GraphEncoder(block, net.graph, relaxation)
        env = enc.encode(feeds)
        bilinear += enc.bilinear
        for v, tensor in net.outputs + net.hidden:
            items[v.name] = _varray(env[tensor]).reshape(-1)
    exprs, ubs = [], []
    for r in rows:
        terms, ub, scale = [], r.const, 0.0
        for name, c in r.coefs.items():
            x = items[name]
            for i in np.flatnonzero(c):
                terms.append((float(c[i]), x.items[i]))
                scale = max(scale, abs(float(c[i])))
        if scale == 0.0:
            scale = 1.0
        terms = [(a / scale, v) for a, v in terms]
        e = linear(terms, r.const / scale)
        spans = [(min(a * lo_i, a * hi_i), max(a * lo_i, a * hi_i))
                 for a, (lo_i, hi_i) in _bounds(r, items, scale)]
        lo_e = r.const / scale + sum(s[0] for s in spans)
        hi_e = r.const / scale + sum(s[1] for s in spans)
        exprs.append((e, 1.0))
        ubs.append(hi_e)
        if r.sense == "==":
            exprs.append((e, -1.0))
            ubs.append(-lo_e)
    T = max([0.0] + [u for u in ubs if np.isfinite(u)]) + 1.0
    m.t = pyo.Var(bounds=(-T, 1.0))
    add_rows(m, "rows", [linear([(s, e), (1.0, m.t)]) <= 0 for e, s in exprs])
    m.obj = pyo.Objective(expr=m.t, sense=pyo.maximize)
    return m, m.t, inputs, bilinear


def _bounds(r, items, scale):
    for name, c in r.coefs.items():
        x = items[name]
        for i in np.flatnonzero(c):
            yield float(c[i]) / scale, (float(x.lo[i]), float(x.hi[i]))


def solve_conjunct(nets, lo, hi, rows, check, *, solver, relaxation, time_limit, threads,
                   label) -> dict:
    """Build and solve the model; ``check(x)`` is called on every incumbent's inputs and
    stops the solve once it confirms a witness. Returns ``bound`` (proven upper bound on
    ``t``), ``status`` and ``stats``."""
    from ..solve import solve
    from .query import has_scip

    relaxation = Relaxation.parse(relaxation)
    m, t, inputs, bilinear = build(nets, lo, hi, rows, relaxation)
    if bilinear and relaxation.integral and has_scip():
        # products of two variables are kept exact: a bilinear model, which SCIP solves
        relaxation, solver = Relaxation.MIQCP, "scip"
        m, t, inputs, bilinear = build(nets, lo, hi, rows, relaxation)

    def on_incumbent(get):
        x = {name: np.clip(np.asarray(get(list(v.items)), np.float64), lo[name], hi[name])
             for name, v in inputs.items()}
        if check(x):
            return True
        x32 = {name: np.clip(v.astype(np.float32).astype(np.float64), lo[name], hi[name])
               for name, v in x.items()}
        return check(x32)

    out = solve(m, solver, time_limit=time_limit, stop_bound=-SOLVER_PROOF_MARGIN,
                on_incumbent=on_incumbent, threads=threads)
    if check.found is None and out.has_solution:
        on_incumbent(lambda vs: out.values(vs))
    return {"bound": out.bound, "status": out.status,
            "stats": {"case": label, "solver": out.solver, "relaxation": str(relaxation),
                      "status": out.status, "bound": out.bound, "seconds": round(out.seconds, 4),
                      "variables": int(sum(1 for _ in m.component_data_objects(pyo.Var)))}}
