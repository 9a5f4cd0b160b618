"""Wall-clock time of ``mipcert verify`` on every VNN-COMP instance of ``../shared/vnncomp``.

Each instance runs as its own process (``python -m mipcert.cli verify NET PROP --json``), so
the time includes start-up (interpreter, imports, the ONNX import and its onnxruntime check)
as a user sees it. The verdict is compared with the agreed one in ``verdicts.csv``: a wrong
verdict (``sat`` for ``unsat`` or the reverse) is counted separately from an unsettled one
(``unknown`` / ``timed-out``). The JSON of each run must parse: stdout is one JSON document.

Writes ``benchmarks/results/vnncomp_timing.json`` (per instance: verdict, expected, wall
seconds, the run's own seconds, time per phase, decided_by) and prints a table.

    python benchmarks/vnncomp_timing.py [--timeout 60] [--solver highs] [--only mnist]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VNNCOMP = Path(os.environ.get("MIPCERT_VNNCOMP", ROOT.parent / "shared" / "vnncomp"))


def run_one(row, timeout: float, solver: str, threads: int | None) -> dict:
    cmd = [sys.executable, "-m", "mipcert.cli", "verify", str(VNNCOMP / row["onnx"]),
           str(VNNCOMP / row["vnnlib"]), "--timeout", str(timeout), "--solver", solver, "--json"]
    if threads:
        cmd += ["--threads", str(threads)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=timeout + 120)
    except subprocess.TimeoutExpired:   # on a busy machine; recorded, not fatal
        return {"onnx": row["onnx"], "vnnlib": row["vnnlib"], "expected": row["verdict"],
                "wall_seconds": round(time.perf_counter() - start, 3), "verdict": "killed"}
    wall = time.perf_counter() - start
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the child (user + system): on a shared machine the wall clock also
    # counts the time other jobs held the cores
    cpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    rec = {"onnx": row["onnx"], "vnnlib": row["vnnlib"], "expected": row["verdict"],
           "wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
           "exit_code": proc.returncode}
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        rec.update(verdict="no-json", stdout_head=proc.stdout[:300], stderr_tail=proc.stderr[-300:])
        return rec
    rec.update(verdict=data["verdict"], run_seconds=data["seconds"],
               decided_by=data.get("decided_by"),
               phases=data.get("stats", {}).get("phases"))
    return rec


def run_row(row, timeout: float, keys) -> dict:
    """:func:`run_one` with HiGHS, the row's ``keys`` copied over and the files named
    without their folders (for instances outside ``../shared/vnncomp``)."""
    rec = run_one(row, timeout, "highs", None)
    rec.update({k: row[k] for k in keys if k in row})
    rec["onnx"], rec["vnnlib"] = Path(row["onnx"]).name, Path(row["vnnlib"]).name
    return rec


def run_rows(rows, timeout: float, keys, save=None, extra=None) -> list[dict]:
    """Every row by :func:`run_row`, in order: ``extra(row, rec)`` may add fields,
    ``save(results)`` runs after each instance (a cut-short run keeps its rows), and one
    line per instance is printed. Returns the records."""
    results = []
    for row in rows:
        rec = run_row(row, timeout, keys)
        if extra is not None:
            extra(row, rec)
        results.append(rec)
        if save is not None:
            save(results)
        check = f" check={rec['milp_check']}" if "milp_check" in rec else ""
        print(f"{rec['onnx']:34s} {rec['vnnlib']:32s} {rec['expected'] or '?':6s} "
              f"{rec['verdict']:9s} {rec['wall_seconds']:6.2f} s  "
              f"{rec.get('decided_by') or '-':10s}{check} {rec.get('phases')}", flush=True)
    return results


def write_results(out: Path, summary: dict, results: list, load_before, **meta) -> None:
    """Write ``{"meta", "summary", "results"}`` to ``out`` atomically; ``meta`` gets the
    machine, its load before and now, the date and the commit besides the given fields."""
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_average_before": load_before,
            "load_average_after": os.getloadavg(), **meta,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        meta["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                        capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "summary": summary, "results": results}, indent=1))
    tmp.replace(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--solver", default="highs")
    ap.add_argument("--threads", type=int, default=None, help="solver threads (default: solver's)")
    ap.add_argument("--only", default=None, help="substring of the instance path to keep")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vnncomp_timing.json"))
    ap.add_argument("--note", default="", help="free text saved in meta (e.g. machine load)")
    args = ap.parse_args(argv)
    if not (VNNCOMP / "verdicts.csv").exists():
        print(f"{VNNCOMP} is not present: nothing to measure", file=sys.stderr)
        return 0
    rows = list(csv.DictReader(open(VNNCOMP / "verdicts.csv")))
    if args.only:
        rows = [r for r in rows if args.only in r["onnx"] + r["vnnlib"]]
    load_before = os.getloadavg()
    results = []
    print(f"{'instance':58s} {'expected':8s} {'verdict':9s} {'wall s':>7s} decided_by")
    for row in rows:
        rec = run_one(row, args.timeout, args.solver, args.threads)
        results.append(rec)
        name = f"{row['onnx']} {Path(row['vnnlib']).name}"
        print(f"{name:58s} {rec['expected']:8s} {rec['verdict']:9s} {rec['wall_seconds']:7.2f} "
              f"{rec.get('decided_by') or ''}", flush=True)
    walls = [r["wall_seconds"] for r in results]
    wrong = [r for r in results if {r["verdict"], r["expected"]} == {"sat", "unsat"}]
    unsettled = [r for r in results if r["verdict"] not in ("sat", "unsat")]
    summary = {"instances": len(results), "wrong": len(wrong), "unsettled": len(unsettled),
               "median_wall_seconds": round(statistics.median(walls), 3) if walls else None,
               "max_wall_seconds": max(walls) if walls else None,
               "settled_within_timeout": sum(r["verdict"] in ("sat", "unsat")
                                             and r["wall_seconds"] <= args.timeout for r in results)}
    write_results(Path(args.out), summary, results, load_before, timeout=args.timeout,
                  solver=args.solver, threads=args.threads, note=args.note,
                  contended="2 shared cores, other agents' jobs running at the same time: "
                            "treat single timings as +-50 %")
    print(json.dumps(summary))
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
