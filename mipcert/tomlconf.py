"""Reading instance files (TOML) with strict keys: a misspelt key is an error, not a default."""
from __future__ import annotations

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
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"instance file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"instance file {path} is not valid TOML: {exc}") from None


def check_keys(table: dict, allowed: Iterable[str], where: str) -> None:
    """Refuse keys of ``table`` that are not in ``allowed``, naming them and the valid ones."""
    allowed = set(allowed)
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in "
            f"[{where}]; valid keys are: {', '.join(sorted(allowed))}")


def resolve_path(value: str, base: Path) -> Path:
    """A path from an instance file, relative to the file's folder unless absolute."""
    p = Path(value)
    return p if p.is_absolute() else (base / p)
