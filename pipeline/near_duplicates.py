"""Near-duplicate search over a stream: pass 1 sketches every row, then candidate pairs from shared band
keys are verified by exact Jaccard. The dedupe stage drives it; the executor chooses where it runs (this
process and a process pool here; a Ray cluster in pipeline/ray_executor.py, with the same results). The
numpy primitives it is made of are in `pipeline.minhash`.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.minhash import candidate_pairs, jaccard, sketch
from pipeline.workers import worker_pool
from schemas.kinds import record_kind


def verify_pairs(sets: str | list[tuple[str, int]], set_offsets: np.ndarray, left: np.ndarray,
                 right: np.ndarray, threshold: float) -> np.ndarray:
    """Worker job: Jaccard of pairs (row indices) from spilled shingle sets: all rows' sorted fingerprints,
    flattened with `set_offsets`, in one file (`sets` a path) or in consecutive pieces (`sets` a list of
    (path, first position), as the Ray executor's workers write them). The sets a chunk of pairs needs are
    read with `pread`, not through a memory map: a mapped file's pages are mapped in around every page
    touched (large folios), so reading 20k scattered sets of an 800 MB spill file put all 800 MB in each
    worker's resident memory (1M rows: two workers at 0.8–0.9 GB each, mostly that file)."""
    pieces = [(sets, 0)] if isinstance(sets, str) else list(sets)
    starts = np.array([start for _, start in pieces] + [int(set_offsets[-1])], dtype=np.int64)
    item = np.dtype(np.uint64).itemsize

    def read(positions: np.ndarray) -> np.ndarray:
        """`positions` are whole sets one after another (`minhash.jaccard`): each distinct run of consecutive
        positions within one file is read once."""
        if not len(positions):
            return np.empty(0, dtype=np.uint64)
        piece = np.searchsorted(starts, positions, side="right") - 1
        breaks = np.flatnonzero((np.diff(positions) != 1) | (np.diff(piece) != 0)) + 1
        run_first = np.concatenate([[0], breaks])
        run_start, run_len = positions[run_first], np.diff(np.concatenate([run_first, [len(positions)]]))
        key = run_start * (int(run_len.max()) + 1) + run_len  # a run is its start and its length
        distinct, first, which = np.unique(key, return_index=True, return_inverse=True)
        u_start, u_len, u_piece = run_start[first], run_len[first], piece[run_first[first]]
        chunks = []
        for k in np.unique(u_piece).tolist():
            path, start = pieces[k]
            fd = os.open(path, os.O_RDONLY)
            try:
                sel = np.flatnonzero(u_piece == k)
                chunks.append((sel, [os.pread(fd, n * item, (p - start) * item)
                                     for p, n in zip(u_start[sel].tolist(), u_len[sel].tolist())]))
            finally:
                os.close(fd)
        order = np.concatenate([sel for sel, _ in chunks])
        data = np.frombuffer(b"".join(b for _, parts in chunks for b in parts), dtype=np.uint64)
        at = np.empty(len(distinct), dtype=np.int64)  # where each distinct run begins in `data`
        at[order] = np.concatenate([[0], np.cumsum(u_len[order])[:-1]])
        within = np.arange(len(positions)) - np.repeat(run_first, run_len)
        return data[np.repeat(at[which], run_len) + within]

    return jaccard(read, set_offsets, left, right, threshold)


@dataclass(frozen=True)
class SketchParams:
    """How rows are sketched: what text (the record kind's dedupe `key`), shingling, MinHash permutations,
    LSH bands (bands = 0: exact hashes only)."""

    shingle: str
    ngram: int
    num_perm: int
    seed: int
    bands: int
    rows: int
    kind: str = "classification"
    key: str = "text"
    char_ngram: int | None = None  # shingle "auto": characters per shingle for texts written without spaces
    punctuation: str = "keep"  # keep | drop | drop_short: punctuation and symbols before hashing (minhash.sketch)

    def columns(self) -> list[str]:
        """The columns the key is read from (the kind's payload)."""
        return record_kind(self.kind).payload_names

    def texts(self, batch: pa.RecordBatch) -> pa.Array:
        """The key text of every row of a batch (classification's `text` as it is)."""
        if self.kind == "classification" and self.key == "text":
            return batch.column("text")
        return record_kind(self.kind).key(self.key)(batch)


def sketch_batch(texts: pa.Array, params: SketchParams
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Worker job for pass 1: per text the normalized-text hash, the length in characters, the LSH band
    keys, and the shingle set (sorted fingerprints flattened, and their count per text)."""
    exact, keys, sets, counts = sketch(texts, params.shingle, params.ngram, params.num_perm, params.seed,
                                       params.bands, params.rows, params.char_ngram, params.punctuation)
    length = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
    return exact, length, keys, sets, counts


def _done(result) -> Future:
    future: Future = Future()
    future.set_result(result)
    return future


class LocalNearDuplicates:
    """Near-duplicate search in this process and a pool of `workers` processes.

    `sketch` reads the stream's texts once: band keys stay in memory (8 bytes × bands per row), shingle
    sets are spilled to a file in `spill_dir`. `edges` then pairs rows that share a band key and verifies
    each pair by exact Jaccard, in parallel parts. Use as a context manager (the pool is shut down).
    """

    PARALLEL_VERIFY_MIN_PAIRS = 10_000  # fewer candidate pairs are verified in this process

    def __init__(self, params: SketchParams, *, workers: int, spill_dir: str | Path):
        self.params, self.workers = params, max(1, int(workers))
        self.sets_path = str(Path(spill_dir) / "shingle-sets.u64")
        self.pool: ProcessPoolExecutor | None = None
        self.keys = np.zeros((0, params.bands), np.uint64)
        self.set_offsets = np.zeros(1, np.int64)

    def __enter__(self) -> "LocalNearDuplicates":
        self.pool = worker_pool(self.workers)
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def sketch(self, inputs, progress: Callable[[int], None] = lambda n: None) -> dict[str, np.ndarray]:
        """Pass 1 over `inputs` (a StageInput): per row, in stream order, `exact` (hash of the normalized
        text) and `length` (characters)."""
        exact, length, keys, sizes = [], [], [], []
        pending: list = []

        def collect(result) -> None:
            e, l, k, fingerprints, counts = result
            exact.append(e)
            length.append(l)
            keys.append(k)
            sizes.append(counts)
            fingerprints.tofile(sets_file)

        # Whether a worker has returned a result (the pool is up), and the jobs submitted until then. Only
        # until then: a future holds its result, and holding every batch's would hold every row's shingle
        # set (1M rows of the pipeline benchmark: 0.9 GB more at the stage's peak).
        pool_started, starting = False, []
        with open(self.sets_path, "wb") as sets_file:
            for batch in inputs.batches(columns=self.params.columns()):
                texts = self.params.texts(batch)
                if self.pool is None:
                    collect(sketch_batch(texts, self.params))
                else:
                    if not pool_started and any(f.done() for f in starting):
                        pool_started, starting = True, []
                    if not pool_started and len(starting) >= self.workers:
                        # The workers are still starting (a fresh fork server imports numpy and pyarrow:
                        # ~0.5 s, a fifth of 100k rows' work) and have a batch each queued: this process
                        # sketches the batch itself meanwhile instead of waiting.
                        pending.append(_done(sketch_batch(texts, self.params)))
                    else:
                        pending.append(self.pool.submit(sketch_batch, texts, self.params))
                        if not pool_started:
                            starting.append(pending[-1])
                    # Bounded read-ahead; results are consumed in stream order (determinism).
                    while len(pending) > 2 * self.workers:
                        collect(pending.pop(0).result())
                progress(batch.num_rows)
            for future in pending:
                collect(future.result())
        self.keys = np.concatenate(keys) if keys else self.keys
        self.set_offsets = np.concatenate([[0], np.cumsum(np.concatenate(sizes))]).astype(np.int64)
        return {"exact": np.concatenate(exact), "length": np.concatenate(length)}

    def edges(self, rows: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
        """Verified pairs among `rows` (row indices): (left, right, jaccard) with jaccard ≥ threshold,
        sorted by (left, right), left < right; the number of candidate pairs; the largest LSH bucket."""
        left, right, largest = candidate_pairs(self.keys[rows], rows)
        self.keys = self.keys[:0]  # not needed any more
        n_candidates = len(left)
        if not n_candidates:
            return left, right, np.zeros(0, np.float64), 0, largest
        weight = self._verify(left, right, threshold)
        edge = weight >= threshold
        return left[edge], right[edge], weight[edge], n_candidates, largest

    def _verify(self, left: np.ndarray, right: np.ndarray, threshold: float) -> np.ndarray:
        """Jaccard of every candidate pair; pairs are split over the workers (consecutive pairs share rows,
        so each part reads back few sets)."""
        if self.pool is None or len(left) < self.PARALLEL_VERIFY_MIN_PAIRS:
            return verify_pairs(self.sets_path, self.set_offsets, left, right, threshold)
        # Parts of at most ~1M pairs, so that each job reads back a bounded share of the sets.
        n_parts = max(2 * self.workers, -(-len(left) // 1_000_000))
        cuts = np.linspace(0, len(left), n_parts + 1).astype(int)
        parts = [self.pool.submit(verify_pairs, self.sets_path, self.set_offsets, left[a:b], right[a:b], threshold)
                 for a, b in zip(cuts[:-1], cuts[1:])]
        return np.concatenate([p.result() for p in parts])
