"""Adversary correction: change chosen parameters of a trained network as little as possible
so that given adversarial points are classified correctly with a margin, at a bounded cost
in clean loss (FORMULATIONS 5), by cutting planes on a persistent convex QP."""
from __future__ import annotations

from .correct import CorrectionResult, PoolMember, correct
from .cuts import CorrectionFunctions
from .qp import NORMS, CorrectionQP

__all__ = ["CorrectionFunctions", "CorrectionQP", "CorrectionResult", "NORMS", "PoolMember",
           "correct"]
