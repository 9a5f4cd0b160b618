"""``mipcert verify NET.onnx PROP.vnnlib`` (VNN-COMP) or ``mipcert verify QUERY.vnnlib --network
N=NET.onnx --timeout S`` (the VNN-LIB 2.0 solver command line): a verdict, sat / unsat /
unknown / timed-out, on the first line of standard output."""
from __future__ import annotations

from ._common import (add_solver_options, dumps, load_problem, natural, seconds,
                      write_text_atomic)


def register(sub) -> None:
    p = sub.add_parser("verify", help="verify a VNNLIB property of an ONNX/npz network",
                       description="Prints sat, unsat, unknown or timed-out on the first line; "
                       "for sat the counterexample follows as ((X_0 v) ... (Y_0 v) ...).")
    p.add_argument("paths", nargs="+", metavar="FILE",
                   help="NET.onnx PROP.vnnlib (VNN-LIB 1.0 or 2.0), or one 2.0 QUERY.vnnlib "
                   "with --network")
    p.add_argument("--network", action="append", metavar="NAME=NET.onnx",
                   help="VNN-LIB 2.0 form: the ONNX file of the network the query names NAME")
    p.add_argument("--timeout", type=seconds, default=None, help="seconds for the whole run")
    add_solver_options(p)
    p.add_argument("--result-file", default=None, help="also write the result here (VNN-COMP form)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p.add_argument("--no-attack", action="store_true", help="skip random/PGD falsification")
    p.add_argument("--no-split", action="store_true",
                   help="skip input splitting (exercise the MILP on low-dimensional inputs)")
    p.add_argument("--seed", type=natural, default=0, help="seed of the falsification")
    p.set_defaults(func=run)


def _verify_graph(args):
    """The graph path's result, or None when the query is not VNN-LIB 2.0."""
    from ..io.vnnlib2 import is_vnnlib2
    from ..io.vnnlib2_query import read_query
    from ..verify.query import verify_query
    from ._common import network_paths

    if args.network:
        query, paths = read_query(args.paths[0]), network_paths(args.network)
    elif len(args.paths) == 2 and is_vnnlib2(args.paths[1]):   # NET QUERY
        query = read_query(args.paths[1])
        own = [n.name for n in query.networks if not n.equal_to]
        if len(own) != 1:
            return None
        paths = {own[0]: args.paths[0]}
    else:
        return None
    return verify_query(query, paths, solver=args.solver,
                        timeout=args.timeout, attack=not args.no_attack, seed=args.seed,
                        threads=args.threads, relaxation=args.relaxation)


def run(args) -> int:
    from ..errors import UnsupportedError
    from ..quiet import stdout_to_stderr
    from ..verify import verify

    # standard output carries the result and nothing else: whatever a solver prints while
    # the work runs (C-level banners included) goes to standard error
    with stdout_to_stderr():
        try:
            network, spec, reference = load_problem(args)
        except UnsupportedError:
            # not a chain network with an input box: a VNN-LIB 2.0 query goes to the
            # general graph path (docs/graph_path.md)
            result = _verify_graph(args)
            if result is None:
                raise
        else:
            result = verify(network, spec, solver=args.solver, relaxation=args.relaxation,
                            bounds=args.bounds, timeout=args.timeout, reference=reference,
                            attack=not args.no_attack, split=not args.no_split,
                            seed=args.seed, threads=args.threads, device=args.device)
    text = result.vnncomp_text()
    if args.result_file:
        write_text_atomic(args.result_file, text + "\n")
    if args.network:   # the VNN-LIB 2.0 command line: the verdict alone (see `supports`)
        text = result.verdict
    print(dumps(result.to_json()) if args.json else text)
    return 0
