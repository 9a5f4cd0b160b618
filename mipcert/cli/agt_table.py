"""``mipcert agt-table``: the AGT paper's relaxation table (method x horizon) and plot."""
from __future__ import annotations

import argparse
import json

from .agt import add_mip_options, progress_printer, workers_of


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "agt-table", help="total width and seconds of every AGT method and horizon",
        description="Run interval AGT and the LP / QCP / MILP / MIQCP models of a training run "
                    "for several rolling horizons and print the paper's table (section 8.2).")
    p.add_argument("instance")
    p.add_argument("--methods", default="ibp,lp,qcp,milp,miqcp",
                   help="comma-separated, from ibp,lp,qcp,milp,miqcp")
    p.add_argument("--horizons", default="1,3,5,7,full",
                   help="comma-separated window lengths (steps) or 'full'")
    p.add_argument("--exact-check", action="store_true",
                   help="retrain with every admissible perturbation (k <= 2) and compare")
    p.add_argument("--csv", metavar="FILE")
    p.add_argument("--json", metavar="FILE", help="write the table as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="width against time (Figure 6(c))")
    add_mip_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..agt.mip_agt import METHODS
    from ..agt.table import parse_list, plot_table, relaxation_table
    from ._common import write_text_atomic

    methods = parse_list(args.methods, METHODS, "method")
    horizons = parse_list(args.horizons, None, "horizon")
    from ..quiet import stdout_to_stderr

    with stdout_to_stderr():
        table = relaxation_table(args.instance, methods, horizons, args.solver,
                                 args.time_limit, workers_of(args), args.scheduler,
                                 args.exact_check, progress_printer(args),
                                 args.tighten_every)
    if args.json:
        write_text_atomic(args.json, json.dumps(table))
    if args.csv:
        cols = ["method", "horizon", "total_width", "seconds", "fallbacks", "paper_width",
                "paper_seconds", "attained_lower", "attained_upper", "contains_hull"]
        lines = [",".join(cols)] + [",".join("" if r.get(c) is None else str(r.get(c))
                                             for c in cols) for r in table["rows"]]
        write_text_atomic(args.csv, "\n".join(lines) + "\n")
    if args.plot:
        plot_table(table, args.plot)
    _render(table, args)
    return 0


def _render(table, args) -> None:
    from rich.console import Console
    from rich.table import Table

    import sys
    con = Console(width=None if sys.stdout.isatty() else 140)
    p = table["perturbation"]
    title = (f"{table['name']}: {table['steps']} steps, {table['n_params']} parameters, "
             f"{p['kind']} k={p['k']}")
    tab = Table(title=title)
    cols = ["method", "horizon", "total width", "seconds", "fallbacks"]
    hull = table.get("hull")
    if hull:
        cols += ["bounds attained (lo/hi)", "contains hull"]
    witnesses = any("witness_width" in r for r in table["rows"])
    if witnesses:
        cols += ["witness width", "attained by witness"]
    if any("paper_width" in r for r in table["rows"]):
        cols += ["paper width (s)"]
    for c in cols:
        tab.add_column(c, justify="right")
    for r in table["rows"]:
        twin = r.get("same_model_as")
        row = [r["method"].upper() + (f" (= {twin.upper()})" if twin else ""), r["horizon"],
               f"{r['total_width']:.6g}", f"{r['seconds']:.2f}", str(r["fallbacks"])]
        if hull:
            row += [f"{r['attained_lower']}/{r['attained_upper']} of {table['n_params']}",
                    "yes" if r["contains_hull"] else "NO"]
        if witnesses:
            row += ([f"{r['witness_width']:.6g}", f"{r['witness_attained']} of "
                     f"{2 * table['n_params']}"] if "witness_width" in r else ["", ""])
        if "paper width (s)" in cols:
            row.append(f"{r['paper_width']} ({r['paper_seconds']})" if "paper_width" in r else "")
        tab.add_row(*row)
    con.print(tab)
    if hull:
        con.print(f"true hull (enumeration of {hull['n_runs']} runs): total width "
                  f"{hull['total_width']:.6g}")
    if any(r.get("same_model_as") for r in table["rows"]):
        con.print("(= X): no product of two continuous variables, so this method builds X's "
                  "model; solved once, shown twice")
    if witnesses:
        con.print("witness: the solver's incumbent perturbation replayed as a real training "
                  "run (windows from step 0): an inner box, attained bound by bound")
    if "paper_note" in table:
        con.print(f"note: {table['paper_note']}")
    for what in ("json", "csv", "plot"):
        if getattr(args, what):
            con.print(f"{what} written to {getattr(args, what)}")
