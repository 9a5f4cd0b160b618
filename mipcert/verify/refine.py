"""Tighter bounds for the open regions of many inputs (steps 2b and 3 of :mod:`.verifier`).

A region whose clauses CROWN leaves open and that input splitting will not search (more than
:data:`~.branch.MAX_SPLIT_DIM` inputs) has its bounds refined, which may prove clauses
outright and leaves the search fewer unstable ReLUs and smaller Big-M constants:

* **alpha-CROWN** (:mod:`mipcert.bounds.alpha`) before the search, at most
  :data:`ALPHA_SHARE` of the time left. On the trained mnist 256x4 stand-in at eps 0.03 it
  proved 7 of 9 clauses where CROWN proved 5;
* **MILP bounds of the next block** (:func:`mipcert.bounds.obbt.tighten_block_milp`), block
  after block while the ReLUs unstable below it are at most :data:`MILP_REFINE_BINARIES`
  (then each bound is a small MILP, often solved exactly) and within :data:`MILP_SHARE` of
  the time left, each block followed by alpha-CROWN again. The single-neuron relaxation
  that CROWN, alpha-CROWN and the triangle LP share cannot see that a few unstable ReLUs of
  an early layer never take all their phases at once; the error compounds layer after
  layer, so on networks whose first layers are nearly stable (VNN-COMP's mnistfc network
  has 1-2 % of its first layer active) the last layers end almost all unstable. On the
  sparse 784-256x6 stand-in at eps 0.05 (image 19), exact bounds of block 1 took the
  margins from -442 to +5.6 (77 MILPs, 9 s), where ReLU branch and bound ran out of the
  minute. They cost seconds to tens of seconds, so they come only after a first search
  (:data:`FIRST_SEARCH_SHARE` of the time left) has failed to settle the region, and the
  search then starts again with the new bounds: run before the search, they took 28 s of
  two sparse 256x4 properties that the search alone settles in 8 and 15 s.

Both return the pending item ``(region, check, bounds, m_lo, m_hi, open_k, rstats)`` with
its bounds replaced; clauses proved leave ``open_k`` and their bounds go to ``proven``.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from .branch import MAX_SPLIT_DIM

log = logging.getLogger(__name__)

# alpha-CROWN refinement of an open region may use at most this share of the time left.
ALPHA_SHARE = 0.3
# MILP bounds of a block are computed while the ReLUs unstable below it are at most this
# many (its binaries), within this share of the time left, each solve at most
# MILP_NEURON_LIMIT seconds.
MILP_REFINE_BINARIES = 48
MILP_SHARE = 0.5
MILP_NEURON_LIMIT = 0.5
# The search before them gets this share of the time left (this many seconds without a
# time limit).
FIRST_SEARCH_SHARE = 0.25
FIRST_SEARCH_SECONDS = 30.0


def refinable(network, bounds) -> bool:
    """MILP bounds can pay on this region: many inputs, an affine output, and block 1 (the
    first that can be refined) has at most :data:`MILP_REFINE_BINARIES` below it."""
    stack = network.affine_relu_stack()
    if not _wide(network, stack) or len(stack) < 3 or not stack[0].relu:
        return False
    return _unstable(*bounds.pre[0]) <= MILP_REFINE_BINARIES


def first_search(left):
    """``left`` for the first search: capped at :data:`FIRST_SEARCH_SHARE` of the time left."""
    budget = left()
    end = time.perf_counter() + (FIRST_SEARCH_SECONDS if budget is None
                                 else FIRST_SEARCH_SHARE * budget)
    return lambda: end - time.perf_counter() if budget is None \
        else min(end - time.perf_counter(), left())


def _wide(network, stack) -> bool:
    """Refinement is for regions input splitting will not search, with an affine output."""
    return network.input_size > MAX_SPLIT_DIM and not stack[-1].relu


def _unstable(l, u) -> int:
    return int(((l < 0) & (u > 0)).sum())


def refine_alpha(network, item, left, device, proven):
    """``item`` with its bounds refined by alpha-CROWN (see the module doc)."""
    region, check, b, m_lo, m_hi, open_k, rstats = item
    stack = network.affine_relu_stack()
    if not _wide(network, stack):   # few inputs: splitting's (or, with --no-split, the
        return item                 # exact path's) business
    t = time.perf_counter()
    budget = left()
    deadline = None if budget is None else t + ALPHA_SHARE * budget
    b, m_lo, open_k = _alpha(network, stack, region, b, m_lo, open_k, deadline, device,
                             proven)
    rstats.update(alpha_unstable=b.num_unstable, proved_by_alpha=rstats["clauses"]
                  - rstats["proved_by_bounds"] - len(open_k),
                  alpha_seconds=round(time.perf_counter() - t, 4))
    return region, check, b, m_lo, m_hi, open_k, rstats


def refine_milp(network, item, left, device, proven):
    """``item`` with the bounds of its first blocks tightened by MILP (see the module doc);
    ``rstats['milp_refine']`` says which blocks, how many solves and seconds."""
    region, check, b, m_lo, m_hi, open_k, rstats = item
    stack = network.affine_relu_stack()
    if not open_k or not _wide(network, stack):
        return item
    from ..bounds.obbt import tighten_block_milp

    t0 = time.perf_counter()
    budget = left()
    deadline = None if budget is None else t0 + MILP_SHARE * budget
    done = []
    below = 0   # ReLUs unstable in the blocks below block k
    for k in range(len(stack) - 1):
        if k > 0 and stack[k].relu:
            if below > MILP_REFINE_BINARIES or not open_k:
                break
            if deadline is not None and time.perf_counter() > deadline:
                break
            t = time.perf_counter()
            pre = list(b.pre)
            before = _unstable(*pre[k])
            l, u, solves = tighten_block_milp(stack, pre, k, region.lo, region.hi,
                                              deadline=deadline,
                                              neuron_limit=MILP_NEURON_LIMIT)
            pre[k] = (l, u)
            b = dataclasses.replace(b, pre=pre)
            step = {"block": k, "binaries": below, "solves": solves,
                    "unstable_before": before, "unstable_after": _unstable(l, u),
                    "seconds": round(time.perf_counter() - t, 3)}
            # the blocks above and the clauses, again by alpha-CROWN with the new bounds
            b, m_lo, open_k = _alpha(network, stack, region, b, m_lo, open_k, deadline,
                                     device, proven)
            step["unstable_total"] = b.num_unstable
            step["open_clauses"] = len(open_k)
            done.append(step)
            log.info("MILP bounds of block %d: %s", k, step)
        if stack[k].relu:
            below += _unstable(*b.pre[k])
    if done:
        rstats["milp_refine"] = done
        rstats["milp_refine_seconds"] = round(time.perf_counter() - t0, 4)
    return region, check, b, m_lo, m_hi, open_k, rstats


def _alpha(network, stack, region, b, m_lo, open_k, deadline, device, proven):
    """alpha-CROWN over ``b``: the tightened bounds, clause lower bounds and open clauses."""
    from ..bounds.alpha import alpha_crown
    from ..bounds.result import Bounds

    t = time.perf_counter()
    pre, opt = alpha_crown(stack, region.lo, region.hi, b.pre, region.clauses,
                           deadline=deadline, device=device)
    b = Bounds(b.input_lo, b.input_hi, pre, "alpha", b.seconds + time.perf_counter() - t,
               b.relu_layers)
    m_lo = np.maximum(m_lo, opt)
    proven.extend(float(m_lo[k]) for k in open_k if m_lo[k] > 0)
    return b, m_lo, [k for k in open_k if m_lo[k] <= 0]
