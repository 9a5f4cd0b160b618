"""``mipcert export-agt``: one window of an AGT model as an .lp / .mps file."""
from __future__ import annotations

import argparse
import re


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-agt", help="write one AGT window model (with an objective) as .lp or .mps",
        description="Build the model of one window of the training run (the same model "
                    "`mipcert agt` solves, with interval AGT bounds) and write it for any "
                    "solver: quadratic constraints included for qcp / miqcp.")
    p.add_argument("instance")
    p.add_argument("--method", choices=["lp", "qcp", "milp", "miqcp"], default="milp")
    p.add_argument("--horizon", default="full", help="steps per window, or 'full'")
    p.add_argument("--window", type=int, default=0, help="which window (0 = the first)")
    p.add_argument("--objective", default=None,
                   help="e.g. 'max W0[0,3]' or 'min b1[0]' (default: min of the first parameter)")
    p.add_argument("--format", choices=["lp", "mps"], default=None,
                   help="default: from the file suffix")
    p.add_argument("-o", "--output", required=True, metavar="FILE")
    p.set_defaults(func=run)


def parse_objective(text, names) -> tuple[str, int]:
    """``'max W0[0,3]'`` -> ``('max', index)``."""
    from ..errors import InputError
    if text is None:
        return "min", 0
    m = re.fullmatch(r"\s*(min|max)\s+(\S+)\s*", text)
    if not m:
        raise InputError(f"--objective {text!r}: write 'min NAME' or 'max NAME', e.g. 'max W0[0,3]'")
    name = m.group(2).replace(" ", "")
    if name not in names:
        raise InputError(f"--objective: no parameter {name!r}; the parameters are "
                         f"{', '.join(names[:6])}{', ...' if len(names) > 6 else ''}")
    return m.group(1), names.index(name)


def run(args: argparse.Namespace) -> int:
    import pyomo.environ as pyo

    from ..agt.api import _as_instance
    from ..agt.data import load_dataset
    from ..agt.interval_agt import interval_boxes
    from ..agt.mip_agt import parse_horizon
    from ..agt.run import build_run
    from ..agt.trajectory import build_window
    from ..errors import InputError
    from ..solve import write_model

    inst = _as_instance(args.instance)
    run_ = build_run(inst, load_dataset(inst.data))
    T = len(run_.batches)
    H = parse_horizon(args.horizon, T)
    n_windows = -(-T // H)
    if not 0 <= args.window < n_windows:
        raise InputError(f"--window {args.window}: horizon {H} gives windows 0..{n_windows - 1}")
    sense, j = parse_objective(args.objective, run_.param_names)
    start = args.window * H
    stop = min(start + H, T)
    boxes = interval_boxes(run_, inst.perturbation)
    w = build_window(run_, inst.perturbation, args.method, start, stop, boxes)
    item = w.theta_end.items[j]
    if isinstance(item, float):
        raise InputError(f"{run_.param_names[j]} is a constant after step {stop - 1} (no "
                         "perturbation reaches it): nothing to optimise")
    w.model.objective = pyo.Objective(expr=item, sense=pyo.minimize if sense == "min"
                                      else pyo.maximize)
    path = write_model(w.model, args.output, args.format)
    size = w.size()
    print(f"wrote {path}: steps {start}..{stop - 1}, {sense} {run_.param_names[j]}, "
          f"{size['variables']} variables ({size['binaries']} binary), {size['constraints']} "
          f"constraints ({size['quadratic_constraints']} quadratic)")
    return 0
