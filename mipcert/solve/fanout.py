"""Fan out independent jobs (each builds and solves its own model) over workers.

``map_solves(fn, items)`` returns ``[fn(item) for item in items]`` in input order, running the
calls concurrently. Back-ends: 'processes' (default; concurrent.futures process pool — ``fn``
and the items must be picklable, e.g. a module-level function; the workers start from a
fresh interpreter (forkserver), so a script calls this under ``if __name__ == "__main__":``),
'threads' (solvers release the GIL while solving, model building does not), 'dask'
(dask.delayed + dask.compute on the current scheduler, so a ``dask.distributed.Client``
created beforehand sends the jobs to its cluster) and 'serial'. The first exception raised by a job propagates.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
from typing import Any, Callable, Iterable, TypeVar

from ..errors import InputError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BACKENDS = ("processes", "threads", "dask", "serial")

#: how the 'processes' back-end starts its workers (spawn where there is no forkserver)
_START_METHOD = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def default_workers() -> int:
    """One worker per available CPU."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def map_solves(fn: Callable[[T], R], items: Iterable[T], workers: int | None = None,
               backend: str = "processes") -> list[R]:
    """``[fn(x) for x in items]`` computed concurrently; results in input order.

    Give each job a solver with ``threads=1`` when running many workers, so that they do not
    oversubscribe the CPUs.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown fan-out backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    items = list(items)
    if workers is not None and workers < 1:
        raise InputError(f"workers must be >= 1, not {workers}")
    n_workers = min(workers or default_workers(), max(1, len(items)))
    log.debug("map_solves: %d jobs, %s backend, %d workers", len(items), backend, n_workers)
    if backend == "serial" or not items or (n_workers == 1 and backend != "dask"):
        return [fn(x) for x in items]
    if backend == "dask":
        return _dask_map(fn, items, workers)
    if backend == "processes":
        # workers start from a fresh interpreter (forkserver), not a fork of this process:
        # a fork of a process whose OpenMP threads (torch's, the AGT kernel's) have run
        # hangs at the child's first parallel operation
        pool = cf.ProcessPoolExecutor(max_workers=n_workers,
                                      mp_context=mp.get_context(_START_METHOD))
    else:
        pool = cf.ThreadPoolExecutor(max_workers=n_workers)
    with pool:
        futures = [pool.submit(fn, x) for x in items]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _dask_map(fn: Callable[[Any], Any], items: list, workers: int | None) -> list:
    import dask

    tasks = [dask.delayed(fn, pure=False)(x) for x in items]
    kwargs: dict[str, Any] = {}
    if workers is not None:
        kwargs["num_workers"] = workers
    return list(dask.compute(*tasks, **kwargs))
