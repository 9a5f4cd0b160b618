#!/bin/sh
# This checkout's `mipcert` as one executable, for drivers that take a solver path
# (vnnlib-satisfactory run --solver benchmarks/mipcert_solver.sh). With mipcert installed,
# `--solver mipcert` does the same.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec python -m mipcert.cli "$@"
