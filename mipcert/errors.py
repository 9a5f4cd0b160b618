"""The ``MipcertError`` family.

Every error a user can cause (bad files, bad numbers, a missing solver) is raised as a
subclass of :class:`MipcertError` whose message says what was wrong *and* how to fix it.
The CLI prints ``error: <message>`` without a traceback and exits with
:data:`EXIT_USER_ERROR` (2).
"""
from __future__ import annotations

EXIT_USER_ERROR = 2


class MipcertError(Exception):
    """Base class of all errors mipcert raises on purpose."""


class InputError(MipcertError, ValueError):
    """Malformed or inconsistent user input (files, shapes, numbers, instance keys)."""


class UnsupportedError(InputError):
    """A construct mipcert does not handle (an ONNX op, a VNNLIB form, a layer type)."""


class ModelFileError(InputError):
    """A network file that cannot be read or that disagrees with its own framework."""


class SpecificationError(InputError):
    """A property / VNNLIB file that cannot be parsed or is inconsistent with the network."""


class SolverError(MipcertError, RuntimeError):
    """A solver failed, is missing, or cannot take the model."""


class SolverUnavailableError(SolverError):
    """The requested solver is not installed."""


class SolverLicenseError(SolverError):
    """The solver is installed but its licence is too small for the model."""
