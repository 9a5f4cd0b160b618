"""Arrays of model quantities with their interval bounds: the currency of the training encoders.

A :class:`VArray` holds, for every entry of a numpy-shaped quantity (a layer's weights, one
sample's pre-activations, a gradient), a Python ``float`` (data: a constant), a Pyomo
``VarData`` (a decision variable) or a ``LinearExpression`` of variables, together with interval bounds ``[lo, hi]`` valid
for every feasible point of the model and a flag marking indicator variables (binaries, or
their ``[0, 1]`` relaxation). Encoders read the bounds to build Big-M and McCormick
constants, and compute the bounds of what they create by interval arithmetic, so a bound
exists for every variable (FORMULATIONS 3.4: "every variable needs finite bounds").

Constants stay constants: a product with a constant is a linear term, never a variable, so
a layer fed with data is linear in its weights (FORMULATIONS 3.3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.numeric_expr import LinearExpression

from ..errors import InputError

#: relative outward widening of every interval computed here (round-to-nearest arithmetic)
BOUND_WIDEN = 1e-12


@dataclass
class VArray:
    """``items``: object array (floats or VarData); ``lo``/``hi``: float arrays of the same
    shape; ``indicator``: bool array, True where the entry is a 0/1 indicator variable."""

    items: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    indicator: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return self.items.shape

    def __getitem__(self, key) -> "VArray":
        return VArray(self.items[key], self.lo[key], self.hi[key], self.indicator[key])

    def reshape(self, *shape) -> "VArray":
        return VArray(self.items.reshape(*shape), self.lo.reshape(*shape),
                      self.hi.reshape(*shape), self.indicator.reshape(*shape))


def const(values) -> VArray:
    """A VArray of constants (float64 data)."""
    v = np.asarray(values, dtype=np.float64)
    items = np.empty(v.shape, dtype=object)
    items.reshape(-1)[:] = [float(x) for x in v.reshape(-1)]
    return VArray(items, v.copy(), v.copy(), np.zeros(v.shape, bool))


def concat(parts: Sequence[VArray]) -> VArray:
    """Concatenate 1-D VArrays."""
    return VArray(np.concatenate([p.items for p in parts]),
                  np.concatenate([p.lo for p in parts]),
                  np.concatenate([p.hi for p in parts]),
                  np.concatenate([p.indicator for p in parts]))


def widen(lo: np.ndarray, hi: np.ndarray, scale=None) -> tuple[np.ndarray, np.ndarray]:
    """Move computed interval ends outward by :data:`BOUND_WIDEN` times ``scale`` (default
    the ends' magnitude; give the sum of the terms' magnitudes for a computed sum, whose
    rounding error scales with them, not with the result)."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if scale is None:
        scale = np.maximum(np.abs(lo), np.abs(hi))
    pad = BOUND_WIDEN * np.asarray(scale, np.float64)
    return lo - pad, hi + pad


def new_vars(block: pyo.Block, name: str, lo, hi, indicator: bool = False,
             integral: bool = False) -> VArray:
    """Add ``block.<name>[idx]`` with bounds ``[lo, hi]`` (arrays of one shape).

    1-D arrays are indexed by ``j``, n-D arrays by tuples. ``indicator`` marks 0/1 variables:
    they are ``Binary`` when ``integral`` else continuous in ``[0, 1]`` (the ``lo``/``hi``
    given then narrow that, e.g. a fixed gate). Raises InputError on an empty or non-finite
    interval, which would make the model meaningless.
    """
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    if lo.shape != hi.shape:
        raise InputError(f"{name}: bounds of different shapes {lo.shape} and {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise InputError(f"{name}: a variable has infinite bounds; the interval bounds of the "
                         "run overflowed (lower the learning rate or the number of steps)")
    if np.any(lo > hi):
        k = int(np.flatnonzero((lo > hi).reshape(-1))[0])
        raise InputError(f"{name}: empty bounds [{lo.reshape(-1)[k]}, {hi.reshape(-1)[k]}] "
                         "(the bounds handed to the encoder contradict each other)")
    shape = lo.shape
    index = list(range(shape[0])) if len(shape) == 1 else list(np.ndindex(*shape))
    flat_lo, flat_hi = lo.reshape(-1), hi.reshape(-1)
    pos = {ix: k for k, ix in enumerate(index)}
    domain = pyo.Binary if (indicator and integral) else pyo.Reals
    var = pyo.Var(index, domain=domain,
                  bounds=lambda _, *ix: (float(flat_lo[pos[ix[0] if len(ix) == 1 else ix]]),
                                         float(flat_hi[pos[ix[0] if len(ix) == 1 else ix]])))
    block.add_component(name, var)
    items = np.empty(shape, dtype=object)
    items.reshape(-1)[:] = [var[ix] for ix in index]
    return VArray(items, lo.copy(), hi.copy(), np.full(shape, bool(indicator)))


