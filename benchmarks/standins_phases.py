"""Time per phase of ``verify`` on download-free stand-ins with the shapes of ACAS Xu
(5-50x6-5), small control networks and mnist 256x2/x4/x6 (random He-initialised weights,
untargeted robustness at two radii each; the networks of ``tests/verify/test_schedule.py``).

Writes ``benchmarks/results/standins_phases.json`` (verdict, decided_by, seconds, phases,
unstable ReLUs, clause solves, split boxes / volume proved) and prints a table.

    python benchmarks/standins_phases.py [--timeout 20]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipcert.verify import verify  # noqa: E402
from tests.verify.test_schedule import STAND_INS, random_net, robustness  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "standins_phases.json"))
    args = ap.parse_args(argv)
    rows = []
    for name, sizes, eps, clip in STAND_INS:
        net = random_net(sizes, seed=len(sizes))
        rng = np.random.default_rng(3)
        x0 = rng.uniform(0, 1, sizes[0]) if clip else rng.uniform(-0.5, 0.5, sizes[0])
        for r in (eps, 3 * eps):
            spec = robustness(net, x0, r, *(clip or (-np.inf, np.inf)))
            res = verify(net, spec, timeout=args.timeout)
            reg = res.stats["regions"][0] if res.stats["regions"] else {}
            row = {"network": name, "eps": r, "verdict": res.verdict,
                   "decided_by": res.decided_by, "seconds": round(res.seconds, 3),
                   "phases": res.stats["phases"], "unstable": reg.get("unstable"),
                   "clause_solves": len(reg.get("solves", [])), "split": reg.get("split")}
            rows.append(row)
            print(f"{name:18s} eps {r:<7g} {res.verdict:9s} {res.decided_by or '-':6s} "
                  f"{res.seconds:6.2f} s  {res.stats['phases']}", flush=True)
    meta = {"timeout": args.timeout, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": "2 shared cores: the load average says how busy they were"}
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "results": rows}, indent=1))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
