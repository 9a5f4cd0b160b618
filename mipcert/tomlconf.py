"""Reading instance files (TOML) with strict keys: a misspelt key is an error, not a default."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Iterable

from .errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load_toml(path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error is an :class:`InputError`."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"instance file {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"instance file {path} is a folder; give the .toml file") from None
    except OSError as exc:
        raise InputError(f"cannot read instance file {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"instance file {path} is not valid TOML: {exc}") from None
    _refuse_non_finite(doc, "")
    return doc


def _refuse_non_finite(node, where: str) -> None:
    """TOML can spell ``nan`` and ``inf``; no number of an instance file means either (a NaN
    passes every range check unnoticed), so both are refused, naming the key."""
    if isinstance(node, dict):
        for k, v in node.items():
            _refuse_non_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _refuse_non_finite(v, f"{where}[{i}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise InputError(f"{where} = {node} in the instance file: give a finite number")


def check_keys(table: dict, allowed: Iterable[str], where: str) -> None:
    """Refuse keys of ``table`` that are not in ``allowed``, naming them and the valid ones."""
    allowed = set(allowed)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in "
            f"[{where}]; valid keys are: {', '.join(sorted(allowed))}")


def get_typed(table: dict, key: str, typ, where: str, default=None, required: bool = False):
    """``table[key]`` checked against ``typ`` (an int is accepted for a float, a bool never
    for a number); missing → ``default``, or an error naming the key when ``required``."""
    if key not in table:
        if required:
            raise InputError(f"[{where}] needs the key {key!r}")
        return default
    v = table[key]
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if (typ in (int, float) and isinstance(v, bool)) or not isinstance(v, typ):
        raise InputError(f"[{where}] {key} = {v!r} must be of type {typ.__name__}")
    return v


def resolve_path(value: str, base: Path) -> Path:
    """A path from an instance file, relative to the file's folder unless absolute."""
    p = Path(value)
    return p if p.is_absolute() else (base / p)
