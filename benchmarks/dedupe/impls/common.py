"""What every implementation runner shares. Imported by runners in the project's venv and in the peers'
venv (.peers), so it needs only the standard library, numpy and pyarrow.

A runner is `python impls/NAME.py CORPUS.parquet OUT.npz [--workers N]`. It times from reading the corpus
to having its result (imports and interpreter start excluded; `main_epoch` and `result_epoch`, wall-clock
times at the start of `main` and when the result was ready, let `run.py` add the start-up it saw from
outside), and writes per row: `kept` (bool), `rep`
(the row a removed row was removed for: its named duplicate, or its cluster's kept row; -1 if kept) and
`cluster` (cluster id, for pair recall), plus `seconds` and `peak_rss_mb` (this process and its children).
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pyarrow.parquet as pq

NGRAM = 5
NUM_PERM = 128
THRESHOLD = 0.8


_MAIN = {}  # wall clock and perf counter when main() began (after the runner's imports)


def args() -> argparse.Namespace:
    """The runner's arguments; called first in every runner's main(), so it also marks where start-up ends."""
    _MAIN.update(epoch=time.time(), perf=time.perf_counter())
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus")
    parser.add_argument("out")
    parser.add_argument("--workers", type=int, default=2)
    return parser.parse_args()


def read_texts(path: str) -> list[str]:
    return pq.read_table(path, columns=["text"]).column("text").to_pylist()


def shingles(text: str, n: int = NGRAM) -> list[str]:
    """The benchmark's shingling: casefold, whitespace collapsed, word n-grams; a shorter text is one."""
    words = text.casefold().split()
    if len(words) < n:
        return [" ".join(words)]
    return [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]


def clusters_from_pairs(n: int, left, right) -> np.ndarray:
    """Union-find over candidate pairs, the way the LSH peers cluster: each row's root is the smallest
    row index of its component."""
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(left, right):
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.int64)


def keep_first_of_cluster(cluster: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union-find dedupe: the first row of each cluster stays, the others name it."""
    n = len(cluster)
    _, first = np.unique(cluster, return_index=True)
    rep_of_cluster = {int(cluster[i]): int(i) for i in first}
    rep = np.array([rep_of_cluster[int(c)] for c in cluster], dtype=np.int64)
    kept = rep == np.arange(n)
    rep[kept] = -1
    return kept, rep


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def write(out: str, kept, rep, cluster, started: float, result_seconds: float | None = None, **extra) -> None:
    """Save the result; `result_seconds` is when the result was ready, if converting it took extra time."""
    seconds = result_seconds if result_seconds is not None else time.perf_counter() - started
    result_epoch = _MAIN["epoch"] + (started + seconds - _MAIN["perf"])
    np.savez(out, kept=np.asarray(kept, bool), rep=np.asarray(rep, np.int64), cluster=np.asarray(cluster, np.int64),
             seconds=seconds, peak_rss_mb=peak_rss_mb(), main_epoch=_MAIN["epoch"], result_epoch=result_epoch, **extra)
