"""mipcert versus OMLT 1.2: Big-M model build + .lp write time, and time-to-verdict with HiGHS.

The network is a seeded random 784-100-100-10 ReLU MLP (He init: W ~ N(0, 2 / fan_in),
b ~ N(0, 0.01^2)); ``x0`` is a seeded uniform point of [0, 1]^784, its label the predicted
class, and the input set ``[x0 - eps, x0 + eps] ∩ [0, 1]``. Both tools get the same network in
the same run:

* mipcert: CROWN bounds (``compute_bounds`` + ``clause_margin_bounds``), the Pyomo Big-M
  model (``build_network_block`` + ``add_margin_objective``, binaries only for unstable
  neurons), written with ``mipcert.solve.write_model``; verdict with
  ``mipcert.verify.verify(..., solver='highs', timeout=T)`` with and without the attack.
* OMLT: ``NetworkDefinition`` (input bounds = the same box) + ``ReluBigMFormulation`` in an
  ``OmltBlock`` (OMLT bounds every pre-activation by interval arithmetic and puts a binary
  on every ReLU), the same objective, written with Pyomo's LP writer
  (``symbolic_solver_labels=True``); solved with Pyomo's HiGHS interface
  (``pyomo.contrib.solver`` 'highs', falling back to ``appsi_highs``) under the same time limit.

The head-to-head property is targeted robustness against the runner-up class ``t`` at
``x0`` (objective ``min z_label - z_t``; > 0 proves it, an incumbent < 0 is re-run in float64
before it counts as a counterexample). The untargeted property (min over all t of the margin,
via the same choice binaries for both tools) is built and written by both too, and decided by
mipcert. Build and write are timed ``--repeats`` times after one untimed warm-up (its times
are kept as ``cold``); the median is reported. Pyomo/OMLT log output is silenced while timing.

    python benchmarks/omlt_compare.py [--eps 0.02 0.01 0.05] [--repeats 3] [--timeout 120]
    python benchmarks/omlt_compare.py --eps 0.004 --merge     # add a run to the saved JSON

Writes ``benchmarks/results/omlt_compare.json`` (atomically) and prints a table. OMLT is an
optional extra (``pip install -e .[bench]``); without it the script says so and exits 0.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "omlt_compare.json"
SIZES = (784, 100, 100, 10)
# a float64 margin at most this is a counterexample (the spec reads strict as non-strict)
WITNESS_TOL = 0.0


# --------------------------------------------------------------------------- instance
def make_instance(seed: int):
    """Weights ``(out, in)``, biases, ``x0`` in [0, 1]^784 (all float64, seeded)."""
    rng = np.random.default_rng(seed)
    Ws = [rng.normal(0.0, np.sqrt(2.0 / SIZES[i]), (SIZES[i + 1], SIZES[i]))
          for i in range(len(SIZES) - 1)]
    bs = [rng.normal(0.0, 0.01, SIZES[i + 1]) for i in range(len(SIZES) - 1)]
    x0 = rng.uniform(0.0, 1.0, SIZES[0])
    return Ws, bs, x0


def model_counts(model) -> dict:
    import pyomo.environ as pyo

    n_var = n_bin = n_fixed = 0
    for v in model.component_data_objects(pyo.Var, descend_into=True):
        n_var += 1
        n_bin += bool(v.is_binary())
        n_fixed += bool(v.fixed)
    n_con = sum(1 for _ in model.component_data_objects(pyo.Constraint, active=True,
                                                        descend_into=True))
    return {"variables": n_var, "binaries": n_bin, "fixed": n_fixed, "constraints": n_con}


def timed(fn, *args, **kwargs):
    gc.collect()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


# --------------------------------------------------------------------------- mipcert
def mipcert_build(net, region, path):
    """Bounds, model and .lp of one region, each part timed (seconds)."""
    import pyomo.environ as pyo

    from mipcert.bounds import clause_margin_bounds, compute_bounds
    from mipcert.encode import add_margin_objective, build_network_block
    from mipcert.relaxation import Relaxation
    from mipcert.solve import write_model

    b, t_bounds = timed(compute_bounds, net, region.lo, region.hi, "crown")
    (m_lo, m_hi), t_margin = timed(clause_margin_bounds, net, b, region, "crown")

    def build():
        model = pyo.ConcreteModel(name="mipcert_verify")
        model.net = pyo.Block()
        build_network_block(model.net, net, b, Relaxation.MILP)
        add_margin_objective(model, model.net, region, m_lo, m_hi, Relaxation.MILP)
        return model

    model, t_build = timed(build)
    _, t_write = timed(write_model, model, path)
    times = {"bounds": t_bounds, "margin_bounds": t_margin, "build": t_build, "write": t_write}
    info = {"stability": b.stability(), "unstable": b.num_unstable,
            "margin_lo": [float(v) for v in m_lo]}
    return model, times, info


# --------------------------------------------------------------------------- OMLT
def omlt_build(Ws, bs, region, label, targets, path):
    """OMLT Big-M model of the network over ``region`` with ``min margin`` over ``targets``.

    One target: the objective is ``z_label - z_t``. Several: ``margin >= m_t - M (1 - σ_t)``,
    ``Σ σ_t = 1`` (as mipcert does), ``M`` from OMLT's own bounds of the output layer.
    """
    import pyomo.environ as pyo
    from omlt import OmltBlock
    from omlt.neuralnet import NetworkDefinition, ReluBigMFormulation
    from omlt.neuralnet.layer import DenseLayer, InputLayer

    def build():
        box = {i: (float(region.lo[i]), float(region.hi[i])) for i in range(SIZES[0])}
        nd = NetworkDefinition(scaled_input_bounds=box)
        prev = InputLayer([SIZES[0]])
        nd.add_layer(prev)
        last = len(Ws) - 1
        for l, (W, b) in enumerate(zip(Ws, bs)):
            # OMLT's dense layer computes x @ W + b: weights (in, out)
            layer = DenseLayer(prev.output_size, [W.shape[0]], W.T, b,
                               activation="relu" if l < last else "linear")
            nd.add_layer(layer)
            nd.add_edge(prev, layer)
            prev = layer
        m = pyo.ConcreteModel(name="omlt_verify")
        m.nn = OmltBlock()
        m.nn.build_formulation(ReluBigMFormulation(nd))
        out = m.nn.outputs
        if len(targets) == 1:
            m.obj = pyo.Objective(expr=out[label] - out[targets[0]], sense=pyo.minimize)
        else:
            zl = m.nn.layer[id(prev)].zhat
            lo = {t: zl[label].lb - zl[t].ub for t in targets}
            hi = {t: zl[label].ub - zl[t].lb for t in targets}
            lo_all, hi_all = min(lo.values()), max(hi.values())
            big_m = hi_all - lo_all
            m.T = pyo.Set(initialize=targets)
            m.sigma = pyo.Var(m.T, domain=pyo.Binary)
            m.margin = pyo.Var(bounds=(lo_all, hi_all))
            m.choose_one = pyo.Constraint(expr=sum(m.sigma[t] for t in targets) == 1)
            m.ge_clause = pyo.Constraint(m.T, rule=lambda m_, t: m_.margin - (
                out[label] - out[t]) - big_m * m_.sigma[t] >= -big_m)
            m.obj = pyo.Objective(expr=m.margin, sense=pyo.minimize)
        return m

    model, t_build = timed(build)
    _, t_write = timed(model.write, str(path), format="lp",
                       io_options={"symbolic_solver_labels": True})
    return model, {"build": t_build, "write": t_write}


def omlt_inputs(model):
    return [model.nn.inputs[i] for i in range(SIZES[0])]


def pyomo_highs():
    """Pyomo's HiGHS interface: (name, solve(model, time_limit) -> dict)."""
    import pyomo.environ as pyo  # noqa: F401  (registers the solver plugins)

    try:
        from pyomo.contrib.solver.common.factory import SolverFactory

        s = SolverFactory("highs")
        if s is not None and s.available():
            def solve(model, time_limit):
                res = s.solve(model, time_limit=time_limit, load_solutions=False,
                              raise_exception_on_nonoptimal_result=False)
                inc = res.incumbent_objective
                if inc is not None:
                    res.solution_loader.load_vars()
                return {"status": str(res.termination_condition).split(".")[-1],
                        "bound": res.objective_bound, "incumbent": inc}
            return "pyomo.contrib.solver highs", solve
    except ImportError:
        pass
    s = pyo.SolverFactory("appsi_highs")
    s.config.load_solution = False
    s.config.stream_solver = False

    def solve(model, time_limit):
        s.config.time_limit = time_limit
        res = s.solve(model)
        inc = res.best_feasible_objective
        if inc is not None:
            res.solution_loader.load_vars()
        return {"status": str(res.termination_condition).split(".")[-1],
                "bound": res.best_objective_bound, "incumbent": inc}
    return "appsi_highs", solve


