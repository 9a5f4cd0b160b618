"""Products of two model quantities, ``w = x * y`` elementwise (FORMULATIONS 1.3).

Per entry, by what the factors are:

- either factor a constant: ``w`` is the linear term itself (no variable, no row);
- either factor an indicator ``s`` (binary, or its ``[0, 1]`` relaxation): the McCormick
  envelope with ``s``'s bounds ``[0, 1]``, which is *exact* while ``s`` is integral
  (a Big-M linearisation)::

      w >= xl s,   w <= xu s,   w >= x - xu (1 - s),   w <= x - xl (1 - s)

  It is never made quadratic, whatever the relaxation;
- two continuous variables: ``w == x y`` (a bilinear equality) when the relaxation keeps
  products exact (MIQCP, QCP), else the McCormick envelope (MILP, LP)::

      w >= xl y + x yl - xl yl,   w >= xu y + x yu - xu yu,
      w <= xu y + x yl - xu yl,   w <= xl y + x yu - xl yu

``w``'s bounds are the interval product of the factors' bounds. Two indicators give an
indicator (their logical AND when integral).
"""
from __future__ import annotations

import numpy as np
import pyomo.environ as pyo

from ..relaxation import Relaxation
from .varray import VArray, add_rows, interval_mul, linear, new_vars, widen


def _mccormick_rows(w, x, y, xl, xu, yl, yu) -> list:
    """The four McCormick inequalities for ``w = x y`` (x, y variables or floats)."""
    return [
        linear([(1.0, w), (-xl, y), (-yl, x)], xl * yl) >= 0,
        linear([(1.0, w), (-xu, y), (-yu, x)], xu * yu) >= 0,
        linear([(1.0, w), (-xu, y), (-yl, x)], xu * yl) <= 0,
        linear([(1.0, w), (-xl, y), (-yu, x)], xl * yu) <= 0,
    ]


def product(block: pyo.Block, name: str, x: VArray, y: VArray,
            relaxation: Relaxation) -> VArray:
    """``x * y`` elementwise (same shapes). Returns a VArray whose entries are constants,
    linear expressions (constant times variable) or product variables ``name[idx]``.

    Rows: ``name_mc`` (McCormick / Big-M) and ``name_bilinear`` (exact quadratic).
    """
    relaxation = Relaxation.parse(relaxation)
    shape = x.shape
    xs, ys = x.items.reshape(-1), y.items.reshape(-1)
    lo, hi = interval_mul(x.lo.reshape(-1), x.hi.reshape(-1), y.lo.reshape(-1),
                          y.hi.reshape(-1))
    lo, hi = widen(lo, hi)
    xc = np.array([isinstance(v, float) for v in xs], bool)
    yc = np.array([isinstance(v, float) for v in ys], bool)
    n = len(xs)
    out = np.empty(n, dtype=object)
    ind = (x.indicator.reshape(-1) & y.indicator.reshape(-1))
    need = np.flatnonzero(~xc & ~yc)
    for k in np.flatnonzero(xc & yc):
        out[k] = float(xs[k] * ys[k])
    for k in np.flatnonzero(xc ^ yc):  # a constant times a variable: a linear term
        c, v = (xs[k], ys[k]) if xc[k] else (ys[k], xs[k])
        out[k] = linear([(c, v)])
    if len(need):
        w = new_vars(block, name, lo[need], hi[need], indicator=bool(ind[need].all()),
                     integral=False)
        mc, quad = [], []
        xl, xu = x.lo.reshape(-1), x.hi.reshape(-1)
        yl, yu = y.lo.reshape(-1), y.hi.reshape(-1)
        xi, yi = x.indicator.reshape(-1), y.indicator.reshape(-1)
        for t, k in enumerate(need):
            wk = w.items[t]
            out[k] = wk
            if xi[k] or yi[k] or not relaxation.exact_products:
                mc += _mccormick_rows(wk, xs[k], ys[k], float(xl[k]), float(xu[k]),
                                      float(yl[k]), float(yu[k]))
            else:
                quad.append(wk - xs[k] * ys[k] == 0)
        add_rows(block, f"{name}_mc", mc)
        add_rows(block, f"{name}_bilinear", quad)
    return VArray(out.reshape(shape), lo.reshape(shape), hi.reshape(shape),
                  ind.reshape(shape))

