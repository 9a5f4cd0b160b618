"""What a verification run says: a verdict, a proven bound and, for ``sat``, a checked witness."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VERDICTS = ("sat", "unsat", "unknown", "timed-out")


@dataclass
class VerificationResult:
    """``verdict``: ``sat`` (a counterexample, checked in float64), ``unsat`` (the property
    holds: every margin's proven lower bound is > 0), ``unknown`` or ``timed-out``.

    ``bound``: proven lower bound on the minimum safety margin over the whole specification,
    set only for ``unsat`` (``None`` otherwise: a partial bound is no certificate);
    ``counterexample``: ``(x, y)`` for ``sat``, with ``margin`` its float64 margin (<= 0).
    """

    verdict: str
    seconds: float
    bound: float | None = None
    counterexample: tuple[np.ndarray, np.ndarray] | None = None
    margin: float | None = None      # margin of the counterexample (<= 0)
    decided_by: str = ""             # 'bounds', 'milp', 'lp', 'attack'
    stats: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"verdict": self.verdict, "seconds": round(self.seconds, 4),
               "bound": None if self.bound is None or not np.isfinite(self.bound) else self.bound,
               "decided_by": self.decided_by, "stats": self.stats}
        if self.counterexample is not None:
            x, y = self.counterexample
            out["counterexample"] = {"x": x.tolist(), "y": y.tolist(), "margin": self.margin}
        return out

    def vnncomp_text(self) -> str:
        """First line the verdict; for ``sat`` the witness as ``((X_0 v) ... (Y_0 v) ...)``."""
        if self.counterexample is None:
            return self.verdict
        x, y = self.counterexample
        items = [f"(X_{i} {float(v)!r})" for i, v in enumerate(x)] + \
                [f"(Y_{j} {float(v)!r})" for j, v in enumerate(y)]
        return "sat\n(" + "\n ".join(items) + ")"