# --------------------------------------------------------------------------- running
def median(xs):
    return float(statistics.median(xs))


def run_eps(net, Ws, bs, x0, label, runner_up, eps, args, tmp, highs_solve):
    from mipcert.spec import robustness_spec
    from mipcert.verify import verify

    specs = {
        "targeted": robustness_spec(x0, label, eps, SIZES[-1], target=runner_up,
                                    input_lo=0.0, input_hi=1.0),
        "untargeted": robustness_spec(x0, label, eps, SIZES[-1], input_lo=0.0, input_hi=1.0),
    }
    targets = {"targeted": [runner_up],
               "untargeted": [t for t in range(SIZES[-1]) if t != label]}
    res: dict = {"eps": eps, "properties": {}}
    for prop, spec in specs.items():
        region = spec.regions[0]
        row: dict = {}
        for tool in ("mipcert", "omlt"):
            runs, model, info = [], None, {}
            for r in range(args.repeats + 1):   # run 0: untimed warm-up ("cold")
                path = Path(tmp) / f"{tool}_{prop}_{r}.lp"
                if tool == "mipcert":
                    model, t, info = mipcert_build(net, region, path)
                else:
                    model, t = omlt_build(Ws, bs, region, label, targets[prop], path)
                t["lp_bytes"] = path.stat().st_size
                path.unlink()
                runs.append(t)
            warm = runs[1:]
            keys = [k for k in runs[0] if k != "lp_bytes"]
            med = {k: median([t[k] for t in warm]) for k in keys}
            if tool == "mipcert":
                med["build_incl_bounds"] = median([t["bounds"] + t["margin_bounds"] + t["build"]
                                                  for t in warm])
                med["total"] = median([t["bounds"] + t["margin_bounds"] + t["build"] + t["write"]
                                       for t in warm])
            else:
                med["build_incl_bounds"] = med["build"]
                med["total"] = median([t["build"] + t["write"] for t in warm])
            row[tool] = {"median_seconds": med, "cold_seconds": runs[0],
                         "runs_seconds": warm, "lp_bytes": runs[0]["lp_bytes"],
                         "counts": model_counts(model), **info}
            if tool == "omlt" and prop == "targeted":
                row[tool]["_model"] = model
        mm, om = row["mipcert"]["median_seconds"], row["omlt"]["median_seconds"]
        row["speedup"] = {
            "build_incl_bounds": om["build"] / mm["build_incl_bounds"],
            "build_only": om["build"] / mm["build"],
            "write": om["write"] / mm["write"],
            "total": om["total"] / mm["total"],
        }
        # --- verdicts
        if not args.no_solve:
            row["mipcert"]["verify"] = {}
            for attack in (True, False):
                vr = verify(net, spec, solver="highs", timeout=args.timeout, attack=attack)
                j = vr.to_json()
                j.pop("counterexample", None)
                j["margin"] = vr.margin
                row["mipcert"]["verify"]["attack" if attack else "no_attack"] = j
            if prop == "targeted":
                row["omlt"]["solve"] = omlt_solve(row["omlt"]["_model"], net, region, label,
                                                  runner_up, args.timeout, highs_solve,
                                                  row["omlt"]["median_seconds"]["build"])
        row["omlt"].pop("_model", None)
        res["properties"][prop] = row
    return res


