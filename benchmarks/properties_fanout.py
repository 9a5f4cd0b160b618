"""Wall time of ``mipcert metrics`` / ``compare`` on the bundled property instances, in this
process (``workers=1``) and on local worker processes, with the verdict counts per run.

    python benchmarks/properties_fanout.py                 # ~5 min on 2 cores
    python benchmarks/properties_fanout.py --first 5       # a quick look

Prints a table and saves ``benchmarks/results/properties_fanout.json``. Each configuration
runs once (the process runs include starting the workers, which import mipcert and torch);
the results of the two runs must be identical, and the script checks it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "properties_fanout.json"
RUNS = [("metrics", "instances/digits_mlp_scr.toml"),
        ("metrics", "instances/diabetes_mlp_fairness.toml"),
        ("compare", "instances/diabetes_mlp_fairness.toml")]


def run_one(what: str, path: str, first: int, workers: int | None):
    from mipcert.verify.compare import compare_instance
    from mipcert.verify.instance import load_instance
    from mipcert.verify.metrics import metrics_instance

    inst = load_instance(REPO / path)
    start = time.perf_counter()
    if what == "metrics":
        res = metrics_instance(inst, first=first, workers=workers)
        key = [(p.eps, p.index, p.verdict, p.secure, p.accuracy) for p in res.points]
        summary = [{k: s[k] for k in ("eps", "satisfaction", "security", "accuracy")}
                   for s in res.summary()]
    else:
        res = compare_instance(inst, first=first, workers=workers)
        key = [(p.eps, p.index, {m: r.status for m, r in p.methods.items()})
               for p in res.points]
        summary = [{k: s[k] for k in ("eps", "method", "certified", "falsified", "open")}
                   for s in res.summary()]
    return time.perf_counter() - start, key, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--first", type=int, default=10, help="test points per instance")
    args = ap.parse_args()
    rows = []
    print(f"{'command':8} {'instance':34} {'points':>6} {'workers=1 s':>12} "
          f"{'processes s':>12} {'same':>5}")
    for what, path in RUNS:
        t1, k1, summary = run_one(what, path, args.first, 1)
        tp, kp, _ = run_one(what, path, args.first, None)
        same = k1 == kp
        rows.append({"command": what, "instance": path, "first": args.first,
                     "serial_seconds": round(t1, 2), "processes_seconds": round(tp, 2),
                     "identical": same, "summary": summary})
        print(f"{what:8} {path:34} {args.first:6d} {t1:12.1f} {tp:12.1f} {str(same):>5}")
        if not same:
            raise SystemExit("results differ between workers=1 and processes")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"cpus": os.cpu_count(), "python": platform.python_version(),
                               "runs": rows}, indent=1) + "\n")
    print(f"saved {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
