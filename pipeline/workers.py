"""Worker processes for a stage's CPU-bound work (slow signals, MinHash sketches, pair verification).

Workers come from a fork server (a fresh single-threaded process with numpy, pyarrow and the MinHash
tables loaded: `pipeline.worker_warmup`), not from the calling process: forking a process that runs
threads — Ray's and gRPC's in the Ray executor's driver, a notebook's — can leave the child waiting forever
on a lock held by a thread that does not exist in it. What a worker runs must therefore reach it by value
(pickled), never by a name it would look up in a registry of its own: see `pipeline.filters.portable`.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def _worker_context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["numpy", "pyarrow", "pyarrow.compute", "pipeline.worker_warmup"])
    return context


def worker_pool(workers: int) -> ProcessPoolExecutor | None:
    """A pool of `workers` processes, or None where one process does it all."""
    if workers <= 1:
        return None
    return ProcessPoolExecutor(workers, mp_context=_worker_context())


def start_worker_server() -> None:
    """Start the fork server now, so that its imports (~1 s) overlap a run's first stages."""
    _worker_context()
    from multiprocessing import forkserver

    forkserver.ensure_running()
