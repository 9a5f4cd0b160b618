"""``mipcert verify`` on ACAS Xu neighbours: the three real networks of ``../shared/vnncomp``
with their weights perturbed, under properties 2-4.

The held-out ACAS Xu instances are the other 42 networks of the same family (5 inputs, six
hidden layers of 50 ReLUs) under the same properties; they are not in this repository. The
nearest stand-in is a real network moved a little: each weight and bias is multiplied by
``1 + s * N(0, 1)``. Small ``s`` keeps the networks' character (scale, input normalisation,
sparsity of activity) while moving the properties' margins, so that some become
counterexamples and some unsat properties come close to their boundary: the hard cases.

    python benchmarks/acasxu_perturbed.py [--scales 0.05,0.1] [--seeds 3] [--timeout 60]
                                          [--check 120] [--out FILE]

Each instance runs as its own ``mipcert verify --json`` process (start-up included). There
is no agreed verdict for a perturbed network, so every answer is checked by a method that
does not share the default path: a ``sat`` is re-run in onnxruntime by the CLI itself, and
with ``--check S`` every ``unsat`` is re-decided by the plain Big-M MILP on the whole box
(``--no-split --no-attack``, S seconds); a disagreement counts as ``wrong``. The networks
are written under ``benchmarks/.cache/acasxu_perturbed`` (git-ignored); results go to
``benchmarks/results/acasxu_perturbed.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from vnncomp_timing import VNNCOMP, run_rows, write_results  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache" / "acasxu_perturbed"
NETWORKS = ("3_2", "4_5", "5_5")
PROPERTIES = ("prop_2", "prop_3", "prop_4")


def perturb(src: Path, dst: Path, scale: float, seed: int) -> None:
    """Write ``src`` with every weight and bias initializer (not the input offset) multiplied
    by ``1 + scale * N(0, 1)``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        if "MatMul_W" not in init.name and "Add_B" not in init.name:
            continue
        w = numpy_helper.to_array(init)
        w = (w * (1 + scale * rng.standard_normal(w.shape))).astype(w.dtype)
        init.CopyFrom(numpy_helper.from_array(w, init.name))
    tmp = dst.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(dst)


def build(scales, seeds: int) -> list[dict]:
    CACHE.mkdir(parents=True, exist_ok=True)
    rows = []
    for net in NETWORKS:
        src = VNNCOMP / "acasxu" / f"ACASXU_run2a_{net}_batch_2000.onnx"
        for scale in scales:
            for seed in range(seeds):
                dst = CACHE / f"ACASXU_{net}_s{scale}_seed{seed}.onnx"
                if not dst.exists():
                    perturb(src, dst, scale, seed)
                for prop in PROPERTIES:
                    rows.append({"onnx": str(dst), "vnnlib": str(VNNCOMP / "acasxu" / f"{prop}.vnnlib"),
                                 "verdict": "", "network": net, "scale": scale, "seed": seed,
                                 "property": prop})
    return rows


def milp_check(row, timeout: float) -> str:
    """The verdict of the plain Big-M MILP on the whole input box (no splitting, no attack)."""
    cmd = [sys.executable, "-m", "mipcert.cli", "verify", row["onnx"], row["vnnlib"],
           "--timeout", str(timeout), "--no-split", "--no-attack", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        return json.loads(proc.stdout)["verdict"]
    except (json.JSONDecodeError, KeyError):
        return "no-json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="0.05,0.1", help="relative weight noise, comma-separated")
    ap.add_argument("--seeds", type=int, default=3, help="perturbed copies per network and scale")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--check", type=float, default=0.0, metavar="S",
                    help="re-decide every unsat by the plain MILP in S seconds (0: no check)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "acasxu_perturbed.json"))
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    rows = build([float(s) for s in args.scales.split(",")], args.seeds)
    load_before = os.getloadavg()

    def check(row, rec):
        if args.check and rec["verdict"] == "unsat":
            rec["milp_check"] = milp_check(row, args.check)

    results = run_rows(rows, args.timeout, ("network", "scale", "seed", "property"),
                       save=lambda res: save(args, res, load_before), extra=check)
    print(json.dumps(save(args, results, load_before)))
    return 0


def save(args, results, load_before) -> dict:
    walls = [r["wall_seconds"] for r in results]
    summary = {
        "instances": len(results),
        "settled": sum(r["verdict"] in ("sat", "unsat") for r in results),
        "sat": sum(r["verdict"] == "sat" for r in results),
        "unsat": sum(r["verdict"] == "unsat" for r in results),
        "unsat_confirmed_by_milp": sum(r.get("milp_check") == "unsat" for r in results),
        "wrong": sum(r.get("milp_check") == "sat" for r in results),
        "median_wall_seconds": round(statistics.median(walls), 3),
        "max_wall_seconds": round(max(walls), 3)}
    write_results(Path(args.out), summary, results, load_before, timeout=args.timeout,
                  check_seconds=args.check, note=args.note)
    return summary


if __name__ == "__main__":
    sys.exit(main())
