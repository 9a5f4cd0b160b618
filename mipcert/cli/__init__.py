"""The ``mipcert`` command: parse, call the library, render. No logic of its own.

Each sub-command lives in its own module exposing ``register(subparsers)``, which adds a
parser and sets ``func`` to a ``run(args) -> int`` callable.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..errors import EXIT_USER_ERROR, MipcertError

SUBCOMMANDS = ["verify", "supports", "export", "compare", "metrics", "agt", "agt-table",
               "export-agt", "repair"]


class UsageError(Exception):
    """A command line argparse refuses (unknown option, bad value)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its refusals as one ``error:`` line (no usage block; ``--help`` has it)
    returned as exit 2 by :func:`main`, like every other bad input."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mipcert",
        description="Exact certificates for ReLU networks and their training runs.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log progress (-v) or debug details (-vv) to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:  # a sub-command not built yet
            if exc.name == f"{__name__}.{name.replace('-', '_')}":
                continue
            raise
        module.register(sub)
    return parser


def _user_error(exc) -> int:
    """Bad input: its message on one ``error:`` line (a parser's report, a library message
    quoting a multi-line exception), exit 2."""
    print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
    return EXIT_USER_ERROR


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _user_error(exc)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    from ._common import check_outputs

    try:
        check_outputs(args)
        return int(args.func(args) or 0)
    # OSError, UnicodeDecodeError: a path the user gave is unreadable, a folder, not text
    except (MipcertError, OSError, UnicodeDecodeError) as exc:
        return _user_error(exc)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
