"""``mipcert agt`` (certify a training run) and ``mipcert train`` (replay the nominal run).

The library is imported inside the run functions, so that loading the CLI stays cheap
(torch is only imported by the commands that need it).
"""
from __future__ import annotations

import argparse
import json
import sys

from ..relaxation import AGT_METHODS as METHODS
from ._common import device_name, seconds


def add_mip_options(p) -> None:
    """Options shared by ``agt`` and ``agt-table`` for the optimisation methods."""
    p.add_argument("--solver", choices=["highs", "scip", "gurobi"], default=None,
                   help="default: highs for lp/milp, scip for qcp/miqcp when the model has "
                        "products of two continuous variables (else highs)")
    p.add_argument("--time-limit", type=seconds, default=None, metavar="S",
                   help="seconds per solve (a limit gives the proven dual bound, never "
                        "an incumbent)")
    p.add_argument("--workers", type=int, default=None,
                   help="local worker processes for the independent solves (default: one "
                        "per CPU; 1 runs them in this process)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the solves on a Dask distributed cluster (tcp://host:port)")
    p.add_argument("--tighten-every", type=int, default=1, metavar="N",
                   help="inside a window prove the box of every N-th step (default 1: every "
                        "step; larger saves solves, the boxes handed on are looser)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def workers_of(args) -> int:
    """``--workers``, defaulting to one local process per CPU."""
    if args.workers is not None:
        return args.workers
    from ..solve.fanout import default_workers
    return default_workers()


def progress_printer(args):
    if getattr(args, "quiet", False):
        return None
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "agt", help="Abstract Gradient Training: certify a training run",
        description="Bound every parameter vector an SGD run can reach under the instance's "
                    "perturbation model (interval AGT, or an LP/QCP/MILP/MIQCP model of the "
                    "run with rolling-horizon windows), and certify test predictions.")
    p.add_argument("instance", help="instance file (TOML), e.g. instances/agt_moons_svm.toml")
    p.add_argument("--method", choices=METHODS, default="ibp",
                   help="ibp (interval AGT, default) or an optimisation method")
    p.add_argument("--horizon", default="full",
                   help="steps per window for the optimisation methods: a number >= 1 or "
                        "'full' (default)")
    p.add_argument("--faces", type=int, default=0, metavar="K",
                   help="add K polytope directions at the end (paper eq. 46)")
    add_mip_options(p)
    p.add_argument("--device", default="cpu", type=device_name,
                   help="cpu or cuda for the interval bounds")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="save the certified-region plot (2-D data)")
    p.set_defaults(func=run_agt)
    t = subparsers.add_parser("train", help="replay the nominal training run of an instance",
                              description="Run only the nominal SGD of an AGT instance.")
    t.add_argument("instance")
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.set_defaults(func=run_train)


def run_agt(args: argparse.Namespace) -> int:
    from ..agt.api import certify_instance
    from ..quiet import stdout_to_stderr

    with stdout_to_stderr():  # solver banners (worker processes too) never reach stdout
        outcome = certify_instance(
            args.instance, method=args.method, device=args.device, horizon=args.horizon,
            solver=args.solver, time_limit=args.time_limit, workers=workers_of(args),
            scheduler=args.scheduler, faces=args.faces, progress=progress_printer(args),
            tighten_every=args.tighten_every)
    plot = None
    if args.plot:
        from ..report.agt_plot import plot_certified_regions
        plot = str(plot_certified_regions(outcome, args.plot))
    if args.json:
        out = outcome.as_json()
        if plot:
            out["plot"] = plot
        print(json.dumps(out))
        return 0
    _render(outcome, plot)
    return 0


def _render(outcome, plot) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    p = outcome.instance.perturbation
    what = "interval AGT" if outcome.method == "ibp" else \
        f"{outcome.method.upper()} AGT, horizon {outcome.extra['horizon']}, solver " \
        f"{outcome.extra['solver']}"
    con.print(f"[bold]{outcome.instance.name}[/bold]: {what} ({outcome.device}), "
              f"{len(outcome.run.batches)} steps, {outcome.run.n_params} "
              f"parameters, perturbation {p.kind} k={p.k}"
              + (f" eps={p.eps}" if p.eps else "") + (f" nu={p.nu}" if p.nu else ""))
    line = f"total width {outcome.result.total_width:.6g}"
    if "interval_total_width" in outcome.extra:
        line += f"  (interval AGT: {outcome.extra['interval_total_width']:.6g})"
    if "paper_ibp_total_width" in outcome.extra and outcome.method == "ibp":
        line += f"  (paper's IBP figure: {outcome.extra['paper_ibp_total_width']})"
    con.print(line)
    if outcome.extra.get("inner_total_width") is not None:
        n = 2 * outcome.run.n_params
        con.print(f"witnesses (the solver's perturbations replayed as training runs) reach "
                  f"{outcome.extra['inner_total_width']:.6g}; {outcome.extra['bounds_attained']}"
                  f" of the {n} bounds attained to 1e-6")
    if "relaxed_loss_gradient" in outcome.extra:
        con.print(f"note: {outcome.extra['relaxed_loss_gradient']}")
    if outcome.method != "ibp":
        _render_windows(con, outcome.extra["windows"])
    tab = Table(title="widest parameters")
    for col in ("parameter", "nominal", "lower", "upper", "width"):
        tab.add_column(col, justify="right")
    names = outcome.run.param_names
    for name, lo, hi, w in outcome.widest():
        tab.add_row(name, f"{outcome.nominal[names.index(name)]:.5g}", f"{lo:.5g}", f"{hi:.5g}",
                    f"{w:.5g}")
    con.print(tab)
    certs = Table(title="certificates (test split)")
    certs.add_column("quantity")
    certs.add_column("value", justify="right")
    for k, v in outcome.certificates.items():
        if k != "stable_mask":
            certs.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    con.print(certs)
    if outcome.privacy:
        pt = Table(title="private prediction (expected accuracy)")
        for col in ("epsilon", "smooth sensitivity (AGT)", "global sensitivity"):
            pt.add_column(col, justify="right")
        for row in outcome.privacy["accuracy"]:
            pt.add_row(f"{row['epsilon']:g}", f"{row['smooth_accuracy']:.4f}",
                       f"{row['global_accuracy']:.4f}")
        con.print(pt)
    if plot:
        con.print(f"plot written to {plot}")
    con.print(f"{outcome.seconds:.3f} s (AGT {outcome.result.seconds:.3f} s)")


def _render_windows(con, windows) -> None:
    from rich.table import Table

    tab = Table(title="windows (min and max of every parameter at the window's end)")
    for col in ("steps", "solves", "optimal", "limit", "fallback", "binaries", "constraints",
                "width", "seconds"):
        tab.add_column(col, justify="right")
    for w in windows:
        st = [s["status"] for s in w["solves"]]
        tab.add_row(f"{w['start']}..{w['stop'] - 1}", str(len(st)),
                    str(sum(s in ("optimal", "constant") for s in st)),
                    str(sum(s in ("time_limit", "interrupted") for s in st)),
                    str(sum(bool(s["note"]) and "interval" in s["note"] for s in w["solves"])),
                    str(w["size"].get("binaries", "")), str(w["size"].get("constraints", "")),
                    f"{w['width']:.6g}", f"{w['seconds']:.2f}")
    con.print(tab)


def run_train(args: argparse.Namespace) -> int:
    from ..agt.api import train_instance

    out = train_instance(args.instance)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['name']}: {len(out['batches'])} steps, {len(out['param_nominal'])} parameters, "
          f"{out['seconds']:.3f} s")
    for k, v in out["metrics"].items():
        print(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    return 0
