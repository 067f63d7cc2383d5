"""Worker processes for a stage's CPU-bound work (slow signals, MinHash sketches, pair verification).

Workers come from a fork server (a fresh single-threaded process with numpy, pyarrow and the MinHash
tables loaded: `pipeline.worker_warmup`), not from the calling process: forking a process that runs
threads — Ray's and gRPC's in the Ray executor's driver, a notebook's — can leave the child waiting forever
on a lock held by a thread that does not exist in it. What a worker runs must therefore reach it by value
(pickled), never by a name it would look up in a registry of its own: see `pipeline.filters.portable`.
"""
from __future__ import annotations

import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor


def _worker_context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["numpy", "pyarrow", "pyarrow.compute", "pipeline.worker_warmup"])
    return context


def _ignore_ctrl_c() -> None:
    # Ctrl-C in a terminal reaches every process of the foreground group, workers included. The run's own
    # process stops the work (and says so in one line); a worker that raised KeyboardInterrupt as well would
    # print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_pool(workers: int) -> ProcessPoolExecutor | None:
    """A pool of `workers` processes, or None where one process does it all."""
    if workers <= 1:
        return None
    context = _worker_context()
    _start_fork_server()
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_ctrl_c)


def start_worker_server() -> None:
    """Start the fork server now, so that its imports (~1 s) overlap a run's first stages."""
    _worker_context()
    _start_fork_server()


def _start_fork_server() -> None:
    """Start the fork server (if it is not running) with Ctrl-C ignored. A terminal's Ctrl-C reaches it too,
    and while it imports its preloads it would die of it with a traceback (it ignores SIGINT only once they
    are loaded); an ignored signal stays ignored across the exec that starts it, and in the workers it
    forks. A Ctrl-C in the instant the server is being spawned is lost (the next one is not)."""
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        forkserver.ensure_running()
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)
