"""The relaxation table of the AGT paper (section 8.2): total width and seconds per method
and horizon, optionally beside the true hull of the reachable parameters.

``relaxation_table(instance, methods, horizons)`` runs every (method, horizon) pair on the
same instance (``ibp`` once: it has no horizon) and returns rows; ``exact_check`` retrains
with every admissible perturbation (small instances, discrete perturbations, ``k <= 2``)
and says, per bound, whether some perturbation attains it (paper Figure 6(a)).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from .api import _as_instance
from .data import load_dataset
from .instance import Instance
from .interval_agt import interval_agt
from .run import build_run

#: the paper's table (Sosnin et al., section 8.2): total width (seconds) on its half-moons SVM
PAPER_TABLE = {
    "ibp": {"-": (339.7, 2.2)},
    "lp": {"1": (311.3, 66), "3": (275.4, 59.7), "5": (243.7, 85.5), "7": (228.5, 105),
           "full": (207.7, 157)},
    "qcp": {"1": (296.4, 4418), "3": (244.8, 28954), "5": (233.5, 30689), "7": (220.7, 25170),
            "full": (201.9, 33157)},
    "milp": {"1": (207.5, 355), "3": (78.2, 37849), "5": (55.8, 58724), "7": (65.5, 66705),
             "full": (16.6, 9020)},
    "miqcp": {"1": (198.5, 290), "3": (79.0, 54192), "5": (52.2, 54634), "7": (65.1, 67847),
              "full": (15.3, 3240)},
}
#: the largest budget --exact-check enumerates
EXACT_CHECK_MAX_K = 2


@dataclass
class TableRow:
    method: str
    horizon: str
    total_width: float
    seconds: float
    lower: np.ndarray = field(repr=False)
    upper: np.ndarray = field(repr=False)
    fallbacks: int = 0
    attained_lower: int | None = None
    attained_upper: int | None = None
    contains_hull: bool | None = None
    same_model_as: str | None = None
    witness_width: float | None = None    # inner box of replayed witnesses (from step 0)
    witness_attained: int | None = None   # bounds a replayed witness reaches (of 2P)

    def as_json(self, paper: bool = False) -> dict:
        """JSON row; ``paper``: add the paper's figures (its half-moons SVM only)."""
        out = {"method": self.method, "horizon": self.horizon, "total_width": self.total_width,
               "seconds": self.seconds, "fallbacks": self.fallbacks,
               "lower": self.lower.tolist(), "upper": self.upper.tolist()}
        if self.same_model_as:
            out["same_model_as"] = self.same_model_as
        if self.witness_width is not None:
            out.update(witness_width=self.witness_width, witness_attained=self.witness_attained)
        if self.attained_lower is not None:
            out.update(attained_lower=self.attained_lower, attained_upper=self.attained_upper,
                       contains_hull=self.contains_hull)
        figures = PAPER_TABLE.get(self.method, {}).get(self.horizon) if paper else None
        if figures:
            out["paper_width"], out["paper_seconds"] = figures
        return out


def parse_list(text: str, allowed=None, what="value") -> list[str]:
    items = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not items:
        raise InputError(f"give at least one {what}")
    if allowed is not None:
        bad = [t for t in items if t not in allowed]
        if bad:
            raise InputError(f"unknown {what} {bad[0]!r}: choose from {', '.join(allowed)}")
    return items


