"""The property family of FORMULATIONS 2, each posed at a test point (``papers/004_*``, ``000_*``).

``PropertyConfig(kind, ...)`` names a property and its parameters; ``config.pose(network,
x0, label, eps)`` gives a :class:`~mipcert.verify.props.base.PosedProperty` with its float64
margin, uniform sampling, PGD attack, bounds (ibp / crown / lp) and exact verifier:

| kind | holds when | parameters |
|---|---|---|
| ``cr`` | ``z_y(x) > z_t(x)`` for every ``t != y`` | |
| ``targeted`` | ``z_y(x) > z_target(x)`` | ``target`` |
| ``sr`` | ``||z(x) - z(x0)||_inf <= delta`` | ``delta`` |
| ``lr`` | ``||z(x) - z(x')||_inf <= L ||x - x'||_inf`` | ``L`` |
| ``scr`` | ``softmax(z(x))_y >= eta`` | ``eta`` |
| ``fairness`` | same class when only the sensitive features change | ``sensitive``, |
|  |  | ``values`` or ``interval`` |

for all ``x`` (and ``x'``) in ``[x0 - eps, x0 + eps] ∩ [input_lo, input_hi]``.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from ...errors import InputError
from .base import PosedProperty
from .fairness import IndividualFairness
from .lr import LR_TOLERANCE, LipschitzRobustness
from .scr import StrongClassificationRobustness, softmax_at
from .spec_based import ClassificationRobustness, StandardRobustness

log = logging.getLogger(__name__)

KINDS = ("cr", "targeted", "sr", "lr", "scr", "fairness")
#: the parameters each kind needs (``values`` / ``interval``: one of the two)
PARAMETERS = {"cr": (), "targeted": ("target",), "sr": ("delta",), "lr": ("L",),
              "scr": ("eta",), "fairness": ("sensitive",)}


@dataclass
class PropertyConfig:
    """A property kind and its parameters (see the module table)."""

    kind: str = "cr"
    target: int | None = None
    delta: float | None = None
    L: float | None = None
    eta: float | None = None
    sensitive: list[int] = field(default_factory=list)
    values: list[list[float]] | None = None
    interval: list[list[float]] | None = None

    def __post_init__(self):
        if self.kind == "robustness":
            self.kind = "cr"
        if self.kind not in KINDS:
            raise InputError(f"unknown property kind {self.kind!r}: choose one of "
                             f"{', '.join(KINDS)}")
        for p in PARAMETERS[self.kind]:
            if getattr(self, p) in (None, []):
                raise InputError(f"property kind {self.kind!r} needs the parameter {p!r}")

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, [])}

    def label(self) -> str:
        """A short readable name, e.g. ``sr(delta=0.5)``."""
        params = ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if k != "kind")
        return f"{self.kind}({params})" if params else self.kind

    def applicable(self, labels):
        """Mask of the test points the property speaks of: for ``targeted``, the points whose
        label is not the target (towards its own class the property is vacuous)."""
        import numpy as np

        labels = np.asarray(labels).reshape(-1)
        return labels != self.target if self.kind == "targeted" else np.ones(len(labels), bool)

    def select(self, X, labels):
        """``(X, labels, indices)`` of the applicable points; an error when none is left."""
        import numpy as np

        keep = self.applicable(labels)
        if not keep.any():
            raise InputError(f"{self.label()}: every test point has the target class as its "
                             "label; choose another target")
        if not keep.all():
            log.warning("%s: %d test point(s) labelled with the target class are skipped",
                        self.label(), int((~keep).sum()))
        return np.asarray(X)[keep], np.asarray(labels)[keep], np.flatnonzero(keep)

    def pose(self, network, x0, label: int, eps: float, input_lo=0.0, input_hi=1.0,
             reference=None) -> PosedProperty:
        args = (network, x0, label, eps, input_lo, input_hi, reference)
        k = self.kind
        if k in ("cr", "targeted"):
            return ClassificationRobustness(*args, target=self.target if k == "targeted" else None)
        if k == "sr":
            return StandardRobustness(*args, delta=self.delta)
        if k == "lr":
            return LipschitzRobustness(*args, L=self.L)
        if k == "scr":
            return StrongClassificationRobustness(*args, eta=self.eta)
        return IndividualFairness(*args, sensitive=self.sensitive, values=self.values,
                                  interval=self.interval)


def verify_property(network, config: PropertyConfig, x0, label: int, eps: float, *,
                    input_lo=0.0, input_hi=1.0, reference=None, **kwargs):
    """Decide ``config`` at ``x0`` with the exact verifier; keyword arguments go to
    :meth:`PosedProperty.verify` (``solver``, ``timeout``, ``seed``, ``threads``, ``attack``)."""
    return config.pose(network, x0, label, eps, input_lo, input_hi, reference).verify(**kwargs)


__all__ = ["KINDS", "LR_TOLERANCE", "ClassificationRobustness", "IndividualFairness",
           "LipschitzRobustness", "PosedProperty", "PropertyConfig", "StandardRobustness",
           "StrongClassificationRobustness", "softmax_at", "verify_property"]