def omlt_solve(model, net, region, label, target, timeout, highs_solve, build_seconds):
    t0 = time.perf_counter()
    out = highs_solve(model, timeout)
    out["seconds"] = time.perf_counter() - t0
    out["seconds_incl_build"] = out["seconds"] + build_seconds
    verdict, witness = "none", None
    if out["bound"] is not None and np.isfinite(out["bound"]) and out["bound"] > 0:
        verdict = "unsat"
    elif out["incumbent"] is not None and out["incumbent"] < 0:
        import pyomo.environ as pyo

        x = np.array([pyo.value(v) for v in omlt_inputs(model)], dtype=np.float64)
        inside = bool(np.all(x >= region.lo - 1e-9) and np.all(x <= region.hi + 1e-9))
        x = np.clip(x, region.lo, region.hi)
        y = net.forward(x)
        margin = float(y[label] - y[target])
        witness = {"inside_box": inside, "float64_margin": margin,
                   "solver_margin": out["incumbent"]}
        verdict = "sat" if margin <= WITNESS_TOL else "unconfirmed incumbent"
    out["verdict"] = verdict
    out["witness"] = witness
    return out


def sanity_same_function(net, Ws, bs, x0, label, runner_up, highs_solve):
    """Both models over the box ``{x0}`` (eps 0) give the float64 margin at ``x0``."""
    import pyomo.environ as pyo

    from mipcert.solve import solve
    from mipcert.spec import robustness_spec

    spec = robustness_spec(x0, label, 0.0, SIZES[-1], target=runner_up, input_lo=0.0,
                           input_hi=1.0)
    region = spec.regions[0]
    y = net.forward(x0)
    ref = float(y[label] - y[runner_up])
    with tempfile.TemporaryDirectory() as tmp:
        mm, _, _ = mipcert_build(net, region, Path(tmp) / "a.lp")
        om, _ = omlt_build(Ws, bs, region, label, [runner_up], Path(tmp) / "b.lp")
    m_out = solve(mm, "highs", time_limit=60)
    o_out = highs_solve(om, 60)
    return {"float64_margin": ref, "mipcert": m_out.value, "omlt": o_out["incumbent"],
            "agree": bool(abs(m_out.value - ref) < 1e-6 and o_out["incumbent"] is not None
                          and abs(o_out["incumbent"] - ref) < 1e-6)}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("mipcert", "omlt", "pyomo", "highspy", "numpy", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, default=float)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fmt(x, nd=3):
    return "-" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))


