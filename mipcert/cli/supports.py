"""``mipcert supports --CAPABILITY``: what mipcert's VNN-LIB 2.0 solver command line handles.

The capability queries of the VNN-LIB 2.0 standard (Chapter 5), which drivers such as
``vnnlib-satisfactory`` ask before running ``mipcert verify QUERY --network N=NET``. Each
answer is one item a line. mipcert declares only what it decides exactly:

* ONNX operators: those the general graph path (``mipcert.encode.graph``) encodes exactly
  on variable data (:data:`DECLARED_OPS`, each also in the reference interpreter
  ``mipcert.io.graph_ops`` and checked against onnxruntime); nothing is approximated, so
  Sigmoid, Softmax, Pow, ... are absent. Comparisons and ``Equal`` are encoded by their
  closures and a ``sat`` answer is always re-run through the interpreter and onnxruntime;
  ``Mul`` of two variables and ``Div`` by a variable are exact bilinear rows (SCIP);
* several networks per query (``SNET``, ``MNET``, ``MENET`` equal-to, ``MINET``
  isomorphic-to), several input and output tensors (``SIO``, ``MIO``), hidden-node variables
  (``NH``, ``H``);
* arithmetic: input bounds, linear output constraints and linear constraints over any
  variables (``BND``, ``OUTC``, ``LIN``); polynomials (``POLY``) are not supported;
* counterexamples are not serialised in the 2.0 assignment format (``false``): the CLI
  prints the verdict; ``--json`` and ``--result-file`` carry the counterexample.
"""
from __future__ import annotations

import sys

# Lowest ONNX opset the importer is tested with, and the highest (onnx's at release).
OPSET_RANGE = (7, 21)

#: ONNX operators mipcert encodes exactly on variable data (see the module docstring); the
#: interpreter's set less the ones that only occur on constants (Constant is folded)
DECLARED_OPS = ("Add", "BatchNormalization", "Cast", "Concat", "Constant", "ConstantOfShape",
                "Conv", "Div", "Equal", "Expand", "Flatten", "Gather", "Gemm", "Greater",
                "GreaterOrEqual", "Identity", "Less", "LessOrEqual", "MatMul", "Max", "MaxPool",
                "Min", "Mul", "Neg", "Not", "ReduceMean", "ReduceSum", "Relu", "Reshape",
                "Shape", "Slice", "Split", "Squeeze", "Sub", "Transpose", "Unsqueeze", "Where")

CAPABILITIES = {
    "onnx-operators": "ONNX operators (one a line)",
    "onnx-opset-versions": "lowest and highest ONNX opset version",
    "vnnlib-versions": "lowest and highest VNN-LIB version",
    "serialise-assignments": "true when counterexamples are printed as 2.0 assignments",
    "multiple-network-theories": "network theories (SNET, MNET, MENET, MINET)",
    "hidden-node-theories": "hidden-node theories (NH, H)",
    "multiple-input-output-theories": "input/output theories (SIO, MIO)",
    "arithmetic-complexity-theories": "arithmetic theories (BND, OUTC, LIN)",
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
            "multiple-network-theories": ["SNET", "MNET", "MENET", "MINET"],
            "hidden-node-theories": ["NH", "H"],
            "multiple-input-output-theories": ["SIO", "MIO"],
            "arithmetic-complexity-theories": ["BND", "OUTC", "LIN"]}[capability]


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
