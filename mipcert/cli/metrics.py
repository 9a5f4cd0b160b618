"""``mipcert metrics INSTANCE.toml``: constraint satisfaction, security and accuracy per radius."""
from __future__ import annotations

import contextlib
import os
import sys

from ._common import seconds, write_text_atomic
from .compare import _progress, add_fanout_options


def register(sub) -> None:
    p = sub.add_parser(
        "metrics", help="satisfaction, security and accuracy of an instance's property per radius",
        description="For every radius of the instance: the fraction of test points where the "
        "exact verifier proves the property (satisfaction), where PGD finds no violation "
        "(security), and the mean fraction of uniform samples of the ball that satisfy it "
        "(accuracy); see docs/properties.md.")
    p.add_argument("instance", help="instance file with a [property] section")
    p.add_argument("--first", type=int, default=None, metavar="N",
                   help="use the first N points of the data (default: the file's)")
    p.add_argument("--samples", type=int, default=1000, metavar="K",
                   help="uniform samples per point and radius for the accuracy (default 1000)")
    p.add_argument("--timeout", type=seconds, default=None,
                   help="seconds for the verifier, one point at one radius (default: the file's)")
    p.add_argument("--solver", default=None, choices=["highs", "scip", "gurobi"],
                   help="MILP solver (default: the file's)")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE.json",
                   help="the whole result as JSON: to FILE, or alone to standard output "
                        "(then nothing else is printed there)")
    p.add_argument("--csv", metavar="FILE.csv", help="save one row per radius and point")
    p.add_argument("--plot", metavar="FILE.png", help="save the metrics against the radius")
    add_fanout_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to file descriptor 1 (solver banners from C code, worker
    processes started meanwhile) to stderr, so that stdout carries only our JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run(args) -> int:
    from ..report.metrics_report import metrics_csv, metrics_table, plot_metrics
    from ..report.table import json_text
    from ..verify.instance import load_instance
    from ..verify.metrics import metrics_instance

    inst = load_instance(args.instance)
    json_stdout = args.json == "-"
    callback, close = _progress(args.quiet)
    guard = stdout_to_stderr() if json_stdout else contextlib.nullcontext()
    with guard:
        try:
            result = metrics_instance(inst, first=args.first, samples=args.samples,
                                      timeout=args.timeout, solver=args.solver,
                                      progress=callback, workers=args.workers,
                                      scheduler=args.scheduler)
        finally:
            close()
        if args.csv:
            write_text_atomic(args.csv, metrics_csv(result))
        if args.plot:
            plot_metrics(result, args.plot)
        if args.json and not json_stdout:
            write_text_atomic(args.json, json_text(result, {"instance": str(args.instance)}))
    if json_stdout:
        sys.stdout.write(json_text(result, {"instance": str(args.instance)}))
    else:
        sys.stdout.write(metrics_table(result))
    for what, path in (("csv", args.csv), ("json", args.json), ("plot", args.plot)):
        if path and path != "-" and not args.quiet:
            print(f"wrote {what}: {path}", file=sys.stderr)
    return 0
