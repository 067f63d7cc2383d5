"""Near mode of decontamination: rows that are near copies of an evaluation item as whole texts — the
dedupe stage's MinHash LSH (pipeline.minhash.sketch, bands tuned at `lsh_threshold`) between our rows
and the eval items, every candidate pair verified by the exact Jaccard of their shingle sets at
`threshold`, as dedupe verifies. Texts are normalized as the n-gram mode normalizes them
(pipeline.decontamination.normalize: punctuation deleted, each character of an unspaced script a token),
so word shingles of Chinese are character shingles.

Defaults (shingles of 3 tokens, Jaccard ≥ 0.5, LSH tuned at 0.4) were chosen on the benchmark's planted
paraphrases (one word edit per ~8 words): see benchmarks/decontaminate/README.md for what 5-token
shingles or a lower threshold find and flag instead.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline import minhash
from pipeline.decontamination import Normalized, normalize
from pipeline.minhash import _pieces, _ranges


@dataclass(frozen=True)
class NearParams:
    """Shingles of `ngram` normalized tokens (words; characters of unspaced scripts), MinHash with
    `num_perm` permutations, LSH bands tuned at `lsh_threshold`, pairs kept at Jaccard ≥ `threshold`."""

    ngram: int = 3
    num_perm: int = 128
    threshold: float = 0.5
    lsh_threshold: float = 0.4
    seed: int = 1

    def __post_init__(self):
        if not 0 < self.lsh_threshold <= self.threshold <= 1:
            raise ValueError("need 0 < lsh_threshold <= threshold <= 1")

    @property
    def bands_rows(self) -> tuple[int, int]:
        return minhash.bands_rows(self.lsh_threshold, self.num_perm)


def _normalized_strings(norm: Normalized) -> pa.Array:
    """The normalized texts as an Arrow string array (minhash.sketch normalizes them again: a no-op)."""
    offsets = pa.py_buffer(norm.offsets.astype(np.int32))
    return pa.StringArray.from_buffers(len(norm.offsets) - 1, offsets, pa.py_buffer(norm.data))


def _sketch(texts: pa.Array, params: NearParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Band keys (texts × bands), shingle fingerprints (sorted per text, flattened), their offsets, and
    which texts are empty once normalized (minhash gives those one empty shingle: they must match nothing)."""
    bands, rows = params.bands_rows
    keys, sets, counts = [np.zeros((0, bands), np.uint64)], [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
    empty = [np.zeros(0, bool)]
    for piece in _pieces(texts):
        norm = normalize(piece)
        _, k, s, c = minhash.sketch(_normalized_strings(norm), "word", params.ngram, params.num_perm,
                                    params.seed, bands, rows)
        keys.append(k)
        sets.append(s)
        counts.append(c)
        empty.append(norm.n_tokens == 0)
    counts = np.concatenate(counts)
    return (np.concatenate(keys), np.concatenate(sets), np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            np.concatenate(empty))


@dataclass
class NearIndex:
    """Eval items' LSH band keys (per band: sorted keys and their items) and shingle sets."""

    params: NearParams
    band_keys: list[np.ndarray]
    band_items: list[np.ndarray]
    sets: np.ndarray
    set_offsets: np.ndarray
    empty: np.ndarray

    @classmethod
    def build(cls, texts: pa.Array, params: NearParams = NearParams()) -> "NearIndex":
        keys, sets, offsets, empty = _sketch(texts, params)
        band_keys, band_items = [], []
        for b in range(keys.shape[1]):
            order = np.argsort(keys[:, b], kind="stable")
            band_keys.append(keys[order, b])
            band_items.append(order)
        return cls(params, band_keys, band_items, sets, offsets, empty)

    def __len__(self) -> int:
        return len(self.set_offsets) - 1

    def save(self, folder: str | Path) -> Path:
        """Write the index as .npy files and near.json in `folder` (worker processes `load` it memory-mapped,
        as `NgramIndex` does)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        bands = len(self.band_keys)
        np.save(folder / "band_keys.npy", np.stack(self.band_keys) if bands else np.zeros((0, len(self)), np.uint64))
        np.save(folder / "band_items.npy", np.stack(self.band_items) if bands else np.zeros((0, len(self)), np.int64))
        for name in ("sets", "set_offsets", "empty"):
            np.save(folder / f"{name}.npy", getattr(self, name))
        (folder / "near.json").write_text(json.dumps(asdict(self.params)))
        return folder

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "NearIndex":
        folder = Path(folder)
        mode = "r" if mmap else None
        keys, items = (np.load(folder / f"{name}.npy", mmap_mode=mode) for name in ("band_keys", "band_items"))
        return cls(NearParams(**json.loads((folder / "near.json").read_text())), list(keys), list(items),
                   *(np.load(folder / f"{name}.npy", mmap_mode=mode) for name in ("sets", "set_offsets", "empty")))


@dataclass
class NearMatches:
    """Per matched row: row index, the most similar eval item (lowest index among equals), exact Jaccard."""

    row: np.ndarray
    item: np.ndarray
    jaccard: np.ndarray

    def __len__(self) -> int:
        return len(self.row)


def find_near_copies(index: NearIndex, texts: pa.Array, first_row: int = 0) -> NearMatches:
    """Rows of `texts` whose shingle-set Jaccard to an eval item is ≥ the index's threshold, each with its
    most similar item; only LSH candidates are compared, each exactly."""
    keys, sets, offsets, empty = _sketch(texts, index.params)
    n_items = len(index)
    codes = []
    for b, (sorted_keys, items) in enumerate(zip(index.band_keys, index.band_items)):
        lo = np.searchsorted(sorted_keys, keys[:, b], side="left")
        hi = np.searchsorted(sorted_keys, keys[:, b], side="right")
        row = np.repeat(np.arange(len(keys)), hi - lo)
        codes.append(row * n_items + items[_ranges(lo, hi - lo)])
    codes = minhash.distinct(np.concatenate(codes)) if codes else np.zeros(0, np.int64)
    row, item = codes // max(n_items, 1), codes % max(n_items, 1)
    if not len(codes):
        return NearMatches(row, item, np.zeros(0))
    fingerprints = np.concatenate([index.sets, sets])
    all_offsets = np.concatenate([index.set_offsets, index.set_offsets[-1] + offsets[1:]])
    jaccard = minhash.jaccard(fingerprints, all_offsets, item, n_items + row, index.params.threshold)
    keep = (jaccard >= index.params.threshold) & ~empty[row] & ~index.empty[item]  # NaN (pruned by size): false
    row, item, jaccard = row[keep], item[keep], jaccard[keep]
    order = np.lexsort((item, -jaccard, row))
    first = np.ones(len(order), dtype=bool)
    first[1:] = row[order][1:] != row[order][:-1]
    pick = order[first]
    return NearMatches(row[pick] + first_row, item[pick], jaccard[pick])
