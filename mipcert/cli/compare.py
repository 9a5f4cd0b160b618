"""``mipcert compare INSTANCE.toml``: IBP, CROWN, LP and MILP margin bounds side by side."""
from __future__ import annotations

import sys

from ._common import seconds, write_text_atomic


def add_fanout_options(p) -> None:
    """``--workers`` and ``--scheduler``: where the independent points run."""
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes for the independent points (default: one "
                        "per CPU; 1 runs them in this process)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the points on the Dask distributed cluster whose scheduler is at "
                        "ADDRESS (e.g. tcp://10.0.0.5:8786) instead of local processes")


def register(sub) -> None:
    p = sub.add_parser(
        "compare", help="compare IBP, CROWN, LP and MILP bounds on a property instance",
        description="For every test point and eps of the instance, print the proven lower "
        "bound of the robustness margin and the time of each method, then a summary of "
        "certified / falsified / open points per method (see docs/compare.md).")
    p.add_argument("instance", help="instance file, e.g. instances/digits_mlp_robustness.toml")
    p.add_argument("--methods", default=None, metavar="M1,M2",
                   help="comma-separated subset of ibp,crown,lp,milp (default: the file's)")
    p.add_argument("--first", type=int, default=None, metavar="N",
                   help="use the first N points of the data (default: the file's)")
    p.add_argument("--timeout", type=seconds, default=None,
                   help="seconds per LP and per MILP, one point at one eps (default: the file's)")
    p.add_argument("--solver", default=None, choices=["highs", "scip", "gurobi"],
                   help="LP/MILP solver (default: the file's)")
    p.add_argument("--csv", metavar="FILE.csv", help="save one row per eps, point and method")
    p.add_argument("--json", metavar="FILE.json", help="save the whole result as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="save a plot of the bounds")
    add_fanout_options(p)
    p.add_argument("--plain", action="store_true", help="plain-text tables even with rich")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _progress(quiet: bool):
    """A ``(callback, close)`` pair showing progress on stderr (rich when available)."""
    if quiet:
        return None, lambda: None

    def simple(done, total, text):
        if done == total or done % 10 == 0:
            print(f"[{done}/{total}] {text}", file=sys.stderr, flush=True)

    if not sys.stderr.isatty():  # logs and pipes: plain lines
        return simple, lambda: None
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
            TimeElapsedColumn
    except ImportError:  # pragma: no cover - rich is a dependency
        return simple, lambda: None
    bar = Progress(TextColumn("compare"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.description}"), TimeElapsedColumn(),
                   console=Console(file=sys.stderr), transient=True)
    task = None

    def callback(done, total, text):
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task(text, total=total)
        bar.update(task, completed=done, description=text)

    return callback, bar.stop


def run(args) -> int:
    from ..report.table import csv_text, json_text, render
    from ..verify.compare import compare_instance
    from ..verify.instance import load_instance, parse_methods

    inst = load_instance(args.instance)
    methods = parse_methods(args.methods, "--methods") if args.methods is not None else None
    callback, close = _progress(args.quiet)
    try:
        result = compare_instance(inst, methods=methods, first=args.first,
                                  timeout=args.timeout, solver=args.solver, progress=callback,
                                  workers=args.workers, scheduler=args.scheduler)
    finally:
        close()
    render(result, use_rich=False if args.plain else None)
    if args.csv:
        write_text_atomic(args.csv, csv_text(result))
    if args.json:
        write_text_atomic(args.json, json_text(result, {"instance": str(args.instance)}))
    if args.plot:
        from ..report.plot import plot_compare
        plot_compare(result, args.plot)
    for what, path in (("csv", args.csv), ("json", args.json), ("plot", args.plot)):
        if path and not args.quiet:
            print(f"wrote {what}: {path}", file=sys.stderr)
    return 0
