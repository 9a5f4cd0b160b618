"""Helpers shared by sub-commands: loading a network/property pair, atomic text output."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from ..errors import InputError


def add_solver_options(p, *, relaxations=("milp", "lp")) -> None:
    p.add_argument("--solver", default="highs", choices=["highs", "scip", "gurobi"],
                   help="MILP/LP solver (default: highs; gurobi needs gurobipy and a licence)")
    p.add_argument("--relaxation", default="milp", choices=list(relaxations),
                   help="milp: exact (Big-M); lp: triangle relaxation, can only prove unsat")
    p.add_argument("--bounds", default="crown", choices=["ibp", "crown", "lp"],
                   help="bounds for Big-M constants and early proofs (default: crown)")
    p.add_argument("--threads", type=int, default=None, help="solver threads")
    p.add_argument("--device", default=None, help="torch device for bounds: cpu or cuda")


def load_problem(args):
    """``(network, spec, reference)`` from ``args.paths`` (NET PROP) or a VNN-LIB 2.0 query."""
    from ..io import load_network, onnx_forward, parse_vnnlib
    from ..io.onnx_cache import load_onnx_cached

    paths = list(args.paths)
    networks = list(getattr(args, "network", None) or [])
    if networks:
        raise InputError("VNN-LIB 2.0 queries with --network NAME=NET.onnx are not supported yet: "
                         "pass the network and the property as `mipcert verify NET.onnx PROP.vnnlib`")
    if len(paths) != 2:
        raise InputError("expected a network and a property: mipcert verify NET.onnx PROP.vnnlib")
    net_path, prop_path = (Path(p) for p in paths)
    # an ONNX file imported and checked against onnxruntime before loads from the cache
    network = load_onnx_cached(net_path) if net_path.suffix.lower() == ".onnx" \
        else load_network(net_path)
    spec = parse_vnnlib(prop_path, n_inputs=network.input_size, n_outputs=network.output_size)
    reference = None
    if net_path.suffix.lower() == ".onnx":
        def reference(x, _p=str(net_path)):
            return onnx_forward(_p, x)
    return network, spec, reference


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
