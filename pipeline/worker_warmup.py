"""Imported once by the worker fork server (`pipeline.workers.worker_pool`): builds what every worker would
otherwise build for itself, so that each pool's workers fork with it ready — the MinHash tables, and the
main script's module (as the fork server would, were it not for a CPython 3.11 bug: see `pipeline.workers`),
which each worker would otherwise import again."""
import json
import os
from multiprocessing import process, spawn

from pipeline import minhash
from pipeline.workers import MAIN_ENV

minhash.casefold_differs()

if os.environ.get(MAIN_ENV):
    process.current_process()._inheriting = True  # as the fork server sets it: a script without a __main__ guard cannot start processes here
    try:
        spawn.prepare(json.loads(os.environ[MAIN_ENV]))
    except Exception:  # noqa: BLE001
        # A main this server cannot import (`python -` reads stdin; a script that runs a pipeline without an
        # `if __name__ == "__main__":` guard) is left to each worker, as without the warm-up, where it fails
        # the way multiprocessing always does: the server itself must not die of it.
        pass
    finally:
        del process.current_process()._inheriting
