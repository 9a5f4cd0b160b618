"""Independent per-point jobs of ``compare`` and ``metrics``: local processes or a Dask cluster.

Every (radius, test point) pair is one job that builds and solves its own models, so the
jobs fan out with :func:`mipcert.solve.map_solves`: over local processes by default (one per
CPU), serially with ``workers=1``, or over a Dask distributed cluster when ``scheduler`` is
the address of its scheduler (``tcp://host:8786``). Each job seeds its own random numbers
from ``(seed, radius index, point index)``, so the results do not depend on how many
workers run them or in which order.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

#: seconds to wait for a Dask scheduler to answer
CONNECT_TIMEOUT = 10


class OnnxReference:
    """A picklable onnxruntime forward pass ``x (B, n) -> z (B, m)`` of an .onnx file."""

    def __init__(self, path: str):
        self.path = str(path)

    def __call__(self, x):
        from ..io import onnx_forward

        return onnx_forward(self.path, x)


def job_rng(seed: int, eps_index: int, point_index: int) -> np.random.Generator:
    """The random numbers of one job: the same whatever worker runs it."""
    return np.random.default_rng([int(seed), int(eps_index), int(point_index)])


def run_jobs(fn: Callable[[Any], Any], jobs: list, *, workers: int | None = None,
             scheduler: str | None = None, progress=None, done: int = 0,
             total: int | None = None) -> list:
    """``[fn(job) for job in jobs]`` in order: on local processes (``workers``, default one
    per CPU; 1 runs them here), or on the Dask cluster whose scheduler is at ``scheduler``.

    ``progress(done, total, text)``: called after each job when they run here, otherwise
    once before and once after the fan-out (``done`` jobs were finished before these)."""
    from ..solve import map_solves
    from ..solve.fanout import default_workers

    total = done + len(jobs) if total is None else total
    if not scheduler and (workers == 1 or len(jobs) <= 1 or
                          (workers is None and default_workers() == 1)):
        out = []
        for job in jobs:
            out.append(fn(job))
            if progress is not None and done + len(out) < total:
                progress(done + len(out), total, "")
        if progress is not None:
            progress(total, total, "done")
        return out
    if progress is not None and jobs:
        where = "the cluster" if scheduler else f"{workers or default_workers()} workers"
        progress(done, total, f"{len(jobs)} jobs on {where}")

    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}: need at least 1")
    if scheduler:
        try:
            from dask.distributed import Client
        except ImportError:  # pragma: no cover - distributed is a dependency
            raise InputError("--scheduler needs dask.distributed: "
                             "pip install distributed") from None
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a bad address
            raise InputError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start "
                             "one with `dask scheduler` and workers with `dask worker ADDRESS`, "
                             "or drop --scheduler to run on local processes") from None
        with client:
            log.info("running %d jobs on the Dask cluster at %s", len(jobs), scheduler)
            out = map_solves(fn, jobs, backend="dask")
    else:
        out = map_solves(fn, jobs, workers=workers, backend="processes")
    if progress is not None:
        progress(total, total, "done")
    return out