def linear(terms: Iterable[tuple[float, object]], constant: float = 0.0) -> LinearExpression:
    """``constant + sum coef * item``; items are floats (folded), variables or linear
    expressions (expanded)."""
    coefs, vs = [], []
    for c, v in terms:
        if c == 0.0:
            continue
        if isinstance(v, float):
            constant += c * v
        elif type(v) is LinearExpression:
            constant += c * float(v.constant)
            coefs.extend(c * float(a) for a in v.linear_coefs)
            vs.extend(v.linear_vars)
        else:
            coefs.append(float(c))
            vs.append(v)
    return LinearExpression(constant=float(constant), linear_coefs=coefs, linear_vars=vs)


def add_rows(block: pyo.Block, name: str, rows: list) -> None:
    """Add a list of relational expressions as ``block.<name>[k]`` (trivial ones dropped)."""
    rows = [r for r in rows if not isinstance(r, bool)]
    if rows:
        block.add_component(name, pyo.Constraint(range(len(rows)), rule=lambda _, k: rows[k]))


def set_equal(block: pyo.Block, name: str, lhs: VArray, rhs: list) -> None:
    """Rows ``lhs[k] == rhs[k]`` (``rhs`` linear expressions), for variable entries of lhs."""
    rows = []
    for k, (v, e) in enumerate(zip(lhs.items.reshape(-1), rhs)):
        rows.append(LinearExpression(
            constant=e.constant, linear_coefs=list(e.linear_coefs) + [-1.0],
            linear_vars=list(e.linear_vars) + [v]) == 0)
    add_rows(block, name, rows)


def define(block: pyo.Block, name: str, exprs: list, lo, hi, indicator: bool = False,
           force_vars: bool = False) -> VArray:
    """The quantities ``exprs`` (linear expressions, 1-D) with bounds ``lo, hi``.

    Entries that are constants stay constants. With ``force_vars`` every other entry becomes
    a variable ``name[k]`` with a defining row ``name_def`` (needed where a later encoder
    takes variables, e.g. the ReLU's Big-M rows); otherwise an expression of one variable
    with coefficient 1 and no constant is the variable itself, and the rest stay expressions.
    """
    lo, hi = np.asarray(lo, np.float64).reshape(-1), np.asarray(hi, np.float64).reshape(-1)
    n = len(exprs)
    items = np.empty(n, dtype=object)
    todo = []
    for k, e in enumerate(exprs):
        if len(e.linear_vars) == 0:
            items[k] = float(e.constant)
            lo[k] = hi[k] = float(e.constant)
        elif (len(e.linear_vars) == 1 and float(e.linear_coefs[0]) == 1.0
              and float(e.constant) == 0.0):
            items[k] = e.linear_vars[0]
        elif force_vars:
            todo.append(k)
        else:
            items[k] = e
    if todo:
        v = new_vars(block, name, lo[todo], hi[todo], indicator)
        set_equal(block, f"{name}_def", v, [exprs[k] for k in todo])
        for t, k in enumerate(todo):
            items[k] = v.items[t]
    return VArray(items, lo, hi, np.full(n, bool(indicator)))


def interval_mul(al, ah, bl, bh) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise interval product ``[al, ah] * [bl, bh]`` (exact ends, round-to-nearest)."""
    c = np.stack([al * bl, al * bh, ah * bl, ah * bh])
    return c.min(axis=0), c.max(axis=0)