def relaxation_table(instance, methods, horizons, solver=None, time_limit=None, workers=None,
                     scheduler=None, exact_check=False, progress=None,
                     tighten_every: int = 1) -> dict:
    """Rows for every method x horizon (see the module docstring) and, with
    ``exact_check``, the enumerated hull. Returns a JSON-ready dict."""
    from .mip_agt import METHODS, has_bilinear, mip_agt, parse_horizon
    inst: Instance = _as_instance(instance)
    methods = [m for m in methods]
    for m in methods:
        if m not in METHODS:
            raise InputError(f"unknown method {m!r}: choose from {', '.join(METHODS)}")
    data = load_dataset(inst.data)
    run = build_run(inst, data)
    T = len(run.batches)
    hs = [str(h).lower() for h in horizons]
    for h in hs:
        parse_horizon(h, T)
    hull = None
    if exact_check:
        from .enumerate import enumerate_hull
        if inst.perturbation.k > EXACT_CHECK_MAX_K:
            raise InputError(f"--exact-check enumerates every perturbation: k = "
                             f"{inst.perturbation.k} > {EXACT_CHECK_MAX_K} is too many")
        hull = enumerate_hull(run, inst.perturbation)
    rows: list[TableRow] = []
    # Without a product of two continuous variables (a linear model, no feature poisoning)
    # QCP builds the LP's model and MIQCP the MILP's: such a row is the twin's, solved once
    twin = {} if has_bilinear(run, inst.perturbation) else {"qcp": "lp", "miqcp": "milp"}
    solved: dict[tuple[str, str], TableRow] = {}
    for method in methods:
        for h in (["1"] if method == "ibp" else hs):
            t0 = time.perf_counter()
            done = solved.get((twin.get(method, method), h))
            if done is not None:
                rows.append(TableRow(method, done.horizon, done.total_width, done.seconds,
                                     done.lower, done.upper, done.fallbacks,
                                     done.attained_lower, done.attained_upper,
                                     done.contains_hull, same_model_as=done.method,
                                     witness_width=done.witness_width,
                                     witness_attained=done.witness_attained))
                continue
            if method == "ibp":
                res = interval_agt(run, inst.perturbation)
                fallbacks = 0
            else:
                res = mip_agt(run, inst.perturbation, method, h, solver, time_limit, workers,
                              scheduler, progress=progress, tighten_every=tighten_every)
                fallbacks = sum("bound" in s.note and ("fell back" in s.note or "refuted" in s.note)
                                for w in res.windows for s in w.solves)
            secs = time.perf_counter() - t0
            label = "full" if (method != "ibp" and parse_horizon(h, T) == T and h == "full") else h
            label = "-" if method == "ibp" else label
            row = TableRow(method, label, float(np.sum(res.upper - res.lower)), secs,
                           res.lower, res.upper, fallbacks)
            if method != "ibp" and res.inner_lower is not None:
                row.witness_width = res.inner_total_width
                row.witness_attained = res.bounds_attained()
            if hull is not None:
                from .enumerate import attains
                al, au = attains(hull, res.lower, res.upper)
                row.attained_lower, row.attained_upper = int(al.sum()), int(au.sum())
                tol = 1e-6 * (1 + np.abs(hull.lower))
                row.contains_hull = bool(np.all(res.lower <= hull.lower + tol)
                                         and np.all(res.upper >= hull.upper - tol))
            rows.append(row)
            solved[(twin.get(method, method), h)] = row
            if progress is not None:
                progress(f"{method} horizon {label}: width {row.total_width:.6g}, "
                         f"{secs:.1f} s")
    out = {"name": inst.name, "steps": T, "n_params": run.n_params,
           "perturbation": {"kind": inst.perturbation.kind, "k": inst.perturbation.k,
                            "eps": inst.perturbation.eps, "nu": inst.perturbation.nu},
           "param_names": run.param_names,
           "rows": [r.as_json(paper=inst.name == "moons_svm") for r in rows]}
    if hull is not None:
        out["hull"] = {"total_width": hull.total_width, "lower": hull.lower.tolist(),
                       "upper": hull.upper.tolist(), "n_runs": hull.n_runs}
    if inst.name == "moons_svm":
        out["paper_note"] = ("paper figures: Gurobi on 2x32-core EPYC, 3600 s per subproblem, "
                             "its own data sample (hull not published)")
    return out


def plot_table(table: dict, path) -> str:
    """Total width against seconds per method (log-log), one point per horizon (Fig. 6(c))."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method in dict.fromkeys(r["method"] for r in table["rows"]):
        rows = [r for r in table["rows"] if r["method"] == method]
        xs = [max(r["seconds"], 1e-3) for r in rows]
        ys = [max(r["total_width"], 1e-12) for r in rows]
        ax.plot(xs, ys, "o-" if len(rows) > 1 else "o", label=method.upper())
        for r, x, y in zip(rows, xs, ys):
            ax.annotate(r["horizon"], (x, y), textcoords="offset points", xytext=(4, 3),
                        fontsize=7)
    if "hull" in table:
        ax.axhline(table["hull"]["total_width"], color="k", ls="--", lw=0.8,
                   label="true hull (enumeration)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel("total width of the parameter box")
    ax.set_title(f"{table['name']}: width against time (labels: horizon)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    from pathlib import Path

    from ..report.plot import save_png_atomic
    path = Path(path)
    if not path.parent.exists():
        plt.close(fig)
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist")
    return str(save_png_atomic(fig, path))
