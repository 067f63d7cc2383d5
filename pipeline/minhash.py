"""Near-duplicate primitives shared by the dedupe stage and the leakage check: vectorized shingling and
MinHash over Arrow string arrays, LSH band keys, candidate pairs from shared keys, exact Jaccard of
shingle sets. Pure numpy functions of their inputs (they run in worker processes too); what to keep and
what to remove is the callers' business.

Texts are normalized like Python's `" ".join(text.casefold().split())`; a text shorter than `ngram` tokens
gets one shingle made of all its tokens. The search over a stream that drives them (pass 1 sketches, then
candidate pairs verified) is `pipeline.near_duplicates`.
"""
from __future__ import annotations

import functools
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@functools.lru_cache(maxsize=None)
def bands_rows(lsh_threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimizing the false positive + false negative areas, as datasketch's
    `MinHashLSH` parameter optimizer does (equal weights; the same choice, checked in tests/test_dedupe.py).

    A pair at Jaccard s becomes a candidate with probability 1 - (1 - s^r)^b; the false positive area is
    its integral over [0, t], the false negative area that of its complement over [t, 1]. Both integrands
    are polynomials of degree b·r ≤ num_perm, so Gauss–Legendre quadrature with num_perm/2 + 1 nodes is
    exact (datasketch integrates numerically with scipy, whose import alone took ~1 s of every run's
    start-up and of every worker's).
    """
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)

    def area(probability, lo: float, hi: float) -> np.ndarray:  # per (b, r) pair, over s in [lo, hi]
        s = (hi - lo) / 2 * nodes + (hi + lo) / 2
        return (hi - lo) / 2 * (probability(s[None, :]) * weights).sum(axis=1)

    pairs = np.array([(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)], dtype=np.float64)
    b, r = pairs[:, :1], pairs[:, 1:]
    false_positive = area(lambda s: 1 - (1 - s ** r) ** b, 0.0, lsh_threshold)
    false_negative = area(lambda s: (1 - s ** r) ** b, lsh_threshold, 1.0)
    best = int(np.argmin(0.5 * false_positive + 0.5 * false_negative))  # the first of equals, as datasketch's loop
    return int(pairs[best, 0]), int(pairs[best, 1])


# ---------------------------------------------------------------------------------------------------------
# Shingling and signatures: pure functions of one batch of texts (run in worker processes).

def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: spreads every input bit over the whole word (returns a new array)."""
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def distinct(values: np.ndarray) -> np.ndarray:
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
def casefold_differs() -> str:
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
        slow[non_ascii] |= pc.or_(pc.match_substring_regex(subset, casefold_differs()),
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
        return mix64(h ^ (ends - starts).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))


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
    return mix64(acc)


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
    keys = distinct((doc << np.uint64(FINGERPRINT_BITS)) | (hashes >> np.uint64(64 - FINGERPRINT_BITS)))
    counts = np.bincount((keys >> np.uint64(FINGERPRINT_BITS)).astype(np.int64), minlength=n_docs)
    return keys & np.uint64((1 << FINGERPRINT_BITS) - 1), counts


_PUNCTUATION = r"[\pP\pS]+"  # Unicode punctuation and symbols (RE2's \w is ASCII-only: not a word test)
_WORD_CHAR = r"[^\pP\pS\s]"


SHORT_WORDS = 50  # punctuation "drop_short": texts of fewer whitespace words than this


def drop_punctuation(texts: pa.Array, max_words: int | None = None) -> pa.Array:
    """Every run of punctuation and symbols replaced by a space — "France?" and "France ?" become the same
    words — except in a text that has nothing else (":-)" stays ":-)", so emoticons are not all one text)
    and, with `max_words`, in a text of that many whitespace words or more (left exactly as it was)."""
    stripped = pc.replace_substring_regex(texts, _PUNCTUATION, " ")
    which = pc.fill_null(pc.match_substring_regex(texts, _WORD_CHAR), False)
    if max_words is not None:
        which = pc.and_(which, pc.less(pc.fill_null(pc.count_substring_regex(texts, r"\S+"), 0), max_words))
    return pc.if_else(which, stripped, texts)


def sketch(texts: pa.Array, shingle: str, ngram: int, num_perm: int, seed: int, bands: int, rows: int,
           char_ngram: int | None = None, punctuation: str = "keep") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per text: the hash of its normalized form, its LSH band keys (bands tuned by `bands_rows`), and its
    shingle set (sorted fingerprints, flattened, and their count per text). `bands` = 0: exact hashes only.

    `shingle="auto"`: each text written mostly in a script without spaces between words (Chinese, Japanese,
    Thai, ...: `spaceless`) gets `char_ngram`-character shingles, every other text `ngram`-word shingles —
    whitespace words of such a text are whole sentences, and two paraphrases share none.

    `punctuation="drop"`: punctuation and symbols are dropped first (`drop_punctuation`), for the exact hash
    too, so a text and its copy with other punctuation are the same text; `"drop_short"`: only in texts of
    fewer than SHORT_WORDS words (a long text's pairs stay exactly as with "keep")."""
    if punctuation != "keep":
        texts = drop_punctuation(texts, SHORT_WORDS if punctuation == "drop_short" else None)
    if shingle == "auto":
        chars = spaceless(texts)
        if not chars.any() or chars.all():
            mode, n = ("char", char_ngram or ngram) if chars.all() and len(chars) else ("word", ngram)
            return sketch(texts, mode, n, num_perm, seed, bands, rows)
        parts = [sketch(texts.filter(pa.array(~chars)), "word", ngram, num_perm, seed, bands, rows),
                 sketch(texts.filter(pa.array(chars)), "char", char_ngram or ngram, num_perm, seed, bands, rows)]
        return _merge_rows([np.flatnonzero(~chars), np.flatnonzero(chars)], parts, len(texts), bands)
    near = bands > 0
    perms = permutations(num_perm, seed)
    exact, keys = [np.zeros(0, np.uint64)], [np.zeros((0, bands), np.uint64)]
    sets, counts = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
    for piece in _pieces(texts):
        hashes, shingle_offsets, doc_hash = shingle_hashes(*normalize(piece), shingle, ngram)
        exact.append(doc_hash)
        if near:
            keys.append(band_keys(minhash(hashes, shingle_offsets, *perms), bands, rows))
            fingerprints, n = shingle_sets(hashes, shingle_offsets)
            sets.append(fingerprints)
            counts.append(n)
    return np.concatenate(exact), np.concatenate(keys), np.concatenate(sets), np.concatenate(counts)


# Scripts written without spaces between words: a whitespace "word" of such a text is a whole clause.
_SPACELESS = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}]"
SPACELESS_SHARE, SPACELESS_CHARS = 0.3, 10


def spaceless(texts: pa.Array) -> np.ndarray:
    """Per text: whether it is written (partly) in a script without spaces between words — Han, Hiragana,
    Katakana, Thai, Lao, Khmer, Myanmar, Tibetan: at least 10 such characters, or 30 % of its non-space
    characters. The count keeps a Chinese instruction around English code or numbers on characters whatever
    its share (near copies must get the same shingling to be compared at all)."""
    texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
    hits = pc.count_substring_regex(texts, _SPACELESS).to_numpy(zero_copy_only=False).astype(np.float64)
    visible = pc.utf8_length(pc.replace_substring_regex(texts, r"\s+", "")).to_numpy(zero_copy_only=False)
    return (hits > 0) & ((hits >= SPACELESS_SHARE * np.maximum(visible, 1)) | (hits >= SPACELESS_CHARS))


def _merge_rows(rows: list[np.ndarray], parts: list[tuple], n: int, bands: int) -> tuple:
    """Sketches of disjoint row subsets (`rows[k]` for `parts[k]`) back in row order."""
    exact = np.zeros(n, np.uint64)
    keys = np.zeros((n, bands), np.uint64)
    counts = np.zeros(n, np.int64)
    for idx, (e, k, _, c) in zip(rows, parts):
        exact[idx] = e
        if bands:
            keys[idx] = k
            counts[idx] = c
    if not bands:
        return exact, keys, np.zeros(0, np.uint64), np.zeros(0, np.int64)
    # Each row's set, from its part's flattened sets, placed at the row's position in the merged order.
    offsets = np.concatenate([[0], np.cumsum(counts)])
    sets = np.zeros(int(offsets[-1]), np.uint64)
    for idx, (_, _, part_sets, c) in zip(rows, parts):
        part_offsets = np.concatenate([[0], np.cumsum(c)])
        sets[_ranges(offsets[idx], c)] = part_sets[_ranges(part_offsets[:-1], c)]
    return exact, keys, sets, counts


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


def shared_key_pairs(keys: tuple[np.ndarray, ...], members: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """All pairs of `members` that agree on every array of `keys` (a bucket), as sorted distinct codes
    lo·n + hi (lo < hi < n); and the largest bucket with a pair (0 if none)."""
    order = np.lexsort(keys[::-1]) if len(keys) > 1 else np.argsort(keys[0], kind="stable")
    change = np.zeros(max(len(order) - 1, 0), dtype=bool)
    for k in keys:
        sorted_k = k[order]
        change |= sorted_k[1:] != sorted_k[:-1]
    boundary = np.flatnonzero(change) + 1
    starts = np.concatenate([[0], boundary])
    ends = np.concatenate([boundary, [len(order)]])
    multi = ends - starts > 1
    if not multi.any():
        return np.zeros(0, np.int64), 0
    left, right = _pairs_in_groups(members[order], starts[multi], ends[multi])
    lo, hi = np.minimum(left, right).astype(np.int64), np.maximum(left, right).astype(np.int64)
    return distinct(lo * n + hi), int((ends - starts).max())


def candidate_pairs(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Pairs (i < j) of `rows` sharing a key in any band (keys: len(rows) × bands); largest bucket size."""
    codes, pending = np.zeros(0, np.int64), []
    n_total = int(rows.max()) + 1 if len(rows) else 1
    largest = 0
    for band in range(keys.shape[1]):
        band_codes, band_largest = shared_key_pairs((keys[:, band],), rows, n_total)
        largest = max(largest, band_largest)
        # The bands' pair lists overlap heavily: merge them whenever the unmerged ones outgrow the merged
        # set, which keeps memory near the distinct count without re-sorting it for every band.
        pending.append(band_codes)
        if sum(map(len, pending)) > max(len(codes), 1 << 20):
            codes = distinct(np.concatenate([codes, *pending]))
            pending = []
    codes = distinct(np.concatenate([codes, *pending]))
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
