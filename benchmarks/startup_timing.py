"""Start-up: wall time of short ``mipcert verify`` runs, repeated (hyperfine-style), and the
heaviest imports (``python -X importtime``).

Cases, each a fresh interpreter run ``--repeats`` times after one warm-up (which also fills
the ONNX import cache), on ``../shared/vnncomp/test``:

* ``cli``: ``python -m mipcert.cli verify test_nano.onnx test_nano.vnnlib`` as a user runs it
  (all sub-commands registered);
* ``verify_only``: the same run with only the ``verify`` sub-command registered: what ``cli``
  costs once every sub-command registers without heavy imports (``cli/agt.py`` still imports
  torch when registered; its owner makes that lazy);
* the same two on ``test_sat`` (a counterexample: attack + onnxruntime check of the witness).

Writes ``benchmarks/results/startup_timing.json`` (min / median / max seconds per case, and
the 12 slowest cumulative imports of the ``cli`` nano run) and prints a table.

    python benchmarks/startup_timing.py [--repeats 10]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = Path(os.environ.get("MIPCERT_VNNCOMP", ROOT.parent / "shared" / "vnncomp")) / "test"
VERIFY_ONLY = ("import argparse, sys\nfrom mipcert.cli import verify\n"
               "p = argparse.ArgumentParser(); verify.register(p.add_subparsers())\n"
               "a = p.parse_args(sys.argv[1:]); a.verbose = 0; sys.exit(a.func(a))\n")


def _cmd(case: str, onnx: str, prop: str) -> list[str]:
    args = ["verify", str(TEST / onnx), str(TEST / prop)]
    if case == "cli":
        return [sys.executable, "-m", "mipcert.cli", *args]
    return [sys.executable, "-c", VERIFY_ONLY, *args]


def _time(cmd, repeats: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(cmd, env=env, capture_output=True, check=True)   # warm-up, fills the cache
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, check=True)
        out.append(time.perf_counter() - t)
    return out


def _importtime(cmd) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    err = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True,
                         text=True).stderr
    best: dict[str, float] = {}
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cum, name = (x.strip() for x in line[len("import time:"):].split("|"))
            if cum.isdigit() and ("." not in name or name.startswith("mipcert")):
                best[name] = max(best.get(name, 0.0), int(cum) / 1000)
    rows = [{"module": m, "cumulative_ms": v} for m, v in best.items()]
    return sorted(rows, key=lambda r: -r["cumulative_ms"])[:12]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "startup_timing.json"))
    args = ap.parse_args(argv)
    if not TEST.exists():
        print(f"{TEST} is not present: nothing to measure", file=sys.stderr)
        return 0
    results = {}
    for inst, (onnx, prop) in {"test_nano": ("test_nano.onnx", "test_nano.vnnlib"),
                               "test_sat": ("test_sat.onnx", "test_prop.vnnlib")}.items():
        for case in ("cli", "verify_only"):
            ts = _time(_cmd(case, onnx, prop), args.repeats)
            results[f"{inst}/{case}"] = {"min": round(min(ts), 3),
                                         "median": round(statistics.median(ts), 3),
                                         "max": round(max(ts), 3)}
            print(f"{inst:10s} {case:12s} min {min(ts):6.3f}  median {statistics.median(ts):6.3f}"
                  f"  max {max(ts):6.3f} s", flush=True)
    imports = _importtime(_cmd("cli", "test_nano.onnx", "test_nano.vnnlib"))
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "repeats": args.repeats,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "contended": "2 shared cores, other agents' jobs running: the minimum is the "
                         "least disturbed run"}
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "wall_seconds": results,
                               "slowest_imports_cli_nano": imports}, indent=1))
    tmp.replace(out)
    for r in imports:
        print(f"  import {r['module']:32s} {r['cumulative_ms']:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
