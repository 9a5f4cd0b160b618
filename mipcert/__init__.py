"""mipcert: exact certificates for ReLU networks and their training runs.

The data path: ``io`` → :class:`Network` → ``bounds`` → ``encode`` (Pyomo) → ``solve``
(:class:`~mipcert.solve.Outcome`) → certificates, tables and plots.
"""
from .errors import MipcertError
from .network import Network
from .relaxation import Relaxation

__version__ = "0.1.0"

__all__ = ["MipcertError", "Network", "Relaxation", "__version__"]
