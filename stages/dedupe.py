"""dedupe: remove exact and near duplicates, keeping one verified representative per neighbourhood.

How a run goes (the stage needs the whole stream; it reads its input twice and never holds the corpus in
Python objects, only per-row numpy arrays):

1. *Signatures* (first read, spread over `ctx.workers` processes). Each batch's texts are normalized
   exactly as `" ".join(text.casefold().split())`, as UTF-8 bytes in numpy. A shingle is the text of
   `ngram` consecutive tokens (words, or characters with `shingle: char`); a text with fewer tokens is one
   shingle of all of them, so a three-word SMS is still compared (at Jaccard 1 or 0 to its look-alikes).
   Every shingle of the batch is hashed at once (polynomial hashes of byte ranges from prefix sums), then
   MinHashed: `num_perm` permutations `a·x + b mod 2³²` as numpy arrays, min-reduced per text. Only the
   LSH band keys are kept, plus the hash of the whole normalized text (exact step) and the text's
   shingle set (sorted 44-bit fingerprints), which goes to a temporary file.
2. *Exact duplicates* share the normalized-text hash; one representative per group stays in play.
3. *Candidates.* Representatives that share a band key in any band are candidate pairs (grouped with
   numpy sorts, not dicts). Bands × rows come from datasketch's parameter optimizer at `lsh_threshold`,
   lower than `threshold`: every candidate is verified, so a low LSH threshold only costs verification
   time, and it is what keeps pairs just above `threshold` from being missed (25 × 5 at 0.5: a pair at
   Jaccard 0.8 is missed with probability 5·10⁻⁵).
4. *Verification.* The candidates' shingle sets are read back and each pair's Jaccard is computed
   exactly (on fingerprints: two different shingles of a pair collide with probability ~|A|·|B|/2⁴⁴);
   pairs at ≥ `threshold` are edges.
5. *Decision.* Greedy over rows by priority — a labelled row first, then the longest text, then the first
   seen: a row is kept unless an already kept row is an edge neighbour, in which case it is removed and
   names that neighbour (the most similar kept one) in `duplicate_of`. So every removed row names a kept
   row it is verified similar to, and no two kept rows are verified similar. (Dropping whole union-find
   clusters would not: in a chain A≈B≈C with A≉C, C would be dropped for A.)
6. *Routing* (second read): kept rows get `cluster_id` — the connected component over exact groups and
   verified edges, numbered by first appearance — and removed rows go to `rejected` with
   `{"duplicate_of", "jaccard", "cluster_id"}`.

Everything is a function of the rows and their stream order, not of how the stream is cut into batches.
Clusters whose members carry different labels are counted and exemplified in `stats`: label noise users
need to see. Progress is reported during the first read, which is most of the time.
"""
from __future__ import annotations

import functools
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch.lsh import _optimal_param
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import schemas
from pipeline.stage import Stage, StageInput, StageOutput, rejected_rows


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    exact: bool = Field(True, description="remove rows whose normalized text (casefold, whitespace collapsed) repeats")
    near: bool = Field(True, description="remove rows whose shingle-set Jaccard to a kept row is >= threshold")
    shingle: Literal["word", "char"] = Field("word", description="n-grams of whitespace-separated words or of characters")
    ngram: int = Field(5, ge=1, le=64, description="shingle length in tokens; shorter texts get one shingle of all their tokens")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard at or above which two rows are duplicates")
    lsh_threshold: float = Field(
        0.5, gt=0.0, le=1.0,
        description="threshold the LSH bands are tuned for; lower finds more candidates (all are verified)",
    )
    seed: int = Field(1, description="seed of the MinHash permutations")

    @model_validator(mode="after")
    def _lsh_not_above_threshold(self) -> "Config":
        if self.lsh_threshold > self.threshold:
            raise ValueError(f"lsh_threshold ({self.lsh_threshold}) must not exceed threshold ({self.threshold})")
        return self

    def bands_rows(self) -> tuple[int, int]:
        """(bands, rows per band) minimizing datasketch's false positive + false negative areas."""
        return _bands_rows(self.lsh_threshold, self.num_perm)


@functools.lru_cache(maxsize=None)
def _bands_rows(lsh_threshold: float, num_perm: int) -> tuple[int, int]:
    return _optimal_param(lsh_threshold, num_perm, 0.5, 0.5)


