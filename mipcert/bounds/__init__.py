"""Bounds on every pre-activation of a network over an input box.

``ibp`` (intervals), ``crown`` (linear back-substitution, intersected with IBP), ``alpha``
(CROWN with optimised lower slopes of unstable ReLUs, :mod:`.alpha`; torch) and ``lp``
(CROWN, then LP tightening of unstable neurons, layer by layer). All in float64: in numpy on
the CPU (``device`` ``None``/``'numpy'``: no torch import, which would dominate a short
run) or in torch (``'cpu'``, ``'cuda'``, ``'auto'``), and HiGHS for the LPs. Bounds
never import Pyomo.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..errors import InputError
from ._torch import FP_SLACK, resolve_device
from .result import Bounds

log = logging.getLogger(__name__)

METHODS = ("ibp", "crown", "alpha", "lp")


def _check(method):
    if method not in METHODS:
        raise InputError(f"unknown bound method {method!r}: choose one of {', '.join(METHODS)}")


NUMPY_DEVICES = (None, "numpy")


def as_arrays(device, *arrays):
    """``arrays`` (numpy) as float64 arrays of the kind ``device`` asks for: numpy arrays
    for ``None``/``'numpy'``, torch tensors otherwise (``'cpu'`` or ``'torch'`` = torch on the
    CPU, ``'auto'`` = CUDA when available, ``'cuda'``)."""
    if device in NUMPY_DEVICES:
        return tuple(np.asarray(a, dtype=np.float64) for a in arrays)
    import torch

    dev = resolve_device("cpu" if device == "torch" else device)
    return tuple(torch.as_tensor(np.asarray(a), dtype=torch.float64, device=dev) for a in arrays)


def no_grad_for(x):
    """A context without autograd for torch tensors (nothing for numpy arrays)."""
    import contextlib

    if isinstance(x, np.ndarray):
        return contextlib.nullcontext()
    import torch

    return torch.no_grad()


def batch_pre_bounds(network, lo, hi, method: str = "crown", device=None, inherit=None):
    """Pre-activation bounds for a batch of boxes. ``lo, hi``: ``(B, n_0)`` numpy arrays.

    Returns ``(pre, lo_t, hi_t)``: ``pre`` a list over blocks of ``(l, u)`` arrays
    ``(B, n_l)``, and the inputs, all of the kind ``device`` asks for (see :func:`as_arrays`).
    ``method`` is ``ibp`` or ``crown``; ``inherit`` (crown only): known bounds of every
    block per box, numpy ``(B, n_l)`` pairs, to intersect with (see
    :func:`.propagate.crown`).
    """
    from . import propagate

    if method not in ("ibp", "crown"):
        raise InputError(f"batched bounds support ibp and crown, not {method!r}")
    lo_t, hi_t = as_arrays(device, np.atleast_2d(lo), np.atleast_2d(hi))
    stack = network.affine_relu_stack()
    with no_grad_for(lo_t):
        if method == "ibp":
            return propagate.ibp(stack, lo_t, hi_t), lo_t, hi_t
        if inherit is not None:
            inherit = [as_arrays(device, l, u) for l, u in inherit]
        return propagate.crown(stack, lo_t, hi_t, inherit=inherit), lo_t, hi_t


def compute_bounds(network, lo, hi, method: str = "crown", device=None,
                   time_limit: float | None = None) -> Bounds:
    """:class:`Bounds` of one input box ``lo <= x <= hi`` (each ``(n_0,)``)."""
    _check(method)
    lo = np.asarray(lo, dtype=np.float64).reshape(-1)
    hi = np.asarray(hi, dtype=np.float64).reshape(-1)
    if lo.size != network.input_size or hi.size != network.input_size:
        raise InputError(f"input box has {lo.size} entries, the network takes {network.input_size}")
    start = time.perf_counter()
    stack = network.affine_relu_stack()
    pre_t, lo_t, hi_t = batch_pre_bounds(network, lo, hi, "ibp" if method == "ibp" else "crown",
                                         device)
    pre = [(to_numpy(l[0]), to_numpy(u[0])) for l, u in pre_t]
    if method == "lp":
        pre = _lp_tighten(network, stack, pre, lo, hi, device, start, time_limit)
    elif method == "alpha":
        from .alpha import alpha_crown

        deadline = None if time_limit is None else start + time_limit
        pre, _ = alpha_crown(stack, lo, hi, pre, deadline=deadline, device=device)
    bounds = Bounds(lo, hi, pre, method, time.perf_counter() - start,
                    [blk.relu for blk in stack])
    log.info("%s bounds: %d unstable / %d stable ReLUs (%.2fs)", method, bounds.num_unstable,
             bounds.num_stable, bounds.seconds)
    return bounds


def _lp_tighten(network, stack, pre, lo, hi, device, start, time_limit):
    """Progressive tightening: LP for block k, then CROWN for the rest from the new bounds."""
    from . import obbt, propagate

    for k in range(1, len(stack) - 1):
        if not stack[k].relu:
            continue
        left = None if time_limit is None else time_limit - (time.perf_counter() - start)
        if left is not None and left <= 0:
            log.info("LP tightening stopped at block %d: time limit", k)
            break
        pre[k] = obbt.tighten_block(stack, pre, k, lo, hi, time_limit=left)
        # re-run CROWN for the later blocks, starting from the tightened ones
        lo_t, hi_t = as_arrays(device, lo[None], hi[None])
        given = [as_arrays(device, l[None], u[None]) for l, u in pre[: k + 1]]
        with no_grad_for(lo_t):
            new = propagate.crown(stack, lo_t, hi_t, given=given)
        # both are sound, and CROWN is not monotone in the bounds it starts from (a lower
        # slope flips with the sign of u + l): keep the tighter of the two for every unit
        pre = [(np.maximum(to_numpy(l[0]), old[0]), np.minimum(to_numpy(u[0]), old[1]))
               for (l, u), old in zip(new, pre)]
    return pre


def to_numpy(x) -> np.ndarray:
    return x if isinstance(x, np.ndarray) else x.cpu().numpy()


def clause_margin_bounds(network, bounds, region, method):
    """Sound bounds of every clause margin ``max_r (C_r y - d_r)`` of ``region`` over its box.

    ``bounds``: the region's :class:`Bounds`. Returns ``(lo, hi)``, each ``(n_clauses,)``.
    Computed in numpy: one box is a handful of small products. With ``method='alpha'`` the
    lower bounds are also optimised by alpha-CROWN (torch) and the better of the two kept.
    """
    from .propagate import clause_bounds

    stack = network.affine_relu_stack()
    lo_t, hi_t = region.lo[None].astype(np.float64), region.hi[None].astype(np.float64)
    pre = [(l[None], u[None]) for l, u in bounds.pre]
    kind = "ibp" if method == "ibp" else "crown"
    lows = clause_bounds(stack, pre, lo_t, hi_t, region.clauses, kind)[0]
    highs = clause_bounds(stack, pre, lo_t, hi_t, region.clauses, kind, upper=True)[0]
    if kind == "crown":   # CROWN's back-substitution can be looser than IBP's last step: keep both
        lows = np.maximum(lows, clause_bounds(stack, pre, lo_t, hi_t, region.clauses, "ibp")[0])
        highs = np.minimum(highs, clause_bounds(stack, pre, lo_t, hi_t, region.clauses, "ibp",
                                                upper=True)[0])
    if method == "alpha" and not stack[-1].relu:
        from .alpha import alpha_crown

        _, opt = alpha_crown(stack, region.lo, region.hi, bounds.pre, region.clauses,
                             layers=False)
        lows = np.maximum(lows, opt)
    return lows, highs

__all__ = ["Bounds", "FP_SLACK", "METHODS", "NUMPY_DEVICES", "as_arrays", "batch_pre_bounds",
           "clause_margin_bounds", "compute_bounds", "no_grad_for", "to_numpy"]
