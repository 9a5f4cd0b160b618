"""Metadata lives in ``setup.cfg``; this file adds the optional C kernel of interval AGT.

``mipcert/agt/_topk.c`` (the per-layer reductions of the bounded-poisoning aggregation, see
``mipcert/agt/kernels.py``) is built when a C compiler is present. It is *optional*: without
a compiler the install still succeeds and interval AGT uses its torch path (same numbers,
slower on the CPU). It is built with OpenMP where the compiler has it (then a kernel call
runs on torch's own OpenMP threads), else without (one thread).
"""
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:  # setuptools >= 59 vendors distutils' errors here
    from setuptools.errors import CompileError, LinkError
except ImportError:  # pragma: no cover - old setuptools
    from distutils.errors import CompileError, LinkError

OPENMP = ["-fopenmp"]


class BuildExt(build_ext):
    """Build with OpenMP first; if the compiler or linker refuses it, build without."""

    def build_extension(self, ext):
        if sys.platform == "win32" or self.compiler.compiler_type != "unix":
            return super().build_extension(ext)
        plain = list(ext.extra_compile_args), list(ext.extra_link_args)
        ext.extra_compile_args = plain[0] + OPENMP
        ext.extra_link_args = plain[1] + OPENMP
        try:
            return super().build_extension(ext)
        except (CompileError, LinkError):
            print("mipcert: building the AGT kernel without OpenMP (one thread)")
            ext.extra_compile_args, ext.extra_link_args = plain
            return super().build_extension(ext)


setup(cmdclass={"build_ext": BuildExt}, ext_modules=[Extension(
    "mipcert.agt._topk", ["mipcert/agt/_topk.c"], optional=True,
    extra_compile_args=[] if sys.platform == "win32" else ["-O3"])])
