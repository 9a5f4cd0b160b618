"""``mipcert agt`` (certify a training run) and ``mipcert train`` (replay the nominal run)."""
from __future__ import annotations

import argparse
import json

from ..agt.api import METHODS, certify_instance, train_instance


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "agt", help="interval Abstract Gradient Training: certify a training run",
        description="Bound every parameter vector an SGD run can reach under the instance's "
                    "perturbation model, and certify test predictions from that box.")
    p.add_argument("instance", help="instance file (TOML), e.g. instances/agt_moons_svm.toml")
    p.add_argument("--method", choices=METHODS, default="ibp")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="save the certified-region plot (2-D data)")
    p.set_defaults(func=run_agt)
    t = subparsers.add_parser("train", help="replay the nominal training run of an instance",
                              description="Run only the nominal SGD of an AGT instance.")
    t.add_argument("instance")
    t.add_argument("--json", action="store_true", help="print one JSON object")
    t.set_defaults(func=run_train)


def run_agt(args: argparse.Namespace) -> int:
    outcome = certify_instance(args.instance, method=args.method, device=args.device)
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
    con.print(f"[bold]{outcome.instance.name}[/bold]: interval AGT ({outcome.method}, "
              f"{outcome.device}), {len(outcome.run.batches)} steps, {outcome.run.n_params} "
              f"parameters, perturbation {p.kind} k={p.k}"
              + (f" eps={p.eps}" if p.eps else "") + (f" nu={p.nu}" if p.nu else ""))
    line = f"total width {outcome.result.total_width:.6g}"
    if "paper_ibp_total_width" in outcome.extra:
        line += f"  (paper's IBP figure: {outcome.extra['paper_ibp_total_width']})"
    con.print(line)
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


def run_train(args: argparse.Namespace) -> int:
    out = train_instance(args.instance)
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{out['name']}: {len(out['batches'])} steps, {len(out['param_nominal'])} parameters, "
          f"{out['seconds']:.3f} s")
    for k, v in out["metrics"].items():
        print(f"  {k}: {v:.6g}" if isinstance(v, float) else f"  {k}: {v}")
    return 0
