"""``mipcert supports --CAPABILITY``: what mipcert's VNN-LIB 2.0 solver command line handles.

The capability queries of the VNN-LIB 2.0 standard (Chapter 5), which drivers such as
``vnnlib-satisfactory`` ask before running ``mipcert verify QUERY --network N=NET``. Each
answer is one item a line. mipcert declares only what it decides exactly:

* ONNX operators: those its importer lowers exactly to affine maps and ReLUs on the data
  path (:data:`DECLARED_OPS`); nothing is approximated, so Sigmoid, Softmax, Pow, ... are
  absent. Mul and Div are exact only with a constant operand, and Cast, Concat, Gather,
  Shape, Transpose are read only on constants (shape arithmetic), so they are not declared:
  a driver gates its tests by operator, and tests of these operators on variables would
  fail;
* one network per query (``SNET``), one input and one output tensor (``SIO``), no
  hidden-node variables (``NH``: the ``H`` theory is not supported);
* arithmetic: input bounds and linear output constraints (``BND``, ``OUTC``); linear
  constraints over several inputs (``LIN``) and polynomials (``POLY``) are not supported;
* counterexamples are not serialised in the 2.0 assignment format (``false``): the CLI
  prints the verdict; ``--json`` and ``--result-file`` carry the counterexample.
"""
from __future__ import annotations

import sys

# Lowest ONNX opset the importer is tested with, and the highest (onnx's at release).
OPSET_RANGE = (7, 21)

#: ONNX operators mipcert imports exactly on variable data (each checked against onnxruntime
#: on import); a subset of ``mipcert.io.onnx_import.SUPPORTED_OPS``.
DECLARED_OPS = ("Add", "BatchNormalization", "Constant", "Conv", "Flatten", "Gemm", "Identity",
                "MatMul", "Neg", "Relu", "Reshape", "Squeeze", "Sub", "Unsqueeze")

CAPABILITIES = {
    "onnx-operators": "ONNX operators (one a line)",
    "onnx-opset-versions": "lowest and highest ONNX opset version",
    "vnnlib-versions": "lowest and highest VNN-LIB version",
    "serialise-assignments": "true when counterexamples are printed as 2.0 assignments",
    "multiple-network-theories": "network theories (SNET: one network per query)",
    "hidden-node-theories": "hidden-node theories (NH: no hidden-node variables)",
    "multiple-input-output-theories": "input/output theories (SIO: one input, one output)",
    "arithmetic-complexity-theories": "arithmetic theories (BND, OUTC)",
}


def answer(capability: str) -> list[str]:
    """The lines ``mipcert supports --CAPABILITY`` prints."""
    if capability == "onnx-operators":
        return list(DECLARED_OPS)
    if capability == "onnx-opset-versions":
        return [str(v) for v in OPSET_RANGE]
    if capability == "vnnlib-versions":
        from ..io.vnnlib2 import VERSIONS

        return list(VERSIONS)
    return {"serialise-assignments": ["false"],
            "multiple-network-theories": ["SNET"],
            "hidden-node-theories": ["NH"],
            "multiple-input-output-theories": ["SIO"],
            "arithmetic-complexity-theories": ["BND", "OUTC"]}[capability]


def register(sub) -> None:
    p = sub.add_parser("supports", help="VNN-LIB 2.0 capability queries (one answer a line)",
                       description=__doc__.split("\n\n")[1])
    group = p.add_mutually_exclusive_group(required=True)
    for name, text in CAPABILITIES.items():
        group.add_argument(f"--{name}", dest="capability", action="store_const", const=name,
                           help=text)
    p.set_defaults(func=run)


def run(args) -> int:
    sys.stdout.write("".join(line + "\n" for line in answer(args.capability)))
    return 0
