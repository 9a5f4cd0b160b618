"""Device and dtype helpers: every bound is computed in float64, on CPU or CUDA."""
from __future__ import annotations

from ..errors import InputError

# Computed bounds are widened outward by this much (absolute + relative) to absorb the
# rounding of float64 matrix products; a certificate must never rest on a rounding error.
FP_SLACK = 1e-9


def resolve_device(device: str | None = None):
    """``None``/``'auto'`` → CUDA when available, else CPU; ``'cuda'`` without CUDA is an error."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but torch sees no CUDA device: use --device cpu")
    if str(device) not in ("cpu",) and not str(device).startswith("cuda"):
        raise InputError(f"unknown device {device!r}: use cpu or cuda")
    return torch.device(device)


def widen(lo, hi):
    """Outward-round ``[lo, hi]`` by :data:`FP_SLACK` (torch tensors or numpy arrays)."""
    return (lo - FP_SLACK * (1.0 + abs(lo)), hi + FP_SLACK * (1.0 + abs(hi)))