def print_table(results) -> None:
    for res in results["runs"]:
        print(f"\n=== eps = {res['eps']} ===")
        for prop, row in res["properties"].items():
            print(f"-- {prop} --")
            print(f"{'tool':8} {'bounds':>7} {'build':>7} {'b+b':>7} {'write':>7} {'total':>7}"
                  f" {'cold':>7} {'vars':>6} {'bin':>5} {'cons':>6} {'lp MB':>6}")
            for tool in ("mipcert", "omlt"):
                r = row[tool]
                m = r["median_seconds"]
                c = r["counts"]
                cold = sum(v for k, v in r["cold_seconds"].items() if k != "lp_bytes")
                bnd = m.get("bounds", 0.0) + m.get("margin_bounds", 0.0)
                print(f"{tool:8} {bnd:7.3f} {m['build']:7.3f} {m['build_incl_bounds']:7.3f} "
                      f"{m['write']:7.3f} {m['total']:7.3f} {cold:7.3f} {c['variables']:6d} "
                      f"{c['binaries']:5d} {c['constraints']:6d} {r['lp_bytes'] / 1e6:6.2f}")
            s = row["speedup"]
            print(f"speed-up (OMLT / mipcert): build {s['build_only']:.1f}x, build incl. bounds "
                  f"{s['build_incl_bounds']:.1f}x, write {s['write']:.1f}x, "
                  f"total {s['total']:.1f}x")
            for name, v in row["mipcert"].get("verify", {}).items():
                print(f"mipcert verify ({name:9}): {v['verdict']:9} in {v['seconds']:7.2f} s "
                      f"by {v['decided_by'] or '-':7} bound {fmt(v['bound'])} "
                      f"cex margin {fmt(v['margin'])}")
            if "solve" in row["omlt"]:
                o = row["omlt"]["solve"]
                print(f"OMLT + HiGHS           : {o['verdict']:9} in {o['seconds']:7.2f} s "
                      f"(+build {o['seconds_incl_build']:.2f} s) status {o['status']} "
                      f"bound {fmt(o['bound'])} incumbent {fmt(o['incumbent'])}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.01, 0.05])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-solve", action="store_true", help="only time build and write")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--merge", action="store_true",
                   help="keep the runs of other eps already in --out (same seed) and add these")
    args = p.parse_args(argv)

    try:
        import omlt  # noqa: F401
    except ImportError:
        print("omlt is not installed: this benchmark compares against OMLT 1.2, an optional "
              "extra. Install it with  pip install -e '.[bench]'  (or pip install 'omlt==1.2.*'). "
              "Nothing was run.")
        return 0
    # OMLT warns (W1002) once per input var that its initial value 0 lies outside the box;
    # printing thousands of lines would time the terminal, not OMLT.
    for name in ("pyomo", "omlt"):
        logging.getLogger(name).setLevel(logging.ERROR)

    from mipcert.network import mlp

    Ws, bs, x0 = make_instance(args.seed)
    net = mlp(Ws, bs)
    y0 = net.forward(x0)
    order = np.argsort(y0)[::-1]
    label, runner_up = int(order[0]), int(order[1])
    solver_name, highs_solve = pyomo_highs()
    print(f"network {'-'.join(map(str, SIZES))} seed {args.seed}: label {label}, runner-up "
          f"{runner_up}, margin at x0 {y0[label] - y0[runner_up]:.4f}; OMLT solver: {solver_name}")

    results = {
        "benchmark": "omlt_compare",
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
        "network": {"sizes": list(SIZES), "seed": args.seed,
                    "init": "W ~ N(0, 2/fan_in), b ~ N(0, 0.01^2), x0 ~ U[0,1]^784",
                    "label": label, "runner_up": runner_up,
                    "logits_x0": [float(v) for v in y0]},
        "settings": {"repeats": args.repeats, "timeout": args.timeout, "bounds": "crown",
                     "omlt_formulation": "ReluBigMFormulation", "omlt_solver": solver_name,
                     "mipcert_lp_writer": "mipcert.solve.write_model (HiGHS writer)",
                     "omlt_lp_writer": "pyomo model.write(lp, symbolic_solver_labels=True)",
                     "threads": "solver default for both"},
        "runs": [],
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for eps in args.eps:
            t_eps = time.perf_counter()
            res = run_eps(net, Ws, bs, x0, label, runner_up, eps, args, tmp, highs_solve)
            res["wall_seconds"] = time.perf_counter() - t_eps
            res["command"] = results["command"]
            results["runs"].append(res)
            print(f"eps {eps} done in {res['wall_seconds']:.1f} s")
    # after the timed runs, so the first "cold" run is the first call in this process
    results["sanity"] = sanity_same_function(net, Ws, bs, x0, label, runner_up, highs_solve)
    print(f"same function at x0 (eps 0, both models): {results['sanity']}")
    results["wall_seconds"] = time.perf_counter() - t_start
    if args.merge and args.out.exists():
        prev = json.loads(args.out.read_text())
        if prev.get("network", {}).get("seed") == args.seed:
            done = {r["eps"] for r in results["runs"]}
            results["runs"] = [r for r in prev["runs"] if r["eps"] not in done] + results["runs"]
            results["command"] = "; ".join([prev["command"], results["command"]])
            results["wall_seconds"] += prev.get("wall_seconds", 0.0)
    print_table(results)
    write_json_atomic(args.out, results)
    print(f"\nwrote {args.out} (total {results['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