# ---------------------------------------------------------------------------------------------------------
# Shingling and signatures: pure functions of one batch of texts (run in worker processes).

def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads every input bit over the whole word (returns a new array)."""
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values, by sorting in place (np.unique's hash path in numpy ≥ 2.3 is slower here)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + l) for every (s, l)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    before = np.cumsum(lengths) - lengths
    return np.repeat(np.asarray(starts, dtype=np.int64) - before, lengths) + np.arange(int(lengths.sum()))


# Python's str.isspace() characters beyond ASCII: texts holding one take the slow (Python) path.
_UNICODE_SPACE = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(0x80, 0x3001)) if c.isspace()) + "]"
_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[[0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20]] = True
_EDGE_SPACE = r"^[\t-\r\x1c-\x1f ]|[\t-\r\x1c-\x1f ]$"
_ASCII_LOWER = np.arange(256, dtype=np.uint8)
_ASCII_LOWER[0x41:0x5B] += 0x20
_ASCII_LOWER[_ASCII_SPACE] = 0x20


@functools.lru_cache(maxsize=1)
def _casefold_differs() -> str:
    """An RE2 class of the characters whose Python casefold differs from Arrow's utf8_lower (ß, ς, ﬁ,
    Cherokee, ...): texts holding one take the slow (Python) path. Cased characters all lie below
    U+20000. (Python folds them NUL-separated in one call; Arrow is slow on one huge string.)"""
    chars = [chr(i) for i in range(1, 0x20000) if not 0xD800 <= i < 0xE000]
    folded = "\0".join(chars).casefold().split("\0")
    lowered = pc.utf8_lower(pa.array(chars, pa.string())).to_pylist()
    differing = [c for c, f, low in zip(chars, folded, lowered) if f != low]
    return "[" + "".join(f"\\x{{{ord(c):x}}}" for c in differing) + "]"


def _utf8(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a string array and each string's start offset into them (n + 1 offsets)."""
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset: texts.offset + len(texts) + 1]
    data = texts.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return data[offsets[0]: offsets[-1]], offsets.astype(np.int64) - offsets[0]


