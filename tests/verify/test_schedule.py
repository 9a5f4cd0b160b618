"""The verify scheduler: MILP early on small networks, round-robin clause slices, resumable
input splitting, time per phase, and sound verdicts on download-free stand-ins with the
shapes of ACAS Xu (5-50x6-5), mnist 256x2/x4/x6 and small control networks."""
import numpy as np
import pytest

from mipcert.network import mlp
from mipcert.spec import Clause, Region, Specification
from mipcert.verify import verify
from mipcert.verify.branch import SplitState, input_split
from mipcert.verify.schedule import RegionRun
from mipcert.verify.verifier import Witness


def random_net(sizes, seed, bias=0.1):
    rng = np.random.default_rng(seed)
    return mlp([rng.normal(size=(o, i)) * np.sqrt(2.0 / i) for i, o in zip(sizes[:-1], sizes[1:])],
               [rng.normal(size=o) * bias for o in sizes[1:]])


def robustness(net, x0, eps, lo=-np.inf, hi=np.inf):
    """Untargeted: unsafe iff some other class reaches the predicted one (one clause each)."""
    y0 = net.forward(x0)
    label, m = int(np.argmax(y0)), y0.size
    clauses = []
    for j in range(m):
        if j != label:
            C = np.zeros((1, m))
            C[0, label], C[0, j] = 1.0, -1.0
            clauses.append(Clause(C, [0.0]))
    box_lo, box_hi = np.maximum(x0 - eps, lo), np.minimum(x0 + eps, hi)
    return Specification([Region(box_lo, box_hi, clauses)], x0.size, m)


def check_sound(net, spec, result, samples=4000):
    """A sat witness fails the property in float64; an unsat bound holds on samples."""
    region = spec.regions[0]
    if result.verdict == "sat":
        x, y = result.counterexample
        assert region.contains(x, tol=1e-12)[0]
        assert region.margin(net.forward(x))[0] <= 0
    xs = region.lo + (region.hi - region.lo) * np.random.default_rng(1).random((samples, region.lo.size))
    margins = region.margin(net.forward(xs))
    if result.verdict == "unsat":
        assert margins.min() >= result.bound
    if margins.min() <= 0:
        assert result.verdict != "unsat"


def alpha_from_the_first_round(monkeypatch):
    """Input splitting calls alpha-CROWN (and hands the boxes it fails on to the leaf MILPs)
    on every open box from the first round on, without a time share."""
    import mipcert.verify.branch as branch

    monkeypatch.setattr(branch, "ALPHA_AFTER", 0.0)
    monkeypatch.setattr(branch, "ALPHA_SHARE", 100.0)
    monkeypatch.setattr(branch, "ALPHA_DEPTH_PER_INPUT", 0)


class _Milp:
    def __init__(self, engine=None, seconds=0.0):
        self.engine, self.seconds, self.open = engine, seconds, [0]


def test_turn_rule_follows_measured_progress():
    """The rule of verify/schedule.py on measured states (splitting seconds, volume proved)."""
    rule = RegionRun._next_is_milp
    state = SplitState(*(np.zeros(0),) * 4, proved_fraction=0.5, seconds=1.0)
    # no splitting possible, or splitting out of budget: the MILP
    assert rule(None, False, None, state, _Milp(), False)
    assert rule(None, True, "budget", state, _Milp(), False)
    # splitting goes first, always
    assert not rule(None, True, None, None, _Milp(), True)
    # a small network's MILP right after the first slice, even while splitting progresses
    assert rule(None, True, "timeout", state, _Milp(), True)
    # splitting projected to finish within 1.5x its time so far keeps the turn
    assert not rule(None, True, "timeout", state, _Milp(engine=1), True)
    # no progress: the MILP gets turns until it has had half of splitting's time
    stalled = SplitState(*(np.zeros(0),) * 4, proved_fraction=0.0, seconds=4.0)
    assert rule(None, True, "timeout", stalled, _Milp(engine=1, seconds=1.0), False)
    assert not rule(None, True, "timeout", stalled, _Milp(engine=1, seconds=2.5), False)


def test_split_resumes_where_it_stopped_and_measures_progress():
    net = random_net([3, 20, 20, 3], seed=2)
    spec = robustness(net, np.array([0.1, 0.2, -0.1]), 0.25)
    region = spec.regions[0]
    check = Witness(net, region)
    one = input_split(net, region, check=check, max_boxes=200_000)
    state, fractions, status = None, [], "timeout"
    for _ in range(10_000):
        res = input_split(net, region, check=check, max_boxes=200_000, state=state,
                          deadline=0.0)   # one round per call
        state, status = res.state, res.status
        fractions.append(state.proved_fraction)
        if status != "timeout":
            break
    assert status == one.status
    assert all(b >= a - 1e-12 for a, b in zip(fractions, fractions[1:]))
    if status == "proved":
        assert fractions[-1] == 1.0 and res.bound == pytest.approx(one.bound)


