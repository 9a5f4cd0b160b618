"""The verification model of one region as a self-contained Pyomo model, for export."""
from __future__ import annotations

import pyomo.environ as pyo

from ..bounds import clause_margin_bounds, compute_bounds
from ..encode import add_margin_objective, build_network_block
from ..relaxation import Relaxation


def margin_model(network, region, relaxation=Relaxation.MILP, bounds: str = "crown",
                 device=None) -> pyo.ConcreteModel:
    """``minimise margin`` over ``region``: the property holds there iff the optimum is > 0.

    Components: ``net`` (the network block, see :mod:`mipcert.encode.network_block`), the
    clause epigraph variables, and for several clauses ``margin``/``margin_choice``.
    """
    b = compute_bounds(network, region.lo, region.hi, bounds, device=device)
    m_lo, m_hi = clause_margin_bounds(network, b, region, bounds)
    model = pyo.ConcreteModel(name="mipcert_verify")
    model.net = pyo.Block()
    build_network_block(model.net, network, b, relaxation)
    add_margin_objective(model, model.net, region, m_lo, m_hi, relaxation)
    return model
