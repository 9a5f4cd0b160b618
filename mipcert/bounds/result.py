"""The :class:`Bounds` of one input box: pre-activation intervals of every block."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Bounds:
    """Interval bounds ``l_l <= h_l <= u_l`` of every block's pre-activation.

    ``pre[l] = (lo, hi)``, each ``(n_l,)`` float64, for block ``l`` of
    ``network.affine_relu_stack()``; ``input_lo``/``input_hi``: ``(n_0,)``.
    ``method`` says how they were computed (``ibp``, ``crown``, ``lp``).
    """

    input_lo: np.ndarray
    input_hi: np.ndarray
    pre: list[tuple[np.ndarray, np.ndarray]]
    method: str
    seconds: float = 0.0
    relu_layers: list[bool] = field(default_factory=list)

    def stability(self) -> list[tuple[int, int, int]]:
        """Per ReLU layer: ``(stably inactive, stably active, unstable)`` counts."""
        out = []
        for (lo, hi), relu in zip(self.pre, self.relu_layers):
            if relu:
                out.append((int(np.sum(hi <= 0)), int(np.sum(lo >= 0)),
                            int(np.sum((lo < 0) & (hi > 0)))))
        return out

    @property
    def num_unstable(self) -> int:
        return sum(s[2] for s in self.stability())

    @property
    def num_stable(self) -> int:
        return sum(s[0] + s[1] for s in self.stability())

    def intersect(self, other: "Bounds", method: str | None = None) -> "Bounds":
        """Both are sound, so their intersection is too."""
        pre = [(np.maximum(a[0], b[0]), np.minimum(a[1], b[1])) for a, b in zip(self.pre, other.pre)]
        return Bounds(self.input_lo, self.input_hi, pre, method or self.method,
                      self.seconds + other.seconds, self.relu_layers)