def test_clause_milps_take_round_robin_slices():
    """Every open clause gets a slice before any clause gets a second (doubled) one."""
    net = random_net([20, 64, 64, 10], seed=5)
    x0 = np.random.default_rng(0).uniform(0, 1, 20)
    spec = robustness(net, x0, 0.08, 0.0, 1.0)
    res = verify(net, spec, attack=False, timeout=20)
    solves = res.stats["regions"][0].get("solves", [])
    slices = [s["slice"] for s in solves]
    assert slices == sorted(slices)
    for value in set(slices):
        ks = [s["clause"] for s in solves if s["slice"] == value]
        assert len(ks) == len(set(ks))
    check_sound(net, spec, res)


STAND_INS = [
    ("acasxu-5-50x6-5", [5] + [50] * 6 + [5], 0.05, None),
    ("control-4-32x2-2", [4, 32, 32, 2], 0.1, None),
    ("control-6-64x3-3", [6, 64, 64, 64, 3], 0.05, None),
    ("mnist-256x2", [784, 256, 256, 10], 0.004, (0.0, 1.0)),
    ("mnist-256x4", [784] + [256] * 4 + [10], 0.002, (0.0, 1.0)),
    ("mnist-256x6", [784] + [256] * 6 + [10], 0.001, (0.0, 1.0)),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, sizes, eps, clip", STAND_INS, ids=[s[0] for s in STAND_INS])
def test_stand_ins_give_sound_verdicts_and_report_phases(name, sizes, eps, clip):
    net = random_net(sizes, seed=len(sizes))
    rng = np.random.default_rng(3)
    x0 = rng.uniform(0, 1, sizes[0]) if clip else rng.uniform(-0.5, 0.5, sizes[0])
    spec = robustness(net, x0, eps, *(clip or (-np.inf, np.inf)))
    res = verify(net, spec, timeout=20)
    assert res.verdict in ("sat", "unsat", "unknown", "timed-out")
    phases = res.stats["phases"]
    assert "bounds" in phases and all(v >= 0 for v in phases.values())
    assert sum(phases.values()) <= res.seconds + 0.5
    check_sound(net, spec, res, samples=2000)


def test_cut_choice_breaks_plateaus_instead_of_following_rounding_noise():
    """Children bounds ``(B=3, n=3, 2)``: the best worse child wins; a gain at rounding-noise
    level (1e-12) is no gain, so the better child decides, and on a full plateau the widest
    input (once one input was halved 40 times while nothing was proved)."""
    from mipcert.verify.branch import _best_cut

    p = -0.0978
    lb = np.array([
        [[p, p], [-0.03, -0.02], [p, -0.05]],            # a real gain: input 1
        [[p + 1e-12, p + 1e-12], [p, -0.02], [p, p]],   # noise on input 0; input 1 helps one side
        [[p + 1e-12, p], [p, p], [p, p]],               # a plateau: the widest, input 2
    ])
    width = np.array([[1.0, 0.5, 0.5], [1e-9, 0.5, 0.5], [1e-9, 0.25, 0.5]])
    assert _best_cut(lb, width, np.zeros(3)).tolist() == [1, 1, 2]
    # a sliver of 1e-5 on a parent at -0.17 is no progress either: the better child decides
    q = -0.17
    lb = np.array([[[q + 1e-5, q + 1e-5], [q, -0.02], [q, q]]])
    assert _best_cut(lb, np.ones((1, 3)), np.array([q])).tolist() == [1]


@pytest.mark.parametrize("seed, eps", [(0, 0.2), (1, 0.1), (2, 0.1), (3, 0.2), (4, 0.1), (5, 0.1)])
def test_alpha_rescue_of_stalled_boxes_keeps_the_search_sound(monkeypatch, seed, eps):
    """With alpha-CROWN bounding (and passing its block bounds down to the children of) the
    open boxes from the first round on, input splitting reaches the verdict that CROWN alone
    reaches, a proved bound holds on 20 000 samples, and a region on which CROWN alone
    stalls (seed 0: 20 000 boxes, nothing settled) is proved, in fewer boxes."""
    net = random_net([5, 24, 24, 24, 4], seed=seed)
    spec = robustness(net, np.random.default_rng(seed).uniform(-0.5, 0.5, 5), eps)
    region = spec.regions[0]
    check = Witness(net, region)
    plain = input_split(net, region, check=check, max_boxes=20_000)
    alpha_from_the_first_round(monkeypatch)
    rescued = input_split(net, region, check=check, max_boxes=20_000)
    assert rescued.status in ("proved", "witness")
    if plain.status != "budget":
        assert rescued.status == plain.status
    if rescued.status == "proved":
        xs = region.lo + (region.hi - region.lo) * np.random.default_rng(1).random((20_000, 5))
        assert region.margin(net.forward(xs)).min() >= rescued.bound
    if seed == 0:
        assert plain.status == "budget" and rescued.status == "proved"
        assert 0 < rescued.state.alpha_boxes and rescued.boxes < 2_000


def test_leaf_milp_of_a_box_proves_with_a_sound_bound_or_confirms_a_witness():
    """The exact solve of one input-split box: on boxes where sampling finds the property
    violated it returns a witness that fails the property in float64; elsewhere, when it
    says proved, its bound holds on 20 000 samples of the box."""
    from mipcert.bounds import compute_bounds
    from mipcert.encode import Relaxation
    import threading

    from mipcert.verify.schedule import _LeafMilp

    seen = set()
    for seed in range(8):
        net = random_net([4, 12, 12, 3], seed=seed)
        rng = np.random.default_rng(seed)
        region = robustness(net, rng.uniform(-0.5, 0.5, 4), 0.3).regions[0]
        check = Witness(net, region)
        leaf = _LeafMilp(net, region, check, Relaxation.MILP, "highs", threads=1)
        b = compute_bounds(net, region.lo, region.hi, "crown")
        status, bound = leaf(region.lo, region.hi, b.pre, threading.Event())()
        xs = region.lo + (region.hi - region.lo) * rng.random((20_000, 4))
        sampled = region.margin(net.forward(xs)).min()
        seen.add(status)
        if status == "witness":
            x, _, margin = check.found
            assert region.contains(x, tol=1e-12)[0] and margin <= 0
        else:
            assert status == "proved" and sampled > 0
            assert bound <= sampled + 1e-7
        if sampled <= 0:
            assert status == "witness"
    assert seen == {"witness", "proved"}   # both branches were exercised


@pytest.mark.slow
@pytest.mark.parametrize("seed, eps", [(0, 0.2), (1, 0.1), (2, 0.3), (3, 0.2)])
def test_input_splitting_with_leaf_milps_agrees_with_the_milp(monkeypatch, seed, eps):
    """Leaf MILPs on every box alpha-CROWN fails on, from the first round: ``verify`` (no
    attack, so that witnesses come from the search) reaches the plain MILP's verdict, and
    the leaves did run."""
    net = random_net([5, 24, 24, 24, 4], seed=seed)
    spec = robustness(net, np.random.default_rng(seed).uniform(-0.5, 0.5, 5), eps)
    truth = verify(net, spec, split=False, attack=False, timeout=120, threads=1)
    alpha_from_the_first_round(monkeypatch)
    res = verify(net, spec, attack=False, timeout=120, threads=1)
    assert truth.verdict in ("sat", "unsat") and res.verdict == truth.verdict
    check_sound(net, spec, res, samples=20_000)
    if seed == 0:   # a region on which the leaves settle boxes alpha-CROWN could not
        split = res.stats["regions"][0]["split"]
        assert res.decided_by == "split" and split["milp_proved"] > 0


def test_boxes_the_leaf_milp_cannot_settle_go_back_to_splitting(monkeypatch):
    """With box MILPs that always run out of time (a 1e-4 s limit), every box handed to the
    worker comes back and is split on: the search reaches the verdict it reaches without
    leaves, its bound holds on samples, and nothing is left with the worker."""
    import threading

    import mipcert.verify.schedule as schedule
    from mipcert.encode import Relaxation
    from mipcert.verify.schedule import _LeafMilp

    net = random_net([5, 24, 24, 24, 4], seed=0)
    spec = robustness(net, np.random.default_rng(0).uniform(-0.5, 0.5, 5), 0.2)
    region = spec.regions[0]
    alpha_from_the_first_round(monkeypatch)
    monkeypatch.setattr(schedule, "LEAF_TIME_LIMIT", 1e-4)
    check = Witness(net, region)
    leaf = _LeafMilp(net, region, check, Relaxation.MILP, "highs", threads=1)
    res = input_split(net, region, check=check, max_boxes=20_000, leaf=leaf)
    st = res.state
    assert res.status == "proved" and not st.pending
    assert st.leaf_boxes > 0 and st.leaf_proved < st.leaf_boxes   # some came back
    xs = region.lo + (region.hi - region.lo) * np.random.default_rng(1).random((20_000, 5))
    assert region.margin(net.forward(xs)).min() >= res.bound
    st.close()
    assert st.worker is None and st.stop.is_set()
    assert isinstance(st.stop, type(threading.Event()))
