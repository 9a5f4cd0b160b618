"""The verification model of one region as a self-contained Pyomo model, for export."""
from __future__ import annotations

import pyomo.environ as pyo

from ..bounds import clause_margin_bounds, compute_bounds
from ..encode import add_margin_objective, build_margin_model
from ..relaxation import Relaxation


def margin_model(network, region, relaxation=Relaxation.MILP, bounds: str = "crown",
                 device=None) -> pyo.ConcreteModel:
    """``minimise margin`` over ``region``: the property holds there iff the optimum is > 0.

    Components: ``net`` (the network block, see :mod:`mipcert.encode.network_block`), the
    clause epigraph variables, and for several clauses ``margin``/``margin_choice``.
    """
    b = compute_bounds(network, region.lo, region.hi, bounds, device=device)
    m_lo, m_hi = clause_margin_bounds(network, b, region, bounds)
    model, margins = build_margin_model(network, b, region, relaxation, m_lo, m_hi)
    add_margin_objective(model, model.net, region, m_lo, m_hi, relaxation, margins=margins)
    return model
