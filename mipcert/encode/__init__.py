"""Pyomo building blocks. Encoders never call a solver; each takes the ``Relaxation`` switch."""
from __future__ import annotations

import pyomo.environ as pyo

from ..relaxation import Relaxation
from .network_block import build_network_block, network_block, point_values
from .relu import relu_layer
from .spec import add_margin_objective, clause_margin


def build_margin_model(network, bounds, region, relaxation=Relaxation.MILP,
                       margin_lo=None, margin_hi=None):
    """A model ``m`` with the network in ``m.net`` and one margin expression per clause.

    Returns ``(m, margins)``; no objective is added (a persistent solver swaps them in).
    """
    model = pyo.ConcreteModel(name="mipcert_verify")
    model.net = pyo.Block()
    build_network_block(model.net, network, bounds, relaxation)
    margins = []
    for k, clause in enumerate(region.clauses):
        lo = None if margin_lo is None else float(margin_lo[k])
        hi = None if margin_hi is None else float(margin_hi[k])
        margins.append(clause_margin(model.net, clause, f"clause{k}", lo, hi))
    return model, margins


__all__ = ["Relaxation", "add_margin_objective", "build_margin_model", "build_network_block",
           "clause_margin", "network_block", "point_values", "relu_layer"]

