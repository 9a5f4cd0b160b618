"""``mipcert export NET PROP --format lp|mps -o FILE``: the verification model for any solver.

Objective: minimise the safety margin, so the property holds (``unsat``) iff the optimum is
> 0 and a counterexample exists iff it is < 0 (= 0 is a boundary witness). A property with
several input regions gives one file per region, ``FILE`` stem + ``.r{i}``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_solver_options, load_problem


def register(sub) -> None:
    p = sub.add_parser("export", help="write the verification MILP/LP as .lp or .mps")
    p.add_argument("paths", nargs="+", metavar="FILE", help="NET.onnx PROP.vnnlib")
    p.add_argument("--network", action="append", metavar="NAME=NET.onnx", help=argparse.SUPPRESS)
    p.add_argument("--format", choices=["lp", "mps"], default=None,
                   help="file format (default: from the suffix of -o)")
    p.add_argument("-o", "--output", required=True, help="output file")
    add_solver_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..verify.export import margin_model
    from ..errors import InputError

    network, spec, _ = load_problem(args)
    out = Path(args.output)
    fmt = args.format or out.suffix.lstrip(".").lower()
    if fmt not in ("lp", "mps"):
        raise InputError(f"cannot tell the format of {out}: use --format lp or --format mps")
    from ..solve import write_model

    paths = [out] if len(spec.regions) == 1 else \
        [out.with_name(f"{out.stem}.r{i}{out.suffix}") for i in range(len(spec.regions))]
    models = [margin_model(network, region, args.relaxation, args.bounds,
                          device=args.device)
              for region in spec.regions]
    written = []
    try:
        for model, path in zip(models, paths):
            write_model(model, path, fmt)
            written.append(path)
    except BaseException:       # all regions or none: no partial set of files
        for path in written:
            path.unlink(missing_ok=True)
        raise
    for path in written:
        print(path)
    return 0
