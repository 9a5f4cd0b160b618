"""``mipcert repair INSTANCE.toml``: adversary correction with before/after tables."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import InputError
from ._common import dumps

#: exit status when the correction produced no network (e.g. an infeasible QP)
EXIT_NO_NETWORK = 1


def register(sub) -> None:
    p = sub.add_parser("repair", help="correct a network on adversarial examples (cutting-plane "
                       "QP) and compare it with PGD fine-tuning, certified before and after",
                       description="Runs the instance's correction(s) and baseline and prints "
                       "one table; see docs/repair.md.")
    p.add_argument("instance", metavar="INSTANCE.toml")
    p.add_argument("--json", action="store_true", help="print one JSON document instead")
    p.add_argument("--plot", metavar="F.png", help="draw the pool (violation vs clean loss)")
    p.add_argument("-o", "--output", metavar="corrected.onnx",
                   help="write the corrected network (the pick of the first norm) as ONNX")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def _check_output(path, suffix: str, what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() != suffix:   # the folder is probed by cli.check_outputs
        raise InputError(f"{what} {p} must end in {suffix}")
    return p


def run(args) -> int:
    from ..io import save_onnx
    from ..repair.experiment import run_experiment
    from ..repair.instance import load_instance
    from ..report.repair_report import plot_pool, render_table

    inst = load_instance(args.instance)
    out = _check_output(args.output, ".onnx", "-o")
    plot = _check_output(args.plot, ".png", "--plot")

    def progress(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    from ..quiet import stdout_to_stderr

    with stdout_to_stderr():
        report = run_experiment(inst, progress=progress)
        first = report.corrections[inst.norms[0]]
        network = first.network()
        written = None
        if out is not None and network is not None:
            written = str(save_onnx(network, out))
        if plot is not None and network is not None:   # no correction: no file at all
            plot_pool(report, plot)
    if args.json:
        doc = report.as_json()
        doc["output"] = written
        print(dumps(doc))
    else:
        print(render_table(report))
        if written:
            print(f"corrected network ({inst.norms[0]}, pool member "
                  f"{first.pick_index()}) written to {written}")
    if network is None:
        print(f"error: no corrected network: {first.status} ({first.message})"
              + ("; nothing written" if out is not None or plot is not None else ""),
              file=sys.stderr)
        return EXIT_NO_NETWORK
    return 0
