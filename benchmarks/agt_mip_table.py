"""Optimisation-based AGT on the bundled instances: the relaxation table (total width and
seconds per method and horizon) beside interval AGT, the paper's figures and the true hull
(enumeration where the perturbation is discrete, sampled attacks where it is not).

    python benchmarks/agt_mip_table.py                       # the default set below
    python benchmarks/agt_mip_table.py agt_moons_svm:milp:1,3 agt_moons_mlp_small:miqcp:1,full

Each argument is INSTANCE:METHODS:HORIZONS[:SECONDS], SECONDS a time limit per solve
(a limit gives the proven dual bound: a looser, never a wrong, box), e.g.
agt_moons_svm:milp,miqcp:3,5,7:5. Results go to benchmarks/results/agt_mip_table.json
(one entry per argument, merged with what the file already holds).

    python benchmarks/agt_mip_table.py --combine agt_moons_svm docs/agt_moons_svm_table.png

prints one table of every (method, horizon) measured for an instance (the latest entry
holding each; full-horizon exact rows from agt_mip_svm_full.json for the SVM) and draws the
width-against-time plot of the paper's Figure 6(c).
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "agt_mip_table.json"
DEFAULT = ["agt_moons_mlp_small:ibp,lp,milp,miqcp:1,full",
           "agt_moons_svm:ibp,lp,milp:1,3",
           "agt_svm_poison:ibp,lp,milp:1"]


def combine(name: str, png: str) -> int:
    """One table from every entry of ``name`` in the results file, and its plot."""
    from mipcert.agt.table import plot_table

    runs = json.loads(OUT.read_text())["runs"]
    rows, base = {}, None
    for key, table in runs.items():  # insertion order: later entries win
        if key.split(":")[0] != name:
            continue
        base = base or table
        limit = table.get("time_limit_per_solve")
        for r in table["rows"]:
            rows[(r["method"], r["horizon"])] = dict(r, time_limit=limit, entry=key)
    full = ROOT / "benchmarks" / "results" / "agt_mip_svm_full.json"
    if name == "agt_moons_svm" and full.exists():
        f = json.loads(full.read_text())
        for m in ("milp", "miqcp"):
            rows[(m, "full")] = {"method": m, "horizon": "full", "total_width": f["total_width"],
                                 "seconds": f["wall_seconds"], "fallbacks": 0,
                                 "time_limit": None, "entry": f["command"],
                                 **({"same_model_as": "milp"} if m == "miqcp" else {})}
    if base is None:
        print(f"no entry for {name} in {OUT}", file=sys.stderr)
        return 2
    order = {m: i for i, m in enumerate(("ibp", "lp", "qcp", "milp", "miqcp"))}
    hz = {h: i for i, h in enumerate(("-", "1", "3", "5", "7", "full"))}
    rows = sorted(rows.values(), key=lambda r: (order.get(r["method"], 9),
                                                 hz.get(r["horizon"], 9)))
    print(f"{name}: hull {base.get('hull', {}).get('total_width')}")
    for r in rows:
        twin = f" (= {r['same_model_as'].upper()})" if r.get("same_model_as") else ""
        limit = f", {r['time_limit']:g} s per solve" if r.get("time_limit") else ""
        print(f"  {r['method'].upper() + twin:>14} H={r['horizon']:>4}  width "
              f"{r['total_width']:10.6g}  {r['seconds']:8.1f} s{limit}")
    plot_table({**base, "rows": [r for r in rows if not r.get("same_model_as")]}, png)
    print(f"plot written to {png}")
    return 0


def main(argv) -> int:
    sys.path.insert(0, str(ROOT))
    if argv[:1] == ["--combine"]:
        return combine(argv[1], argv[2])
    from mipcert.agt.api import _as_instance
    from mipcert.agt.data import load_dataset
    from mipcert.agt.enumerate import enumerate_hull, enumeration_count, sampled_hull
    from mipcert.agt.run import build_run
    from mipcert.agt.table import relaxation_table

    specs = argv or DEFAULT
    results = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}
    for spec in specs:
        name, methods, horizons, *limit = spec.split(":")
        time_limit = float(limit[0]) if limit else None
        path = ROOT / "instances" / f"{name}.toml"
        t0 = time.perf_counter()
        table = relaxation_table(path, methods.split(","), horizons.split(","),
                                 time_limit=time_limit, workers=os.cpu_count(), progress=lambda m: print(f"  {m}", file=sys.stderr,
                                                          flush=True))
        inst = _as_instance(path)
        run = build_run(inst, load_dataset(inst.data))
        p = inst.perturbation
        if p.kind in ("label_flip", "removal") and enumeration_count(run, p) <= 200_000:
            hull = enumerate_hull(run, p)
        else:
            hull = sampled_hull(run, p, 2000, seed=0)
        table["hull"] = {"total_width": hull.total_width, "exact": hull.exact,
                         "n_runs": hull.n_runs}
        table["seconds_total"] = time.perf_counter() - t0
        table["time_limit_per_solve"] = time_limit
        for r in table["rows"]:
            r.pop("lower", None)
            r.pop("upper", None)
        results["runs"][spec] = table
        print(f"{spec}: hull {hull.total_width:.6g} ({'exact' if hull.exact else 'sampled'})")
        for r in table["rows"]:
            print(f"  {r['method']:>5} H={r['horizon']:>4}  width {r['total_width']:10.6g}"
                  f"  {r['seconds']:8.2f} s  fallbacks {r['fallbacks']}"
                  + (f"  (paper {r['paper_width']} in {r['paper_seconds']} s)"
                     if "paper_width" in r else ""))
    results["meta"] = {"machine": platform.platform(), "cpus": os.cpu_count(),
                       "workers": os.cpu_count(),
                       "note": "2-core VM shared with other jobs while measured: timings are "
                               "upper estimates",
                       "command": "python benchmarks/agt_mip_table.py " + " ".join(specs)}
    latest = json.loads(OUT.read_text()) if OUT.exists() else {"runs": {}}  # merge late
    latest["runs"].update(results["runs"])
    latest["meta"] = results["meta"]
    results = latest
    tmp = OUT.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
