"""Bounds on every pre-activation of a network over an input box.

``ibp`` (intervals), ``crown`` (linear back-substitution, intersected with IBP) and ``lp``
(CROWN, then LP tightening of unstable neurons, layer by layer). All in float64, in torch
(CPU or CUDA) for the propagation and HiGHS for the LPs. Bounds never import Pyomo.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..errors import InputError
from ._torch import FP_SLACK, resolve_device
from .result import Bounds

log = logging.getLogger(__name__)

METHODS = ("ibp", "crown", "lp")


def _check(method):
    if method not in METHODS:
        raise InputError(f"unknown bound method {method!r}: choose one of {', '.join(METHODS)}")


def batch_pre_bounds(network, lo, hi, method: str = "crown", device=None):
    """Pre-activation bounds for a batch of boxes. ``lo, hi``: ``(B, n_0)`` numpy arrays.

    Returns ``(pre, lo_t, hi_t)``: ``pre`` a list over blocks of ``(l, u)`` torch tensors
    ``(B, n_l)``, and the inputs as tensors. ``method`` is ``ibp`` or ``crown``.
    """
    import torch

    from . import propagate

    if method not in ("ibp", "crown"):
        raise InputError(f"batched bounds support ibp and crown, not {method!r}")
    dev = resolve_device(device)
    lo_t = torch.as_tensor(np.atleast_2d(lo), dtype=torch.float64, device=dev)
    hi_t = torch.as_tensor(np.atleast_2d(hi), dtype=torch.float64, device=dev)
    stack = network.affine_relu_stack()
    fn = propagate.ibp if method == "ibp" else propagate.crown
    with torch.no_grad():
        return fn(stack, lo_t, hi_t, dev), lo_t, hi_t


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
    pre = [(l[0].cpu().numpy(), u[0].cpu().numpy()) for l, u in pre_t]
    if method == "lp":
        pre = _lp_tighten(network, stack, pre, lo, hi, device, start, time_limit)
    bounds = Bounds(lo, hi, pre, method, time.perf_counter() - start,
                    [blk.relu for blk in stack])
    log.info("%s bounds: %d unstable / %d stable ReLUs (%.2fs)", method, bounds.num_unstable,
             bounds.num_stable, bounds.seconds)
    return bounds


def _lp_tighten(network, stack, pre, lo, hi, device, start, time_limit):
    """Progressive tightening: LP for block k, then CROWN for the rest from the new bounds."""
    import torch

    from . import obbt, propagate

    dev = resolve_device(device)
    for k in range(1, len(stack) - 1):
        if not stack[k].relu:
            continue
        left = None if time_limit is None else time_limit - (time.perf_counter() - start)
        if left is not None and left <= 0:
            log.info("LP tightening stopped at block %d: time limit", k)
            break
        pre[k] = obbt.tighten_block(stack, pre, k, lo, hi, time_limit=left)
        # re-run CROWN for the later blocks, starting from the tightened ones
        lo_t = torch.as_tensor(lo[None], dtype=torch.float64, device=dev)
        hi_t = torch.as_tensor(hi[None], dtype=torch.float64, device=dev)
        given = [(torch.as_tensor(l[None], device=dev), torch.as_tensor(u[None], device=dev))
                 for l, u in pre[: k + 1]]
        with torch.no_grad():
            new = propagate.crown(stack, lo_t, hi_t, dev, given=given)
        pre = [(l[0].cpu().numpy(), u[0].cpu().numpy()) for l, u in new]
    return pre


def clause_margin_bounds(network, bounds, region, method):
    """Sound bounds of every clause margin ``max_r (C_r y - d_r)`` of ``region`` over its box.

    ``bounds``: the region's :class:`Bounds`. Returns ``(lo, hi)``, each ``(n_clauses,)``.
    """
    import torch

    from .propagate import clause_bounds

    stack = network.affine_relu_stack()
    lo_t = torch.as_tensor(region.lo[None], dtype=torch.float64)
    hi_t = torch.as_tensor(region.hi[None], dtype=torch.float64)
    pre = [(torch.as_tensor(l[None]), torch.as_tensor(u[None])) for l, u in bounds.pre]
    kind = "ibp" if method == "ibp" else "crown"
    with torch.no_grad():
        lows = clause_bounds(stack, pre, lo_t, hi_t, region.clauses, kind)[0].numpy()
        highs = clause_bounds(stack, pre, lo_t, hi_t, region.clauses, kind, upper=True)[0].numpy()
    return lows, highs

__all__ = ["Bounds", "FP_SLACK", "METHODS", "batch_pre_bounds", "clause_margin_bounds", "compute_bounds"]
