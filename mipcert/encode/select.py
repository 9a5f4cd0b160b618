"""Exact MILP encodings of the piecewise-linear selections of ONNX graphs.

Every encoder takes flat (1-D) :class:`VArray` operands with interval bounds, drops the
cases the bounds already decide (no binary for them), and adds its rows in bulk under
deterministic names ``{name}_...``. With integral binaries (``Relaxation.integral``) each is
exact, except where stated as a *closure*; otherwise the binaries range over ``[0, 1]`` (a
relaxation, as for the ReLU).

- :func:`max_of` (MaxPool, Max, Min): ``y = max_i x_i`` over ``k`` candidates with bounds
  ``[l_i, u_i]``; with ``L = max_i l_i``, ``U = max_i u_i``, a candidate with ``u_i <= L``
  (that is not the one attaining ``L``) never exceeds the maximum and is dropped; one
  candidate left gives ``y = x_i``; otherwise binaries ``d_i``::

      y >= x_i,   y <= x_i + (U - l_i)(1 - d_i),   sum_i d_i = 1

- :func:`compare` (Greater, GreaterOrEqual, Less, LessOrEqual, Equal) on ``d = a - b`` with
  bounds ``[l, u]`` gives an indicator ``g``. ``>`` and ``>=``: ``g = 1`` when the bounds
  prove the comparison, ``0`` when they refute it, else::

      d >= l (1 - g),   d <= u g                 (g = 1: d >= 0;  g = 0: d <= 0)

  ``==``: ``g = 1`` when ``l = u = 0``, ``0`` when ``0`` is outside ``[l, u]``, else::

      d <= u (1 - g),   d >= l (1 - g)           (g = 1: d = 0;  g = 0: no condition)

  These are the *closures* of the true sets (``d > 0`` is read ``d >= 0``; ``d != 0`` as any
  ``d``): the feasible set contains every true point, so an infeasible model proves the
  property and a feasible point must be re-run through the network before it is believed;
- :func:`where` (Where with a variable condition ``c``)::

      y - a <= (1 - c)(U_y - l_a),   a - y <= (1 - c)(u_a - L_y),
      y - b <= c (U_y - l_b),        b - y <= c (u_b - L_y)

- :func:`truncate` (Cast of a float to an integer type: rounding toward zero) with integer
  ``n``: for ``x >= 0`` (by its bounds) ``n <= x <= n + 1``, for ``x <= 0``
  ``n - 1 <= x <= n`` (closures of ``x < n + 1`` and ``x > n - 1``); a range that crosses 0
  is refused.
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from ..errors import UnsupportedError
from ..relaxation import Relaxation
from .varray import VArray, add_rows, linear, new_vars


def _binaries(block, name, n, relaxation):
    return new_vars(block, name, np.zeros(n), np.ones(n), indicator=True,
                    integral=Relaxation.parse(relaxation).integral)


def max_of(block: pyo.Block, name: str, items: np.ndarray, lo: np.ndarray, hi: np.ndarray,
           relaxation) -> VArray:
    """``y[j] = max_i x[j, i]`` for object arrays ``items (m, k)`` with bounds ``lo, hi``
    (``(m, k)``; an entry with ``lo = -inf`` is absent, e.g. padding). Returns ``(m,)``."""
    m = items.shape[0]
    out = np.empty(m, dtype=object)
    y_lo, y_hi = np.empty(m), np.empty(m)
    cases = []  # (j, candidate indices)
    for j in range(m):
        ok = np.flatnonzero(np.isfinite(lo[j]))
        L = lo[j, ok].max()
        arg = ok[np.argmax(lo[j, ok])]
        keep = [i for i in ok if i == arg or hi[j, i] > L]
        y_lo[j], y_hi[j] = L, hi[j, keep].max()
        if len(keep) == 1:
            out[j] = items[j, keep[0]]
        else:
            cases.append((j, keep))
    if cases:
        y = new_vars(block, f"{name}_y", y_lo[[j for j, _ in cases]], y_hi[[j for j, _ in cases]])
        n_bin = sum(len(keep) for _, keep in cases)
        d = _binaries(block, f"{name}_d", n_bin, relaxation)
        ge, le, one = [], [], []
        t = 0
        for c, (j, keep) in enumerate(cases):
            yv = y.items[c]
            out[j] = yv
            for i in keep:
                dv, big = d.items[t], float(y_hi[j] - lo[j, i])
                ge.append(linear([(1.0, yv), (-1.0, items[j, i])]) >= 0)
                # y - x_i + big d_i <= big
                le.append(linear([(1.0, yv), (-1.0, items[j, i]), (big, dv)]) <= big)
                t += 1
            one.append(linear([(1.0, d.items[s]) for s in range(t - len(keep), t)]) == 1)
        add_rows(block, f"{name}_ge", ge)
        add_rows(block, f"{name}_le", le)
        add_rows(block, f"{name}_one", one)
    return VArray(out, y_lo, y_hi, np.zeros(m, bool))


def compare(block: pyo.Block, name: str, d: VArray, kind: str, relaxation) -> VArray:
    """The indicator of ``d > 0`` (``kind='gt'``), ``d >= 0`` (``'ge'``) or ``d == 0``
    (``'eq'``) for a 1-D ``d``; see the module docstring for the rows."""
    n = d.shape[0]
    l, u = d.lo, d.hi
    if kind == "gt":
        true, false = l > 0, u <= 0
    elif kind == "ge":
        true, false = l >= 0, u < 0
    elif kind == "eq":
        true, false = (l == 0) & (u == 0), (l > 0) | (u < 0)
    else:
        raise ValueError(kind)
    out = np.where(true, 1.0, 0.0).astype(object)
    g_lo, g_hi = np.where(true, 1.0, 0.0), np.where(false, 0.0, 1.0)
    open_ = np.flatnonzero(~true & ~false)
    ind = np.zeros(n, bool)
    if open_.size:
        g = _binaries(block, f"{name}_g", open_.size, relaxation)
        r1, r2 = [], []
        for t, j in enumerate(open_):
            gv, lj, uj = g.items[t], float(l[j]), float(u[j])
            out[j], ind[j] = gv, True
            if kind == "eq":   # d <= u (1 - g), d >= l (1 - g)
                r1.append(linear([(1.0, d.items[j]), (uj, gv)]) <= uj)
                r2.append(linear([(1.0, d.items[j]), (lj, gv)]) >= lj)
            else:              # d >= l (1 - g), d <= u g
                r1.append(linear([(1.0, d.items[j]), (lj, gv)]) >= lj)
                r2.append(linear([(1.0, d.items[j]), (-uj, gv)]) <= 0)
        add_rows(block, f"{name}_on", r1)
        add_rows(block, f"{name}_off", r2)
    return VArray(out, g_lo, g_hi, ind)


def where(block: pyo.Block, name: str, c: VArray, a: VArray, b: VArray, relaxation) -> VArray:
    """``y = a`` where the indicator ``c`` is 1, else ``b`` (1-D, one shape)."""
    n = c.shape[0]
    out = np.empty(n, dtype=object)
    lo = np.where(c.hi < 0.5, b.lo, np.where(c.lo > 0.5, a.lo, np.minimum(a.lo, b.lo)))
    hi = np.where(c.hi < 0.5, b.hi, np.where(c.lo > 0.5, a.hi, np.maximum(a.hi, b.hi)))
    open_ = []
    for j in range(n):
        if c.hi[j] < 0.5:
            out[j] = b.items[j]
        elif c.lo[j] > 0.5:
            out[j] = a.items[j]
        else:
            open_.append(j)
    if open_:
        y = new_vars(block, f"{name}_y", lo[open_], hi[open_])
        rows = []
        for t, j in enumerate(open_):
            yv, cv = y.items[t], c.items[j]
            m1, m2 = float(hi[j] - a.lo[j]), float(a.hi[j] - lo[j])
            m3, m4 = float(hi[j] - b.lo[j]), float(b.hi[j] - lo[j])
            out[j] = yv
            rows += [linear([(1.0, yv), (-1.0, a.items[j]), (m1, cv)]) <= m1,
                     linear([(-1.0, yv), (1.0, a.items[j]), (m2, cv)]) <= m2,
                     linear([(1.0, yv), (-1.0, b.items[j]), (-m3, cv)]) <= 0,
                     linear([(-1.0, yv), (1.0, b.items[j]), (-m4, cv)]) <= 0]
        add_rows(block, f"{name}_select", rows)
    ind = np.where(c.hi < 0.5, b.indicator, np.where(c.lo > 0.5, a.indicator,
                                                      a.indicator & b.indicator))
    return VArray(out, lo, hi, ind)


def truncate(block: pyo.Block, name: str, x: VArray, relaxation) -> VArray:
    """``n = trunc(x)`` (rounding toward zero) for a 1-D ``x``; see the module docstring."""
    n = x.shape[0]
    tl, tu = np.trunc(x.lo), np.trunc(x.hi)
    out = tl.astype(object)
    open_ = np.flatnonzero(tl != tu)
    for j in np.flatnonzero(tl == tu):
        out[j] = float(tl[j])
    if open_.size:
        crossing = open_[(x.lo[open_] < 0) & (x.hi[open_] > 0)]
        if crossing.size:
            raise UnsupportedError(
                f"{name}: Cast to an integer type of a quantity whose range "
                f"[{x.lo[crossing[0]]:g}, {x.hi[crossing[0]]:g}] crosses 0 is not supported")
        domain = pyo.Integers if Relaxation.parse(relaxation).integral else pyo.Reals
        var = pyo.Var(range(open_.size), domain=domain,
                      bounds=lambda _, t: (float(tl[open_[t]]), float(tu[open_[t]])))
        block.add_component(f"{name}_n", var)
        rows = []
        for t, j in enumerate(open_):
            nv, xv = var[t], x.items[j]
            out[j] = nv
            if x.lo[j] >= 0:   # n <= x <= n + 1
                rows += [linear([(1.0, xv), (-1.0, nv)]) >= 0,
                         linear([(1.0, xv), (-1.0, nv)]) <= 1.0]
            else:              # n - 1 <= x <= n
                rows += [linear([(1.0, xv), (-1.0, nv)]) <= 0,
                         linear([(1.0, xv), (-1.0, nv)]) >= -1.0]
        add_rows(block, f"{name}_trunc", rows)
    return VArray(out, tl, tu, np.zeros(n, bool))   # integers: the ends are exact
