"""Metadata lives in ``setup.cfg``; this file adds the optional C kernel of interval AGT.

``mipcert/agt/_topk.c`` (top-k sums for the bounded-poisoning aggregation, see
``mipcert/agt/kernels.py``) is built when a C compiler is present. It is *optional*: without
a compiler the install still succeeds and interval AGT uses its torch path (same numbers,
slower on the CPU).
"""
import sys

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "mipcert.agt._topk", ["mipcert/agt/_topk.c"], optional=True,
    extra_compile_args=[] if sys.platform == "win32" else ["-O3"])])
