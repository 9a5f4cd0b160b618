"""Inference-time verification: specifications, falsification, verdicts."""
from __future__ import annotations

from ..spec import Clause, Region, Specification, robustness_spec
from .result import VERDICTS, VerificationResult
from .verifier import verify


def verify_robustness(network, x0, label: int, eps: float, *, target: int | None = None,
                      input_lo=0.0, input_hi=1.0, **kwargs) -> VerificationResult:
    """Classification robustness of ``x0`` (FORMULATIONS 2, CR or targeted).

    ``unsat`` means robust: no input in ``[x0 - eps, x0 + eps] ∩ [input_lo, input_hi]`` is
    classified as another class (as ``target``). Keyword arguments go to :func:`verify`.
    """
    spec = robustness_spec(x0, label, eps, network.output_size, target=target,
                           input_lo=input_lo, input_hi=input_hi)
    return verify(network, spec, **kwargs)


__all__ = ["Clause", "Region", "Specification", "VERDICTS", "VerificationResult",
           "robustness_spec", "verify", "verify_robustness"]
