"""The one switch for relaxations (FORMULATIONS 1.4).

MIQCP / MILP / QCP / LP are two orthogonal choices: are binaries integral, and are products
of two continuous variables kept exact (quadratic) or replaced by McCormick envelopes.
Every encoder takes a :class:`Relaxation`; nothing else branches on the four names.
Feasible sets nest: MIQCP ⊆ MILP ⊆ LP and MIQCP ⊆ QCP ⊆ LP.
"""
from __future__ import annotations

import enum

from .errors import InputError


class Relaxation(enum.Enum):
    MIQCP = ("miqcp", True, True)
    MILP = ("milp", True, False)
    QCP = ("qcp", False, True)
    LP = ("lp", False, False)

    def __init__(self, label: str, integral: bool, exact_products: bool):
        self.label = label
        self.integral = integral            # binaries kept in {0, 1}
        self.exact_products = exact_products  # x*y kept as a quadratic term

    @classmethod
    def parse(cls, value: "str | Relaxation") -> "Relaxation":
        if isinstance(value, Relaxation):
            return value
        for member in cls:
            if member.label == str(value).lower():
                return member
        names = ", ".join(m.label for m in cls)
        raise InputError(f"unknown relaxation {value!r}: choose one of {names}")

    def __str__(self) -> str:
        return self.label


#: the methods of training-run certification (``mipcert agt``): interval AGT (``ibp``) or a
#: model under one of the four relaxations, weakest first
AGT_METHODS = ("ibp", "lp", "qcp", "milp", "miqcp")
