"""What ``mipcert compare`` reports: a bound and a status per method, point and radius.

See :mod:`mipcert.verify.compare` (CR) and :mod:`mipcert.verify.props.compare` (the other
property kinds) for the meaning of every number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

STATUSES = ("certified", "falsified", "open", "misclassified", "conflict")


Progress = Callable[[int, int, str], None]


@dataclass
class MethodResult:
    """One method on one point: proven lower bound of the margin (``None``: nothing proven)."""

    bound: float | None
    seconds: float
    status: str
    note: str = ""
    stable: int | None = None   # ReLUs proved stable by the bounds this method relies on


@dataclass
class PointResult:
    """One test point at one eps. ``attack_margin``: the smallest margin the attack found
    (an upper bound of ``m*``); ``counterexample``: ``(n,)`` validated witness or ``None``."""

    index: int
    label: int
    predicted: int
    eps: float
    nominal_margin: float
    attack_margin: float
    attack_seconds: float
    falsified: bool
    counterexample: np.ndarray | None = None
    methods: dict[str, MethodResult] = field(default_factory=dict)

    @property
    def misclassified(self) -> bool:
        return self.nominal_margin <= 0

    def to_json(self) -> dict:
        out = {"index": self.index, "label": self.label, "predicted": self.predicted,
               "eps": self.eps, "nominal_margin": self.nominal_margin,
               "attack_margin": _num(self.attack_margin),
               "attack_seconds": round(self.attack_seconds, 6), "falsified": self.falsified,
               "misclassified": self.misclassified,
               "methods": {m: {"bound": _num(r.bound), "seconds": round(r.seconds, 6),
                               "status": r.status, "note": r.note}
                           for m, r in self.methods.items()}}
        if self.counterexample is not None:
            out["counterexample"] = self.counterexample.tolist()
        return out


@dataclass
class CompareResult:
    """All points at all eps, in the order eps-major, point-minor."""

    name: str
    network: str
    eps: list[float]
    methods: list[str]
    points: list[PointResult]
    solver: str
    timeout: float | None
    seconds: float = 0.0
    relus: int = 0          # ReLUs of the network
    prop: str = "cr"        # the property compared (PropertyConfig.label())

    def at(self, eps: float) -> list[PointResult]:
        return [p for p in self.points if p.eps == eps]

    @property
    def conflicts(self) -> list[tuple[float, int, str]]:
        """``(eps, index, method)`` of every soundness conflict (should be empty)."""
        return [(p.eps, p.index, m) for p in self.points for m, r in p.methods.items()
                if r.status == "conflict"]

    def summary(self) -> list[dict]:
        """Per eps and method: counts of every status, total and mean seconds."""
        rows = []
        for eps in self.eps:
            pts = self.at(eps)
            for m in self.methods:
                rs = [p.methods[m] for p in pts]
                row = {"eps": eps, "method": m, "points": len(rs)}
                row.update({s: sum(r.status == s for r in rs) for s in STATUSES})
                counted = [r.stable for r in rs if r.stable is not None]
                row["mean_stable"] = round(float(np.mean(counted)), 1) if counted else None
                row["seconds"] = round(sum(r.seconds for r in rs), 6)
                row["mean_seconds"] = round(row["seconds"] / max(len(rs), 1), 6)
                rows.append(row)
        return rows

    def rows(self) -> list[dict]:
        """Flat rows (one per eps, point and method) for CSV."""
        out = []
        for p in self.points:
            for m, r in p.methods.items():
                out.append({"eps": p.eps, "index": p.index, "label": p.label,
                            "predicted": p.predicted, "nominal_margin": p.nominal_margin,
                            "attack_margin": _num(p.attack_margin), "method": m,
                            "bound": _num(r.bound), "seconds": r.seconds, "status": r.status,
                            "note": r.note, "stable_relus": r.stable})
        return out

    def to_json(self) -> dict:
        return {"name": self.name, "network": self.network, "property": self.prop,
                "eps": self.eps,
                "methods": self.methods, "solver": self.solver, "timeout": self.timeout,
                "seconds": round(self.seconds, 4), "relus": self.relus,
                "timing": "ibp/crown: batch time / number of points; lp: its solves plus the "
                          "crown share; milp: the verifier's own time",
                "summary": self.summary(), "conflicts": [list(c) for c in self.conflicts],
                "points": [p.to_json() for p in self.points]}


def _num(v):
    return None if v is None or not math.isfinite(v) else float(v)