def normalize(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Python's `" ".join(text.casefold().split())` of every text, as UTF-8 bytes and offsets.

    Arrow lowercases the non-ASCII texts and numpy the ASCII letters and whitespace runs. The few texts
    whose casefold differs from Arrow's lowercase (ß, ς, ...), that hold non-ASCII whitespace or that
    start or end with whitespace go through Python.
    """
    original = texts
    slow = pc.match_substring_regex(texts, _EDGE_SPACE).to_numpy(zero_copy_only=False)
    non_ascii = ~pc.string_is_ascii(texts).to_numpy(zero_copy_only=False)
    if non_ascii.any():
        subset = texts.filter(pa.array(non_ascii))
        slow[non_ascii] |= pc.or_(pc.match_substring_regex(subset, _casefold_differs()),
                                  pc.match_substring_regex(subset, _UNICODE_SPACE)).to_numpy(zero_copy_only=False)
        texts = pc.replace_with_mask(texts, pa.array(non_ascii), pc.utf8_lower(subset))
    if slow.any():
        idx = np.flatnonzero(slow)
        folded = [" ".join(s.casefold().split()) for s in original.take(pa.array(idx)).to_pylist()]
        texts = pc.replace_with_mask(texts, pa.array(slow), pa.array(folded, pa.string()))
    data, offsets = _utf8(texts)
    space = _ASCII_SPACE[data]
    data = _ASCII_LOWER[data]  # A-Z → a-z, whitespace → " " (bytes < 0x80 are never part of a longer character)
    # No text starts or ends with whitespace any more: collapsing a run = dropping a space after a space.
    keep = ~space
    keep[1:] |= ~space[:-1]
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    return data[keep], kept_before[offsets]


_BASE = 0x100000001B3  # odd, so invertible mod 2^64
_POWERS: list[np.ndarray] = [np.ones(1, np.uint64), np.ones(1, np.uint64)]  # B^j and B^-j, grown on demand


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    if len(_POWERS[0]) < n:
        size = max(n, 2 * len(_POWERS[0]))
        for k, base in enumerate((_BASE, pow(_BASE, -1, 2**64))):
            p = np.full(size, base, dtype=np.uint64)
            p[0] = 1
            _POWERS[k] = np.cumprod(p, out=p)
    return _POWERS[0][:n], _POWERS[1][:n]


class _SubstringHasher:
    """Polynomial hashes mod 2⁶⁴ of arbitrary byte ranges of one buffer, all at once.

    With prefix sums G[k] = Σ_{j<k} byte_j·B^j, the range [s, e) hashes to (G[e] − G[s])·B^(−s), which
    depends only on its bytes; the result is mixed with the length and through splitmix64.
    """

    def __init__(self, data: np.ndarray):
        powers, self.inverse = _powers(len(data) + 1)
        self.prefix = np.zeros(len(data) + 1, dtype=np.uint64)
        np.cumsum(data * powers[:-1], out=self.prefix[1:])

    def __call__(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        h = (self.prefix[ends] - self.prefix[starts]) * self.inverse[starts]
        return _mix64(h ^ (ends - starts).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def _token_starts(data: np.ndarray, doc_offsets: np.ndarray, shingle: str) -> tuple[np.ndarray, np.ndarray]:
    """Start byte of every token (word, or code point) of every document, and each document's token
    offsets. Documents are normalized: words are separated by exactly one space. An empty document has
    one empty token."""
    n_docs = len(doc_offsets) - 1
    # Token starts other than each document's own start:
    if shingle == "word":
        inner_mask = np.zeros(len(data), dtype=bool)
        inner_mask[1:] = data[:-1] == 0x20  # a word starts after each space (never the last byte of a text)
    else:
        inner_mask = (data & 0xC0) != 0x80  # a code point starts at each non-continuation byte
        inner_mask[doc_offsets[:-1][np.diff(doc_offsets) > 0]] = False
    before = np.concatenate([[0], np.cumsum(inner_mask)])
    per_doc = before[doc_offsets[1:]] - before[doc_offsets[:-1]]
    inner = np.flatnonzero(inner_mask)
    doc_of_inner = np.repeat(np.arange(n_docs), per_doc)
    counts = per_doc + 1
    tok_offsets = np.concatenate([[0], np.cumsum(counts)])
    starts = np.empty(int(tok_offsets[-1]), dtype=np.int64)
    starts[tok_offsets[:-1]] = doc_offsets[:-1]
    first_inner = np.concatenate([[0], np.cumsum(counts - 1)])
    starts[tok_offsets[doc_of_inner] + 1 + np.arange(len(inner)) - first_inner[doc_of_inner]] = inner
    return starts, tok_offsets


def shingle_hashes(data: np.ndarray, doc_offsets: np.ndarray, shingle: str,
                   ngram: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """64-bit hashes of every document's shingles, flattened; per-document shingle offsets; and the
    hash of each whole document. Documents are normalized UTF-8 (`normalize`).

    A shingle is the text of `ngram` consecutive tokens; a document with fewer tokens is one shingle.
    Repeated shingles of a document are kept: MinHash does not care and verification takes distinct ones.
    """
    hasher = _SubstringHasher(data)
    doc_hash = hasher(doc_offsets[:-1], doc_offsets[1:])
    starts, tok_offsets = _token_starts(data, doc_offsets, shingle)
    n_tokens = np.diff(tok_offsets)
    counts = np.maximum(n_tokens - ngram + 1, 1)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # Shingle k of a document spans its tokens k .. k+ngram-1, i.e. up to the start of token k+ngram
    # (less the separating space for words) or the document's end.
    first_token = _ranges(tok_offsets[:-1], counts)
    doc = np.repeat(np.arange(len(counts)), counts)
    last = first_token + ngram  # token index just past the shingle
    at_end = last >= tok_offsets[1:][doc]
    end = np.where(at_end, doc_offsets[1:][doc], starts[np.minimum(last, len(starts) - 1)] - (1 if shingle == "word" else 0))
    return hasher(starts[first_token], end), offsets, doc_hash


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The MinHash permutations x ↦ a·x + b mod 2³² (a odd) of the shingle hashes' top 32 bits.

    32-bit arithmetic halves the memory traffic of the hot loop; the collision rate per permutation and
    the band S-curve match theory (J and 1-(1-J^r)^b) on sets of controlled Jaccard.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = rng.integers(0, 2**32, num_perm, dtype=np.uint64).astype(np.uint32)
    return a, b


def minhash(hashes: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray,
            chunk_shingles: int = 1 << 14) -> np.ndarray:
    """MinHash signatures, permutations × documents (uint32); every document has ≥ 1 shingle.

    Permutations are the outer axis so that the min-reduction per document runs over contiguous memory.
    """
    n_docs = len(offsets) - 1
    x = (hashes >> np.uint64(32)).astype(np.uint32)
    sig = np.empty((len(a), n_docs), dtype=np.uint32)
    buf = np.empty((len(a), chunk_shingles), dtype=np.uint32)
    d0 = 0
    while d0 < n_docs:
        # As many whole documents as fit in the buffer (at least one).
        d1 = max(int(np.searchsorted(offsets, offsets[d0] + chunk_shingles, side="right")) - 1, d0 + 1)
        d1 = min(d1, n_docs)
        s0, s1 = int(offsets[d0]), int(offsets[d1])
        out = buf[:, : s1 - s0] if s1 - s0 <= chunk_shingles else np.empty((len(a), s1 - s0), np.uint32)
        np.multiply(a[:, None], x[None, s0:s1], out=out)
        out += b[:, None]
        sig[:, d0:d1] = np.minimum.reduceat(out, offsets[d0:d1] - s0, axis=1)
        d0 = d1
    return sig


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit key per (document, band) summarizing the band's `rows` signature values."""
    mult = np.random.default_rng(0x5EED).integers(0, 2**63, rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    acc = np.zeros((sig.shape[1], bands), dtype=np.uint64)
    for k in range(rows):
        acc += sig[k: bands * rows: rows].T.astype(np.uint64) * mult[k]
    return _mix64(acc)


def _pieces(texts: pa.Array, max_bytes: int = 1 << 20) -> Iterator[pa.Array]:
    """Consecutive slices of about max_bytes of text (at least one row each). Per-byte temporaries then
    stay a few MB, which the allocator recycles instead of mapping fresh pages for every array."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    texts = texts.cast(pa.string())  # the schema's type; large_string input (from pandas) too
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32)[texts.offset: texts.offset + len(texts) + 1]
    i, n = 0, len(texts)
    while i < n:
        j = min(max(int(np.searchsorted(offsets, offsets[i] + max_bytes, side="right")) - 1, i + 1), n)
        yield texts.slice(i, j - i)
        i = j


FINGERPRINT_BITS = 44  # shingle fingerprints for verification; 20 bits are left for a pair tag


def shingle_sets(hashes: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each document's distinct shingle fingerprints (top 44 bits of the hash), sorted, flattened, and
    per-document counts. (Two different shingles of a compared pair share a fingerprint with probability
    below |A|·|B|/2⁴⁴, about 10⁻⁸ for two 300-shingle texts.)"""
    n_docs = len(offsets) - 1
    doc = np.repeat(np.arange(n_docs, dtype=np.uint64), np.diff(offsets))
    if n_docs >= 2 ** (64 - FINGERPRINT_BITS):
        raise ValueError("too many documents in one piece")
    keys = _distinct((doc << np.uint64(FINGERPRINT_BITS)) | (hashes >> np.uint64(64 - FINGERPRINT_BITS)))
    counts = np.bincount((keys >> np.uint64(FINGERPRINT_BITS)).astype(np.int64), minlength=n_docs)
    return keys & np.uint64((1 << FINGERPRINT_BITS) - 1), counts


def signature_batch(texts: pa.Array, config: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Worker job for pass 1: per row the exact hash, the LSH band keys, and the shingle set (sorted
    fingerprints, flattened, and their count per row)."""
    cfg = Config(**config)
    bands, rows = cfg.bands_rows() if cfg.near else (0, 0)
    perms = permutations(cfg.num_perm, cfg.seed)
    exact, keys = [np.zeros(0, np.uint64)], [np.zeros((0, bands), np.uint64)]
    sets, counts = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
    for piece in _pieces(texts):
        hashes, shingle_offsets, doc_hash = shingle_hashes(*normalize(piece), cfg.shingle, cfg.ngram)
        exact.append(doc_hash)
        if cfg.near:
            keys.append(band_keys(minhash(hashes, shingle_offsets, *perms), bands, rows))
            fingerprints, n = shingle_sets(hashes, shingle_offsets)
            sets.append(fingerprints)
            counts.append(n)
    return np.concatenate(exact), np.concatenate(keys), np.concatenate(sets), np.concatenate(counts)


# ---------------------------------------------------------------------------------------------------------
# Graph helpers (numpy over all rows).


def _segments(offsets: np.ndarray, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of segments `which` of a flattened array with `offsets`, and their lengths."""
    lengths = offsets[which + 1] - offsets[which]
    return _ranges(offsets[which], lengths), lengths


def _pairs_in_groups(members: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (members[p], members[q]) with p < q inside one group; groups are ranges [start, end)."""
    sizes = ends - starts
    pos = _ranges(starts, sizes)
    later = np.repeat(ends, sizes) - pos - 1  # positions after p in its group
    left = np.repeat(pos, later)
    right = _ranges(pos + 1, later)
    return members[left], members[right]


def candidate_pairs(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs (i < j) of `rows` sharing a key in any band (keys: len(rows) × bands); largest bucket size."""
    codes, pending = np.zeros(0, np.int64), []
    n_total = int(rows.max()) + 1 if len(rows) else 1
    largest = 0
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        sorted_keys = keys[order, band]
        boundary = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
        starts = np.concatenate([[0], boundary])
        ends = np.concatenate([boundary, [len(sorted_keys)]])
        multi = ends - starts > 1
        if not multi.any():
            continue
        largest = max(largest, int((ends - starts).max()))
        left, right = _pairs_in_groups(rows[order], starts[multi], ends[multi])
        lo, hi = np.minimum(left, right), np.maximum(left, right)
        # The bands' pair lists overlap heavily: merge them whenever the unmerged ones outgrow the merged
        # set, which keeps memory near the distinct count without re-sorting it for every band.
        pending.append(_distinct(lo.astype(np.int64) * n_total + hi))
        if sum(map(len, pending)) > max(len(codes), 1 << 20):
            codes = _distinct(np.concatenate([codes, *pending]))
            pending = []
    codes = _distinct(np.concatenate([codes, *pending]))
    return codes // n_total, codes % n_total, largest


def jaccard(fingerprints, offsets: np.ndarray, left: np.ndarray, right: np.ndarray,
            threshold: float = 0.0, chunk_elements: int = 1 << 21) -> np.ndarray:
    """Jaccard of pairs of sets (sorted fingerprints flattened with `offsets`); NaN for pairs whose sizes
    alone put them below `threshold` (|A|/|B| bounds the Jaccard). `fingerprints` is an array, or a
    function from positions to fingerprints (to read them from disk a chunk at a time)."""
    read = fingerprints.__getitem__ if isinstance(fingerprints, np.ndarray) else fingerprints
    out = np.full(len(left), np.nan)
    sizes = np.diff(offsets)
    small = np.where(sizes[left] <= sizes[right], left, right)  # the smaller set is looked up in the larger
    large = np.where(sizes[left] <= sizes[right], right, left)
    todo = np.flatnonzero(sizes[small] >= threshold * sizes[large])
    small, large = small[todo], large[todo]
    work = np.cumsum(sizes[small] + sizes[large])
    p0 = 0
    while p0 < len(todo):
        base = work[p0 - 1] if p0 else 0
        p1 = min(max(int(np.searchsorted(work, base + chunk_elements, side="right")), p0 + 1),
                 p0 + 2 ** (64 - FINGERPRINT_BITS) - 1)
        tag = np.arange(p1 - p0, dtype=np.uint64) << np.uint64(FINGERPRINT_BITS)
        # (pair tag, fingerprint) packed into one sortable word; both sides come out sorted by construction.
        pos_a, len_a = _segments(offsets, small[p0:p1])
        pos_b, len_b = _segments(offsets, large[p0:p1])
        key_a = np.repeat(tag, len_a) | read(pos_a)
        key_b = np.repeat(tag, len_b) | read(pos_b)
        at = np.minimum(np.searchsorted(key_b, key_a), len(key_b) - 1)
        hit = key_b[at] == key_a
        inter = np.bincount(np.repeat(np.arange(p1 - p0), len_a)[hit], minlength=p1 - p0)
        out[todo[p0:p1]] = inter / (len_a + len_b - inter)
        p0 = p1
    return out


def verify_pairs(sets_path: str, set_offsets: np.ndarray, left: np.ndarray, right: np.ndarray,
                 threshold: float) -> np.ndarray:
    """Worker job: Jaccard of pairs (row indices) from the shingle sets spilled at `sets_path` (all rows'
    sorted fingerprints, flattened with `set_offsets`). The file is mapped afresh for each chunk of pairs
    so that the pages read do not accumulate in this process's memory."""
    n_total = int(set_offsets[-1])

    def read(positions: np.ndarray) -> np.ndarray:
        spilled = np.memmap(sets_path, dtype=np.uint64, mode="r", shape=(n_total,))
        try:
            return np.asarray(spilled[positions])
        finally:
            del spilled

    return jaccard(read, set_offsets, left, right, threshold)


def greedy_keep(rank: np.ndarray, left: np.ndarray, right: np.ndarray, weight: np.ndarray,
                n: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximal independent set by priority (`rank`, lower first) over edges (left, right, weight).

    Returns, per row, the row it is removed for (-1 if kept) and that edge's weight. A row is removed for
    its most similar kept neighbour (ties: the better ranked one).

    Computed in rounds over numpy arrays: an undecided row whose undecided neighbours all rank below it
    is kept, and its undecided neighbours are removed. This gives exactly what visiting rows one by one
    in priority order gives (a row waits only for better-ranked neighbours), in as many rounds as the
    longest chain of such waits.
    """
    dup_of = np.full(n, -1, dtype=np.int64)
    dup_weight = np.zeros(n, dtype=np.float64)
    if not len(left):
        return dup_of, dup_weight
    src = np.concatenate([left, right])
    dst = np.concatenate([right, left])
    KEPT, REMOVED = 1, 2
    state = np.zeros(n, dtype=np.int8)
    undecided = np.zeros(n, dtype=bool)
    undecided[src] = True
    a, b = src, dst  # edges whose two ends are undecided
    while len(a):
        blocked = np.zeros(n, dtype=bool)
        blocked[a[rank[b] < rank[a]]] = True
        new_kept = undecided & ~blocked
        state[new_kept] = KEPT
        undecided[new_kept] = False
        removed = b[new_kept[a]]
        state[removed] = REMOVED
        undecided[removed] = False
        alive = undecided[a] & undecided[b]
        a, b = a[alive], b[alive]
    state[undecided] = KEPT  # rows left without undecided neighbours
    # Each removed row names its most similar kept neighbour (ties: best ranked).
    w = np.concatenate([weight, weight])
    named = (state[src] == REMOVED) & (state[dst] == KEPT)
    src, dst, w = src[named], dst[named], w[named]
    order = np.lexsort((rank[dst], -w, src))
    src, dst, w = src[order], dst[order], w[order]
    first = np.ones(len(src), dtype=bool)
    first[1:] = src[1:] != src[:-1]
    dup_of[src[first]] = dst[first]
    dup_weight[src[first]] = w[first]
    return dup_of, dup_weight


# ---------------------------------------------------------------------------------------------------------


class DedupeStage(Stage):
    name = "dedupe"
    output_schema = schemas.DEDUPED
    whole_stream = True
    Config = Config

    MAX_CONFLICT_EXAMPLES = 10
    MAX_EXAMPLE_ROWS = 10
    PARALLEL_VERIFY_MIN_PAIRS = 10_000  # fewer candidate pairs are verified in the main process

    def run(self, inputs: StageInput | None) -> Iterator[StageOutput]:
        cfg: Config = self.config
        if inputs is None or inputs.num_rows == 0:
            self.stats.update(exact_removed=0, near_removed=0, candidate_pairs=0, verified_pairs=0,
                              clusters=0, label_conflict_clusters=0, label_conflict_examples=[])
            return
        self._workers = max(1, int(self.ctx.workers))
        _casefold_differs()  # computed once, before the workers fork
        # Pass 1 spills each row's shingle set to a file; verification reads back the candidates' only.
        with tempfile.TemporaryDirectory(prefix="dedupe-") as tmp:
            self._sets_path = str(Path(tmp) / "shingle-sets.u64")
            pool = ProcessPoolExecutor(self._workers) if self._workers > 1 else None
            try:
                with open(self._sets_path, "wb") as self._sets_file:
                    state = self._pass_signatures(inputs, pool)
                n = state["n"]
                rank = np.lexsort((np.arange(n), -state["length"], ~state["has_label"]))
                rank = np.argsort(rank).astype(np.int64)  # position of each row in priority order

                # Exact groups: the best-ranked row of each normalized-text group represents it.
                rep = np.arange(n, dtype=np.int64)
                if cfg.exact:
                    order = np.lexsort((rank, state["exact"]))
                    h = state["exact"][order]
                    new_group = np.ones(n, dtype=bool)
                    new_group[1:] = h[1:] != h[:-1]
                    group_first = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
                    rep[order] = order[group_first]
                is_rep = rep == np.arange(n)

                left = right = np.zeros(0, np.int64)
                weight = np.zeros(0, np.float64)
                n_candidates, largest_bucket = 0, 0
                if cfg.near:
                    reps = np.flatnonzero(is_rep)
                    left, right, largest_bucket = candidate_pairs(state["bands"][reps], reps)
                    n_candidates = len(left)
                    del state["bands"]
                    if n_candidates:
                        weight = self._verify(pool, state["set_offsets"], left, right)
                        edge = weight >= cfg.threshold
                        left, right, weight = left[edge], right[edge], weight[edge]
            finally:
                if pool is not None:
                    pool.shutdown()

        dup_of, dup_jaccard = greedy_keep(rank, left, right, weight, n)
        reason = np.zeros(n, dtype=np.int8)  # 0 kept, 1 exact duplicate, 2 near duplicate
        reason[dup_of >= 0] = 2
        # An exact copy names its group's representative; if that one went as a near duplicate, it names
        # the same kept row (its shingle set is the representative's, so the Jaccard is the same too).
        exact_dup = ~is_rep
        rep_removed = exact_dup & (dup_of[rep] >= 0)
        dup_of[exact_dup] = rep[exact_dup]
        dup_jaccard[exact_dup] = 1.0
        reason[exact_dup] = 1
        dup_of[rep_removed] = dup_of[rep[rep_removed]]
        dup_jaccard[rep_removed] = dup_jaccard[rep[rep_removed]]
        reason[rep_removed] = 2

        # Clusters: components over exact groups and verified edges, numbered by first appearance.
        graph = coo_matrix(
            (np.ones(len(left) + n, np.int8), (np.concatenate([left, rep]), np.concatenate([right, np.arange(n)]))),
            shape=(n, n),
        )
        _, component = connected_components(graph, directed=False)
        _, first_row = np.unique(component, return_index=True)
        cluster_number = np.empty(len(first_row), np.int64)
        cluster_number[np.argsort(first_row, kind="stable")] = np.arange(len(first_row))
        cluster_id = cluster_number[component]

        conflicts, examples = self._label_conflicts(cluster_id, state["label_code"])
        example_rows = {int(r): None for ex in examples for r in ex}
        example_order = np.array(sorted(example_rows), dtype=np.int64)
        ids = state["ids"]
        referenced = np.unique(dup_of[dup_of >= 0])
        referenced_id = dict(zip(referenced.tolist(), ids.take(pa.array(referenced)).to_pylist()))
        del state

        start = 0
        for batch in inputs.batches():
            m = batch.num_rows
            sl = slice(start, start + m)
            keep = reason[sl] == 0
            kept = batch.filter(pa.array(keep))
            if "cluster_id" in kept.schema.names:
                kept = kept.drop_columns(["cluster_id"])
            kept = kept.append_column("cluster_id", pa.array(cluster_id[sl][keep], pa.int64()))
            kept = schemas.conform(kept, schemas.DEDUPED)
            rejected = None
            removed = np.flatnonzero(~keep)
            if len(removed):
                rows = batch.take(pa.array(removed))
                g = removed + start
                details = [
                    {"duplicate_of": referenced_id[int(dup_of[i])], "jaccard": round(float(dup_jaccard[i]), 4),
                     "cluster_id": int(cluster_id[i])}
                    for i in g
                ]
                reasons = np.where(reason[g] == 1, "exact_duplicate", "near_duplicate").tolist()
                rejected = rejected_rows(rows, self.name, reasons, details)
            wanted = example_order[(example_order >= start) & (example_order < start + m)].tolist()
            if wanted:
                local = pa.array([i - start for i in wanted])
                for i, id_, text, label in zip(wanted, batch.column("id").take(local).to_pylist(),
                                               batch.column("text").take(local).to_pylist(),
                                               batch.column("label").take(local).to_pylist()):
                    example_rows[i] = {"id": id_, "text": text, "label": label,
                                       "kept": bool(reason[i] == 0)}
            start += m
            yield StageOutput(kept=kept if kept.num_rows else None, rejected=rejected)

        sizes = np.bincount(cluster_id)
        self.stats.update(
            exact_removed=int((reason == 1).sum()),
            near_removed=int((reason == 2).sum()),
            candidate_pairs=int(n_candidates),
            verified_pairs=int(len(left)),
            largest_lsh_bucket=largest_bucket,
            clusters=int((sizes > 1).sum()),
            rows_in_clusters=int(sizes[sizes > 1].sum()),
            lsh_bands_rows=list(cfg.bands_rows()) if cfg.near else None,
            label_conflict_clusters=conflicts,
            label_conflict_examples=[
                {"cluster_id": int(cluster_id[ex[0]]), "rows": [example_rows[int(r)] for r in ex]} for ex in examples
            ],
        )

    # -- passes ------------------------------------------------------------------------------------------

    def _pass_signatures(self, inputs: StageInput, pool) -> dict[str, Any]:
        """Pass 1: per-row exact hash, LSH band keys, text length, label presence, label code and id."""
        cfg: Config = self.config
        config = cfg.model_dump()
        exact, bands, set_sizes, length, has_label, label_code, ids = [], [], [], [], [], [], []
        labels: dict[str, int] = {}
        pending: list = []

        def collect(result) -> None:
            e, b, fingerprints, sizes = result
            exact.append(e)
            bands.append(b)
            set_sizes.append(sizes)
            fingerprints.tofile(self._sets_file)

        for batch in inputs.batches(columns=["id", "text", "label"]):
            texts = batch.column("text")
            if pool is None:
                collect(signature_batch(texts, config))
            else:
                pending.append(pool.submit(signature_batch, texts, config))
                # Bounded read-ahead; results are consumed in submission order (determinism).
                while len(pending) > 2 * self._workers:
                    collect(pending.pop(0).result())
            length.append(pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64))
            label = batch.column("label").cast(pa.string())
            has_label.append(~label.is_null().to_numpy(zero_copy_only=False))
            encoded = pc.dictionary_encode(label)
            # Batch-local codes → run-wide codes; the appended -1 is what a null (index -1) maps to.
            mapping = np.array([labels.setdefault(v, len(labels)) for v in encoded.dictionary.to_pylist()] + [-1],
                               dtype=np.int32)
            label_code.append(mapping[encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)])
            ids.append(batch.column("id"))
            self.ctx.progress(batch.num_rows)
        for future in pending:
            collect(future.result())
        self._sets_file.flush()
        return {
            "n": int(sum(len(x) for x in exact)),
            "exact": np.concatenate(exact),
            "bands": np.concatenate(bands),
            "set_offsets": np.concatenate([[0], np.cumsum(np.concatenate(set_sizes))]),
            "length": np.concatenate(length),
            "has_label": np.concatenate(has_label).astype(bool),
            "label_code": np.concatenate(label_code),
            "ids": pa.concat_arrays([a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in ids]),
        }

    def _verify(self, pool, set_offsets: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Jaccard of every candidate pair, from the shingle sets spilled in pass 1; pairs are split over
        the workers (consecutive pairs share rows, so each part reads back few sets)."""
        threshold = self.config.threshold
        if pool is None or len(left) < self.PARALLEL_VERIFY_MIN_PAIRS:
            return verify_pairs(self._sets_path, set_offsets, left, right, threshold)
        # Parts of at most ~1M pairs, so that each job reads back a bounded share of the sets.
        n_parts = max(2 * self._workers, -(-len(left) // 1_000_000))
        cuts = np.linspace(0, len(left), n_parts + 1).astype(int)
        parts = [pool.submit(verify_pairs, self._sets_path, set_offsets, left[a:b], right[a:b], threshold)
                 for a, b in zip(cuts[:-1], cuts[1:])]
        return np.concatenate([p.result() for p in parts])

    def _label_conflicts(self, cluster_id: np.ndarray, label_code: np.ndarray) -> tuple[int, list[list[int]]]:
        """Clusters whose labelled members disagree: how many, and up to 10 (cluster → member rows)."""
        labelled = np.flatnonzero(label_code >= 0)
        if not len(labelled):
            return 0, []
        pairs = np.unique(np.stack([cluster_id[labelled], label_code[labelled].astype(np.int64)], axis=1), axis=0)
        clusters, distinct = np.unique(pairs[:, 0], return_counts=True)
        conflicting = clusters[distinct > 1]
        examples = []
        for c in conflicting[: self.MAX_CONFLICT_EXAMPLES].tolist():
            examples.append(np.flatnonzero(cluster_id == c)[: self.MAX_EXAMPLE_ROWS].tolist())
        return int(len(conflicting)), examples
