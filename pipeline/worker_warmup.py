"""Imported once by the worker fork server (`pipeline.workers.worker_pool`): builds what every worker would
otherwise build for itself, so that each pool's workers fork with it ready."""
from pipeline import minhash

minhash.casefold_differs()
