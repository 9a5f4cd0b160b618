"""Exact reachable hull of label-flip / removal instances versus interval AGT's box.

For each instance (default: the paper's half-moons SVM, 1 label flip over 14 steps, and the
small half-moons MLP) the script enumerates every admissible data set with the global budget
``k`` (:func:`mipcert.agt.enumerate.enumerate_hull`: the nominal run and every subset of
``<= k`` samples flipped / removed) and puts the exact per-parameter hull beside the interval
AGT box (:func:`mipcert.agt.certify_instance`), whose per-batch budget and interval
arithmetic make it an outer bound. Instances whose perturbation is continuous get the
sampled inner hull (:func:`mipcert.agt.enumerate.sampled_hull`) instead.

Columns per instance: ``hull_lower`` / ``hull_upper`` per parameter, ``hull_total_width``,
``n_runs``, ``hull_seconds`` (minimum over ``--repeats``), ``exact``, ``agt_lower`` /
``agt_upper``, ``agt_total_width``, ``agt_seconds`` and ``width_ratio`` (AGT over hull).

    python benchmarks/agt_exact_hull.py [--repeats 3] [--instances agt_moons_svm agt_moons_svm:k=2 ...]

Writes ``benchmarks/results/agt_exact_hull.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from mipcert.agt import certify_instance, load_instance
from mipcert.agt.enumerate import enumerate_hull, sampled_hull
from mipcert.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["agt_moons_svm", "agt_moons_svm:k=2", "agt_moons_mlp_small",
           "agt_moons_mlp_small:k=2", "agt_svm_poison"]


def measure(name: str, repeats: int, n_samples: int) -> dict:
    """One row; ``name`` is an instance file stem, optionally ``:k=K`` to change the budget."""
    stem, _, override = name.partition(":k=")
    inst = load_instance(ROOT / "instances" / f"{stem}.toml")
    pert = replace(inst.perturbation, k=int(override)) if override else None
    outcome = certify_instance(inst, perturbation=pert)
    run, pert = outcome.run, outcome.instance.perturbation
    best, hull = None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        try:
            hull = enumerate_hull(run, pert)
        except InputError:
            hull = sampled_hull(run, pert, n_samples=n_samples)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    agt = outcome.result
    assert np.all(agt.lower <= hull.lower) and np.all(hull.upper <= agt.upper), name
    return {"instance": name, "perturbation": hull.perturbation,
            "n_params": run.n_params, "n_steps": len(run.batches), "n_train": len(run.y),
            "param_names": run.param_names, "exact": hull.exact, "n_runs": hull.n_runs,
            "hull_seconds": best, "hull_total_width": hull.total_width,
            "hull_lower": hull.lower.tolist(), "hull_upper": hull.upper.tolist(),
            "hull_argmin": hull.argmin, "hull_argmax": hull.argmax,
            "nominal": hull.nominal.tolist(),
            "agt_total_width": agt.total_width, "agt_seconds": agt.seconds,
            "agt_lower": agt.lower.tolist(), "agt_upper": agt.upper.tolist(),
            "width_ratio": agt.total_width / hull.total_width if hull.total_width else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", nargs="+", default=DEFAULT)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=20000,
                    help="random perturbations for instances that cannot be enumerated")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/agt_exact_hull.json"))
    args = ap.parse_args()
    rows = [measure(n, args.repeats, args.samples) for n in args.instances]
    doc = {"meta": {"python": platform.python_version(), "machine": platform.machine(),
                    "cpus": os.cpu_count(), "repeats": args.repeats,
                    "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                    "columns": __doc__.split("Columns per instance: ")[1].split("\n\n")[0]},
           "rows": rows}
    print(f"{'instance':24} {'exact':>5} {'runs':>7} {'hull width':>11} {'hull s':>8} "
          f"{'AGT width':>11} {'AGT s':>7} {'ratio':>7}")
    for r in rows:
        ratio = f"{r['width_ratio']:.1f}" if r["width_ratio"] else "-"
        print(f"{r['instance']:24} {str(r['exact']):>5} {r['n_runs']:7d} "
              f"{r['hull_total_width']:11.4f} {r['hull_seconds']:8.3f} "
              f"{r['agt_total_width']:11.4f} {r['agt_seconds']:7.3f} {ratio:>7}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as f:
        json.dump(doc, f, indent=1)
    os.chmod(f.name, 0o644)
    os.replace(f.name, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
