"""Helpers shared by sub-commands: loading a network/property pair, atomic text output."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
from pathlib import Path

from ..errors import InputError, UnsupportedError


def seconds(text: str) -> float:
    """argparse type of a time limit: a finite number of seconds > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number of seconds > 0")
    return v


def natural(text: str) -> int:
    """argparse type of a seed or a count: an integer >= 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return v


def device_name(text: str) -> str:
    """argparse type of a torch device: ``cpu``, ``cuda`` or ``cuda:N``."""
    if re.fullmatch(r"cpu|cuda(:\d+)?", text):
        return text
    raise argparse.ArgumentTypeError(f"unknown device {text!r}: use cpu, cuda or cuda:N")


#: argparse destinations that name a file a command writes ('-' or a flag: not a file)
OUTPUT_ARGS = ("output", "result_file", "json", "csv", "plot")


def check_outputs(args) -> None:
    """Before any work: every output file of ``args`` can be created where it is named, so
    that a bad path costs no run and leaves no other file behind. Writes are atomic (a
    temporary file in the same folder, then a rename), so this probes exactly that."""
    for dest in OUTPUT_ARGS:
        value = getattr(args, dest, None)
        if not isinstance(value, str) or value in ("", "-"):
            continue
        flag = "--" + dest.replace("_", "-")
        path = Path(value)
        if path.is_dir():
            raise InputError(f"{flag} {value} is a folder; give a file name")
        parent = path.parent
        if not parent.is_dir():
            raise InputError(f"{flag} {value}: folder {parent} does not exist")
        try:
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
        except OSError as exc:
            raise InputError(f"{flag} {value}: cannot write in {parent} "
                             f"({exc.strerror or exc})") from None
        os.close(fd)
        os.unlink(tmp)


def add_solver_options(p, *, relaxations=("milp", "lp")) -> None:
    p.add_argument("--solver", default="highs", choices=["highs", "scip", "gurobi"],
                   help="MILP/LP solver (default: highs; gurobi needs gurobipy and a licence)")
    p.add_argument("--relaxation", default="milp", choices=list(relaxations),
                   help="milp: exact (Big-M); lp: triangle relaxation, can only prove unsat")
    p.add_argument("--bounds", default="crown", choices=["ibp", "crown", "alpha", "lp"],
                   help="bounds for Big-M constants and early proofs (default: crown, "
                        "refined by alpha-CROWN where it leaves an input-rich region open)")
    p.add_argument("--threads", type=int, default=None, help="solver threads")
    p.add_argument("--device", default=None, type=device_name,
                   help="torch device for bounds: cpu or cuda")


def load_problem(args):
    """``(network, spec, reference)`` from ``args.paths`` and ``args.network``.

    Two forms: ``NET PROP`` (PROP in VNN-LIB 1.0 or 2.0), or the VNN-LIB 2.0 solver
    command line ``QUERY --network NAME=NET`` (the name is the one the query declares).
    """
    from ..io import load_network, onnx_forward, parse_vnnlib
    from ..io.onnx_cache import load_onnx_cached
    from ..io.vnnlib2 import is_vnnlib2, parse_vnnlib2, query_networks

    paths = list(args.paths)
    networks = list(getattr(args, "network", None) or [])
    if networks:
        if len(paths) != 1:
            raise InputError("with --network NAME=NET.onnx give exactly one query file: "
                             "mipcert verify QUERY.vnnlib --network N=NET.onnx")
        named = network_paths(networks)
        declared = query_networks(paths[0])
        if len(declared) != 1:   # the general graph path decides it (cli/verify.py), which
            # also knows that a network equal-to another needs no file of its own
            raise UnsupportedError(f"the query declares {len(declared)} networks; the chain "
                                   "path verifies queries over one network")
        missing = [n for n in declared if n not in named]
        if missing:
            raise InputError(f"the query declares network {missing[0]!r} but no "
                             f"--network {missing[0]}=NET.onnx was given")
        net_path, prop_path = Path(named[declared[0]]), Path(paths[0])
    elif len(paths) == 2:
        net_path, prop_path = (Path(p) for p in paths)
    else:
        raise InputError("expected a network and a property: mipcert verify NET.onnx PROP.vnnlib "
                         "(or mipcert verify QUERY.vnnlib --network N=NET.onnx)")
    # an ONNX file imported and checked against onnxruntime before loads from the cache
    network = load_onnx_cached(net_path) if net_path.suffix.lower() == ".onnx" \
        else load_network(net_path)
    parse = parse_vnnlib2 if networks or is_vnnlib2(prop_path) else parse_vnnlib
    spec = parse(prop_path, n_inputs=network.input_size, n_outputs=network.output_size)
    reference = None
    if net_path.suffix.lower() == ".onnx":
        def reference(x, _p=str(net_path)):
            return onnx_forward(_p, x)
    return network, spec, reference


def network_paths(items) -> dict[str, str]:
    """``--network NAME=PATH`` options as ``{name: path}``; a name given twice is an error."""
    out: dict[str, str] = {}
    for item in items:
        name, path = _name_path(item)
        if name in out and out[name] != path:
            raise InputError(f"--network {name} is given twice ({out[name]} and {path}); "
                             "give each network once")
        out[name] = path
    return out


def _name_path(item: str) -> tuple[str, str]:
    name, sep, path = item.partition("=")
    if not sep or not name or not path:
        raise InputError(f"--network expects NAME=PATH (e.g. --network N=net.onnx), got {item!r}")
    return name, path


def write_text_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    if not path.parent.exists():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _strict(obj):
    """``obj`` with every non-finite float (a bound of +-inf, a NaN) replaced by ``None``:
    JSON has no infinities, and ``Infinity`` breaks strict parsers (jq, JavaScript)."""
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalars, arrays
        return _strict(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj) -> str:
    """One strict JSON document (no ``Infinity`` / ``NaN``) on one line."""
    return json.dumps(_strict(obj), indent=None, allow_nan=False, default=float)
