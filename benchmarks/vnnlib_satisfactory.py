"""The VNN-LIB 2.0 conformance suite (``vnnlib-satisfactory``) against this checkout's mipcert.

Runs ``vnnlib-satisfactory run --solver benchmarks/mipcert_solver.sh`` in a scratch folder
(the suite generates its ONNX and VNN-LIB files locally: no network needed) and its three
``compliance`` checks, then writes ``benchmarks/results/vnnlib_satisfactory.json``: the
suite's summary, outcomes per test category, why tests were skipped (operators and theories
``mipcert supports`` does not declare), the compliance results, and every non-passing test
with the solver's stderr. ``--report`` summarises an existing ``report.json`` instead of
running the suite again.

    pip install vnnlib-satisfactory        # or: pip install -e '.[bench]'
    python benchmarks/vnnlib_satisfactory.py [--timeout 30] [--report DIR/.vnnlib-satisfactory/report.json]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOLVER = ROOT / "benchmarks" / "mipcert_solver.sh"


def _suite(timeout: float) -> Path:
    exe = shutil.which("vnnlib-satisfactory")
    if exe is None:
        sys.exit("vnnlib-satisfactory is not installed: pip install vnnlib-satisfactory")
    work = Path(tempfile.mkdtemp(prefix="vnnlib-satisfactory-"))
    print(f"running the suite in {work} (one mipcert process per test) ...", file=sys.stderr)
    subprocess.run([exe, "run", "--solver", str(SOLVER), "--timeout", str(timeout),
                    "--no-verbose"], cwd=work, check=False)
    return work / ".vnnlib-satisfactory" / "report.json"


def _compliance() -> dict:
    exe = shutil.which("vnnlib-satisfactory")
    out = {}
    for check in ("opset", "vnnlib", "serialise-assignments"):
        proc = subprocess.run([exe, "compliance", check, "--solver", str(SOLVER)],
                              capture_output=True, text=True)
        out[check] = {"passed": proc.returncode == 0, "output": proc.stdout.strip()}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per test")
    ap.add_argument("--report", default=None, help="an existing report.json to summarise")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vnnlib_satisfactory.json"))
    args = ap.parse_args(argv)
    report_path = Path(args.report) if args.report else _suite(args.timeout)
    report = json.loads(report_path.read_text())
    per_category: dict = collections.defaultdict(collections.Counter)
    for r in report["results"]:
        per_category[r["category"]][r["outcome"]] += 1
    for s in report["skipped"]:
        per_category[s["category"]]["skip"] += 1
    not_passed = [{"test": r["test_id"], "outcome": r["outcome"], "expected": r["expected"],
                   "actual": r["actual"], "stderr": r["stderr"].strip()[-400:]}
                  for r in report["results"] if r["outcome"] != "pass"]
    summary = {
        "meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "vnnlib_satisfactory": metadata.version("vnnlib-satisfactory"),
                 "vnnlib": metadata.version("vnnlib"),
                 "timeout_per_test": args.timeout, "cpus": os.cpu_count(),
                 "solver": "benchmarks/mipcert_solver.sh (mipcert verify/supports, HiGHS)",
                 "note": "2 shared cores: timings are not the point here"},
        "summary": report["summary"],
        "per_category": {c: dict(v) for c, v in sorted(per_category.items())},
        "skipped_because": dict(collections.Counter(s["missing_op"] for s in report["skipped"])),
        "compliance": _compliance(),
        "not_passed": not_passed,
    }
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(out)
    s = report["summary"]
    print(f"{s['passed']}/{s['total']} passed, {s['failed']} failed, {s['suspect']} suspect, "
          f"{s['errored']} errored, {s['skipped']} skipped; compliance: "
          + ", ".join(f"{k} {'PASS' if v['passed'] else 'FAIL'}" for k, v in summary["compliance"].items()))
    return 1 if s["failed"] or s["suspect"] else 0


if __name__ == "__main__":
    sys.exit(main())
