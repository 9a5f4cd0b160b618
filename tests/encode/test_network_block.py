"""Encoders against the numpy reference forward pass."""
import numpy as np
import pyomo.environ as pyo
import pytest

from mipcert.bounds import clause_margin_bounds, compute_bounds
from mipcert.encode import add_margin_objective, build_network_block, network_block
from mipcert.network import Affine, Dense, Network, ReLU
from mipcert.relaxation import Relaxation
from mipcert.solve import solve
from mipcert.spec import robustness_spec

TOL = 1e-7


def random_network(seed, sizes=(3, 8, 8, 3)):
    rng = np.random.default_rng(seed)
    layers = [Affine(rng.uniform(0.5, 2, sizes[0]), rng.normal(size=sizes[0]))]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(rng.normal(size=(b, a)), rng.normal(size=b)))
        if i < len(sizes) - 2:
            layers.append(ReLU())
    return Network(layers, (sizes[0],))


def reference_assignment(block, network, x):
    """Set every variable of the block to its value at the reference point ``x``."""
    for i, v in enumerate(x):
        block.x[i].set_value(v)
    hs = network.activations(x[None])
    for l, h in enumerate(hs):
        h = h[0]
        name = f"layer{l}"
        for comp, value in (("_h", h), ("_a", np.maximum(h, 0)), ("_s", (h > 0).astype(float))):
            var = block.component(name + comp)
            if var is not None:
                for j in var:
                    var[j].set_value(float(value[j]))
    y = network.forward(x)
    for k in block.y:
        if not block.y[k].fixed:
            block.y[k].set_value(float(y[k]))


def violated(model):
    bad = []
    for c in model.component_data_objects(pyo.Constraint, active=True):
        body = pyo.value(c.body)
        if (c.lower is not None and body < pyo.value(c.lower) - TOL) or \
                (c.upper is not None and body > pyo.value(c.upper) + TOL):
            bad.append((c.name, body, c.lower, c.upper))
    for v in model.component_data_objects(pyo.Var):
        if v.value is not None and ((v.lb is not None and v.value < v.lb - TOL) or
                                    (v.ub is not None and v.value > v.ub + TOL)):
            bad.append((v.name, v.value, v.lb, v.ub))
    return bad


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("relaxation", ["milp", "lp"])
@pytest.mark.parametrize("method", ["ibp", "crown", "lp"])
def test_reference_points_are_feasible(seed, relaxation, method):
    net = random_network(seed)
    rng = np.random.default_rng(100 + seed)
    lo = rng.uniform(-1, 0, 3)
    hi = lo + rng.uniform(0.2, 1.5, 3)
    bounds = compute_bounds(net, lo, hi, method)
    model = network_block(net, bounds, relaxation)
    for x in lo + (hi - lo) * rng.random((20, 3)):
        reference_assignment(model, net, x)
        assert violated(model) == []


@pytest.mark.parametrize("seed", range(6))
def test_milp_at_a_fixed_input_reproduces_the_forward_pass(seed):
    net = random_network(seed)
    rng = np.random.default_rng(200 + seed)
    lo = rng.uniform(-1, 0, 3)
    hi = lo + 1.0
    bounds = compute_bounds(net, lo, hi, "crown")
    x = lo + (hi - lo) * rng.random(3)
    y = net.forward(x)
    for relaxation in (Relaxation.MILP, Relaxation.LP):
        model = pyo.ConcreteModel()
        model.net = pyo.Block()
        build_network_block(model.net, net, bounds, relaxation)
        for i in range(3):
            model.net.x[i].fix(float(x[i]))
        for k in range(net.output_size):
            lo_k, hi_k = [], []
            for sense in (pyo.minimize, pyo.maximize):
                model.obj = pyo.Objective(expr=model.net.y[k], sense=sense)
                out = solve(model, "highs")
                (lo_k if sense == pyo.minimize else hi_k).append(out.value)
                model.del_component(model.obj)
            if relaxation.integral:   # exact: the output is a single point
                assert lo_k[0] == pytest.approx(y[k], abs=1e-6)
                assert hi_k[0] == pytest.approx(y[k], abs=1e-6)
            else:                     # relaxed: the point is inside
                assert lo_k[0] <= y[k] + 1e-6 and hi_k[0] >= y[k] - 1e-6


@pytest.mark.parametrize("seed", range(8))
def test_lp_below_milp_below_every_sampled_point(seed):
    net = random_network(seed, (4, 10, 10, 4))
    rng = np.random.default_rng(300 + seed)
    x0 = rng.uniform(0.2, 0.8, 4)
    label = int(np.argmax(net.forward(x0)))
    spec = robustness_spec(x0, label, 0.15, 4, input_lo=0.0, input_hi=1.0)
    region = spec.regions[0]
    bounds = compute_bounds(net, region.lo, region.hi, "crown")
    m_lo, m_hi = clause_margin_bounds(net, bounds, region, "crown")
    optima = {}
    for relaxation in (Relaxation.LP, Relaxation.MILP):
        model = pyo.ConcreteModel()
        model.net = pyo.Block()
        build_network_block(model.net, net, bounds, relaxation)
        add_margin_objective(model, model.net, region, m_lo, m_hi, relaxation)
        optima[relaxation] = solve(model, "highs")
    lp, milp = optima[Relaxation.LP], optima[Relaxation.MILP]
    assert milp.status == "optimal"
    assert lp.bound <= milp.bound + 1e-7
    assert m_lo.min() <= milp.bound + 1e-7
    # the MILP optimum is attained by its own input, run through the network
    x_star = np.clip(milp.values(model.net.inputs), region.lo, region.hi)
    assert region.margin(net.forward(x_star))[0] == pytest.approx(milp.value, abs=1e-5)
    samples = region.lo + (region.hi - region.lo) * rng.random((4000, 4))
    assert region.margin(net.forward(samples)).min() >= milp.bound - 1e-9
