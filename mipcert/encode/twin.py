"""Two copies of a network in one Pyomo block, sharing some inputs (relational properties).

The copies are the block-diagonal :func:`mipcert.network.twin.twin_network`, encoded by
:func:`~mipcert.encode.network_block.build_network_block` over its bounds; this module only
names the two halves::

    block.inputs_a  = x   (n vars)      block.outputs_a = z(x)   (m vars)
    block.inputs_b  = x'  (n items: the shared entries are x's vars)
    block.outputs_b = z(x')

so that ``x_i - x'_i`` and ``z_j(x) - z_j(x')`` are plain linear expressions.
"""
from __future__ import annotations

import pyomo.environ as pyo

from ..network.twin import _shared_mask
from ..relaxation import Relaxation
from .network_block import build_network_block


def build_twin_block(block: pyo.Block, network, twin, twin_bounds, shared=None,
                     relaxation=Relaxation.MILP) -> pyo.Block:
    """Encode ``twin = twin_network(network, shared)`` over ``twin_bounds`` into ``block``.

    ``twin_bounds``: :class:`~mipcert.bounds.Bounds` of the twin network (its input box is
    ``(x box, own entries of the x' box)``).
    """
    build_network_block(block, twin, twin_bounds, relaxation)
    n, m = network.input_size, network.output_size
    mask = _shared_mask(n, shared)
    xs = block.inputs
    own = iter(xs[n:])
    block.inputs_a = xs[:n]
    block.inputs_b = [xs[i] if mask[i] else next(own) for i in range(n)]
    block.outputs_a = block.outputs[:m]
    block.outputs_b = block.outputs[m:]
    return block
